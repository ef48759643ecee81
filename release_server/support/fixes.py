"""Fix releases: which tickets and failure groups a release fixes, and the ticket following the fleet.

The loop closes in four steps:

1. **A release says what it fixes.** At publish (``fixes`` / ``fixes_groups`` in the
   metadata) or afterwards (:func:`link` / :func:`unlink`, audited), a release names
   tickets and failure groups. Linking a group resolves it *in* the release's version
   (the lowest fixing version wins); linking a ticket writes the version on its timeline
   (public: the customer sees the fix of their own request only).
2. **A fix for the affected.** ``restrict_to_affected`` limits the release to the
   installations of the groups and tickets it fixes (:func:`affected_installations`), with
   the existing restriction rules: it is never offered to anyone else.
3. **The ticket follows the fleet.** :func:`on_reports` (a report hook) takes a batch's
   successful reports and, in a constant number of statements, finds the affected rows
   of that installation that a fixing release (or a newer one) now fixes, marks them
   fixed and writes the step on the customer's ticket. When every affected installation
   of the customer runs a fixing version the ticket is *processed*, with a comment naming
   the version and the installations, in the contact's language, and the processed mail.
   A failure of the same cause on the fixing version or newer reopens the group as a
   regression and the ticket with it (:mod:`.failures`).
4. **Halt tickets.** A rollout-halt ticket linked to groups is processed the same way
   once every installation affected by each of its groups runs a fix.

:func:`figures` gives the time from the first failure to the fix published, installed and
the ticket processed, per group and per customer. Services flush; the caller commits.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from packaging.version import Version
from sqlalchemy import func, select, union_all, update
from sqlalchemy.orm import Session

from ..accounts.services import audit
from ..errors import ConflictError, NotFoundError, ValidationError
from ..fleet.models import Customer, Installation, InstalledComponent
from ..messages import M, Message, label
from ..models_common import utcnow
from ..releases.models import Component, Release
from . import group_states, mailout, services
from .errors import UnknownFailureGroupError, UnknownTicketError
from .models import (OPEN_STATUSES, FailureGroup, FailureGroupInstallation, ReleaseFixedGroup, ReleaseFixedTicket,
                     Ticket, TicketFailureGroup)

MAX_LINKS = 200


@dataclass(frozen=True)
class FixPlan:
    """The tickets and groups a publish names, checked before any byte is stored."""

    ticket_ids: list[int] = field(default_factory=list)
    group_ids: list[int] = field(default_factory=list)
    affected: list[str] = field(default_factory=list)  # installation ids (for restrict_to_affected)

    def __bool__(self) -> bool:
        return bool(self.ticket_ids or self.group_ids)


def resolve(session: Session, component: Component | str, tickets: Iterable[str] = (),
            groups: Iterable[int] = (), *, field_prefix: str = "") -> FixPlan:
    """Ticket numbers and group ids to rows; each unknown one is refused naming its field."""
    tickets, groups = list(tickets), list(groups)
    if len(tickets) + len(groups) > MAX_LINKS:
        raise ValidationError(f"at most {MAX_LINKS} tickets and groups per release", field=field_prefix + "fixes")
    name = component.name if isinstance(component, Component) else component
    ticket_ids = []
    for i, ref in enumerate(tickets):
        ticket = services.find_ticket(session, ref) if isinstance(ref, (str, int)) else None
        if ticket is None:
            raise NotFoundError(f"no ticket {ref!r}", field=f"{field_prefix}fixes.{i}")
        if ticket.internal and ticket.rollout_id is None:
            raise ValidationError(f"ticket {ticket.number} is internal", field=f"{field_prefix}fixes.{i}")
        if ticket.internal:  # a rollout-halt ticket: the fix is for the groups that halted it
            halt_groups = services.linked_groups(session, ticket)
            if not halt_groups:
                raise ValidationError(f"halt ticket {ticket.number} names no failure group",
                                      field=f"{field_prefix}fixes.{i}")
            groups += [g for g in halt_groups if g not in groups]
            continue
        ticket_ids.append(services.root_of(session, ticket).id)
    group_ids = []
    for i, gid in enumerate(groups):
        group = session.get(FailureGroup, gid) if isinstance(gid, int) and not isinstance(gid, bool) else None
        if group is None:
            raise NotFoundError(f"no failure group {gid!r}", field=f"{field_prefix}fixes_groups.{i}")
        if group.component != name.lower():
            raise ValidationError(f"failure group #{gid} is a failure of {group.component}, not {name}",
                                  field=f"{field_prefix}fixes_groups.{i}")
        group_ids.append(group.id)
    ticket_ids, group_ids = list(dict.fromkeys(ticket_ids)), list(dict.fromkeys(group_ids))
    return FixPlan(ticket_ids, group_ids, affected_installations(session, ticket_ids, group_ids))


def affected_installations(session: Session, ticket_ids: list[int], group_ids: list[int]) -> list[str]:
    """The installations a fix is for: every one in the groups, and each ticket's customer's in its own group."""
    ids: set[str] = set()
    if group_ids:
        ids.update(session.scalars(select(FailureGroupInstallation.installation_id)
                                   .where(FailureGroupInstallation.group_id.in_(group_ids))))
    if ticket_ids:
        rows = session.execute(select(Ticket.id, Ticket.failure_group_id, Ticket.customer_id, Ticket.installation_id)
                               .where(Ticket.id.in_(ticket_ids))).all()
        for _tid, gid, cid, inst in rows:
            if gid is not None and cid is not None:
                ids.update(session.scalars(select(FailureGroupInstallation.installation_id).where(
                    FailureGroupInstallation.group_id == gid, FailureGroupInstallation.customer_id == cid)))
            elif inst is not None:
                ids.add(inst)
        halt_groups = list(session.scalars(select(TicketFailureGroup.group_id)
                                           .where(TicketFailureGroup.ticket_id.in_(ticket_ids))))
        if halt_groups:
            ids.update(session.scalars(select(FailureGroupInstallation.installation_id)
                                       .where(FailureGroupInstallation.group_id.in_(halt_groups))))
    return sorted(ids)


# ---------------------------------------------------------------- linking

def link(session: Session, release: Release, plan: FixPlan, actor: str, *, at_publish: bool = False) -> FixPlan:
    """Record that ``release`` fixes the plan's tickets and groups (idempotent, audited); returns what was new."""
    have_t = set(session.scalars(select(ReleaseFixedTicket.ticket_id).where(ReleaseFixedTicket.release_id == release.id)))
    have_g = set(session.scalars(select(ReleaseFixedGroup.group_id).where(ReleaseFixedGroup.release_id == release.id)))
    new_t = [t for t in plan.ticket_ids if t not in have_t]
    new_g = [g for g in plan.group_ids if g not in have_g]
    now = utcnow()
    session.add_all([ReleaseFixedTicket(release_id=release.id, ticket_id=t, linked_by=actor, linked_at=now)
                     for t in new_t] + [ReleaseFixedGroup(release_id=release.id, group_id=g, linked_by=actor,
                                                          linked_at=now) for g in new_g])
    session.flush()
    version, component = release.version, release.component.name
    for gid in new_g:
        group = session.get(FailureGroup, gid)
        if group.state != "resolved" or not group.resolved_in_version or _lower(version, group.resolved_in_version):
            group_states.set_state(session, group, "resolved", actor, in_version=version, now=now)
        for ticket in group_states.tickets_of(session, gid):
            if ticket.id not in new_t:
                _linked_event(session, ticket, component, version, gid)
    for tid in new_t:
        ticket = session.get(Ticket, tid)
        _linked_event(session, ticket, component, version, None)
        if ticket.kind == "development" and ticket.failure_group_id is None:
            mailout.queue_mail(session, ticket, to=services.recipient_of(session, ticket), kind="reply",
                               text=M("fix.implemented_mail", number=ticket.number, component=component,
                                      version=version), auto=True)
    if new_t or new_g:
        audit(session, actor, "release.fixes.link", f"release:{component}/{version}",
              {"tickets": [session.get(Ticket, t).number for t in new_t], "failure_groups": new_g,
               "at_publish": at_publish})
        settle_from_inventory(session, release, new_g, new_t)
    return FixPlan(new_t, new_g, [])


def fix_for_affected(session: Session, release: Release, plan: FixPlan, actor: str, *,
                     restrict: bool = False) -> FixPlan:
    """"Fix for the affected" with a release already published: link it, and optionally limit it to them.

    Limiting adds the affected installations to the release's restriction; a release that
    is offered to everyone is not taken back from the others (``ConflictError``): publish
    the fix restricted instead.
    """
    from ..rollouts.models import ReleaseRestriction
    from ..rollouts.services import restrict_release

    if restrict:
        if not plan.affected:
            raise ValidationError("the tickets and failure groups named have no affected installations",
                                  field="restrict_to_affected")
        rows = list(session.scalars(select(ReleaseRestriction).where(ReleaseRestriction.release_id == release.id)))
        if not rows:
            raise ConflictError(f"{release.component.name} {release.version} is offered to everyone; publish the "
                                "fix with restrict_to_affected instead", field="restrict_to_affected",
                                code="release_not_restricted")
        have = {r.installation_id for r in rows if r.installation_id}
        missing = [i for i in plan.affected if i not in have]
        if missing:
            restrict_release(session, release, installations=missing)
            audit(session, actor, "release.restrict", f"release:{release.component.name}/{release.version}",
                  {"installations": missing, "reason": "fix for the affected"})
    return link(session, release, plan, actor)


def _lower(a: str, b: str) -> bool:
    try:
        return Version(a) < Version(b)
    except ValueError:
        return False


def _linked_event(session: Session, ticket: Ticket, component: str, version: str, group_id: int | None) -> None:
    code = "fix.linked.development" if ticket.kind == "development" and ticket.failure_group_id is None \
        else "fix.linked"
    services.add_event(session, ticket, "fix_linked", services.SYSTEM, public=not ticket.internal,
                       body=M(code, component=component, version=version),
                       data={"component": component, "version": version, "failure_group": group_id})


def unlink(session: Session, release: Release, plan: FixPlan, actor: str) -> None:
    """Take links back (audited); a group resolved in this version only is unresolved again."""
    from sqlalchemy import delete

    if plan.ticket_ids:
        session.execute(delete(ReleaseFixedTicket).where(ReleaseFixedTicket.release_id == release.id,
                                                         ReleaseFixedTicket.ticket_id.in_(plan.ticket_ids)))
    if plan.group_ids:
        session.execute(delete(ReleaseFixedGroup).where(ReleaseFixedGroup.release_id == release.id,
                                                        ReleaseFixedGroup.group_id.in_(plan.group_ids)))
    session.flush()
    for gid in plan.group_ids:
        group = session.get(FailureGroup, gid)
        if group.state == "resolved" and group.resolved_in_version == release.version:
            others = fixing_versions(session, gid)
            if others:
                group_states.set_state(session, group, "resolved", actor, in_version=min(others, key=Version))
            else:
                group_states.set_state(session, group, "unresolved", actor)
    for tid in plan.ticket_ids:
        ticket = session.get(Ticket, tid)
        services.add_event(session, ticket, "fix_unlinked", services.SYSTEM, public=False,
                           body=M("fix.unlinked", component=release.component.name, version=release.version),
                           data={"version": release.version})
    audit(session, actor, "release.fixes.unlink", f"release:{release.component.name}/{release.version}",
          {"tickets": [session.get(Ticket, t).number for t in plan.ticket_ids], "failure_groups": plan.group_ids})


def fixing_versions(session: Session, group_id: int) -> list[str]:
    return list(session.scalars(select(Release.version).join(ReleaseFixedGroup, ReleaseFixedGroup.release_id == Release.id)
                                .where(ReleaseFixedGroup.group_id == group_id)))


@dataclass(frozen=True)
class ReleaseLinks:
    tickets: list[Ticket]
    group_ids: list[int]


def of_release(session: Session, release: Release, customer_id: int | None = None) -> ReleaseLinks:
    """What a release fixes; for a customer (``customer_id``) only their own tickets and no groups."""
    stmt = (select(Ticket).join(ReleaseFixedTicket, ReleaseFixedTicket.ticket_id == Ticket.id)
            .where(ReleaseFixedTicket.release_id == release.id).order_by(Ticket.id))
    if customer_id is not None:
        stmt = stmt.where(Ticket.customer_id == customer_id, Ticket.internal.is_(False))
    tickets = list(session.scalars(stmt))
    groups = [] if customer_id is not None else sorted(session.scalars(
        select(ReleaseFixedGroup.group_id).where(ReleaseFixedGroup.release_id == release.id)))
    return ReleaseLinks(tickets, groups)


@dataclass(frozen=True)
class FixRef:
    component: str
    version: str
    via: str  # "ticket" | "group"
    linked_at: datetime


def fixes_of_ticket(session: Session, ticket: Ticket) -> list[FixRef]:
    """The releases that fix a ticket: linked to it, or to its failure group(s)."""
    out = [FixRef(c, v, "ticket", at) for c, v, at in session.execute(
        select(Component.name, Release.version, ReleaseFixedTicket.linked_at).join(Release.component)
        .join(ReleaseFixedTicket, ReleaseFixedTicket.release_id == Release.id)
        .where(ReleaseFixedTicket.ticket_id == ticket.id))]
    gids = services.linked_groups(session, ticket)
    if gids:
        out += [FixRef(c, v, "group", at) for c, v, at in session.execute(
            select(Component.name, Release.version, ReleaseFixedGroup.linked_at).join(Release.component)
            .join(ReleaseFixedGroup, ReleaseFixedGroup.release_id == Release.id)
            .where(ReleaseFixedGroup.group_id.in_(gids)))]
    seen: dict[tuple[str, str], FixRef] = {}
    for ref in sorted(out, key=lambda r: r.linked_at):
        seen.setdefault((ref.component, ref.version), ref)
    return list(seen.values())


def fixes_of_group(session: Session, group_id: int) -> list[tuple[str, str, datetime, str]]:
    """(component, version, linked at, linked by) of each release linked to the group."""
    return [tuple(r) for r in session.execute(
        select(Component.name, Release.version, ReleaseFixedGroup.linked_at, ReleaseFixedGroup.linked_by)
        .join(Release.component).join(ReleaseFixedGroup, ReleaseFixedGroup.release_id == Release.id)
        .where(ReleaseFixedGroup.group_id == group_id).order_by(ReleaseFixedGroup.linked_at))]


# ---------------------------------------------------------------- following the fleet

def on_reports(session: Session, inst: Installation, reports: list[Any]) -> None:
    """Report hook: a batch's successful updates fix the affected rows a fixing release covers."""
    best: dict[str, str] = {}
    for r in reports:
        if r.outcome != "success":
            continue
        try:
            if r.component not in best or Version(r.to_version) > Version(best[r.component]):
                best[r.component] = r.to_version
        except ValueError:
            continue
    if best:
        record_fixes(session, inst, best)


def _candidates(session: Session, inst: Installation, components: list[str]) -> list[tuple[int, str, str]]:
    """(group id, group component, fixing version) for the installation's unfixed affected rows: one query."""
    fgi, fg = FailureGroupInstallation, FailureGroup
    by_group = (select(fgi.group_id, fg.component, Release.version)
                .join(fg, fg.id == fgi.group_id)
                .join(ReleaseFixedGroup, ReleaseFixedGroup.group_id == fgi.group_id)
                .join(Release, Release.id == ReleaseFixedGroup.release_id)
                .where(fgi.installation_id == inst.id, fgi.fixed_at.is_(None), fg.component.in_(components)))
    by_ticket = (select(fgi.group_id, fg.component, Release.version)
                 .join(fg, fg.id == fgi.group_id)
                 .join(Ticket, (Ticket.failure_group_id == fgi.group_id) & (Ticket.customer_id == fgi.customer_id))
                 .join(ReleaseFixedTicket, ReleaseFixedTicket.ticket_id == Ticket.id)
                 .join(Release, Release.id == ReleaseFixedTicket.release_id)
                 .where(fgi.installation_id == inst.id, fgi.fixed_at.is_(None), fg.component.in_(components)))
    return [tuple(r) for r in session.execute(union_all(by_group, by_ticket)).all()]


def record_fixes(session: Session, inst: Installation, running: dict[str, str], now: datetime | None = None) -> list[int]:
    """``inst`` now runs ``running`` (component -> version): mark the groups this fixes there; returns their ids.

    Set-based: one query for the candidates, one update per distinct version reached
    (almost always one); the ticket work happens only for rows that just became fixed.
    """
    now = now or utcnow()
    lower = {c.lower(): v for c, v in running.items()}
    fixed: dict[int, str] = {}
    for gid, component, fix_version in _candidates(session, inst, sorted(lower)):
        have = lower.get(component)
        try:
            if have is not None and Version(have) >= Version(fix_version):
                fixed[gid] = have
        except ValueError:
            continue
    if not fixed:
        return []
    for version in set(fixed.values()):
        session.execute(update(FailureGroupInstallation).where(
            FailureGroupInstallation.installation_id == inst.id,
            FailureGroupInstallation.group_id.in_([g for g, v in fixed.items() if v == version]),
            FailureGroupInstallation.fixed_at.is_(None)).values(fixed_at=now, fixed_version=version)
            .execution_options(synchronize_session=False))
    _follow_up(session, {(gid, inst.customer_id) for gid in fixed}, {(gid, inst.id): v for gid, v in fixed.items()})
    return sorted(fixed)


def settle_from_inventory(session: Session, release: Release, group_ids: list[int], ticket_ids: list[int]) -> None:
    """A fix linked after the fact: affected installations that already run it (or newer) are fixed now."""
    component = release.component.name
    gids = set(group_ids)
    if ticket_ids:
        gids.update(g for g in session.scalars(select(Ticket.failure_group_id).where(Ticket.id.in_(ticket_ids)))
                    if g is not None)
    if not gids:
        return
    rows = session.execute(
        select(FailureGroupInstallation.group_id, FailureGroupInstallation.installation_id,
               FailureGroupInstallation.customer_id, InstalledComponent.version)
        .join(InstalledComponent, (InstalledComponent.installation_id == FailureGroupInstallation.installation_id)
              & (InstalledComponent.component == component))
        .where(FailureGroupInstallation.group_id.in_(gids), FailureGroupInstallation.fixed_at.is_(None))).all()
    now = utcnow()
    reached: dict[tuple[int, str], str] = {}
    pairs: set[tuple[int, int]] = set()
    for gid, inst_id, cid, have in rows:
        if gid not in group_ids and not _ticket_covers(session, ticket_ids, gid, cid):
            continue
        try:
            if Version(have) < Version(release.version):
                continue
        except ValueError:
            continue
        session.execute(update(FailureGroupInstallation).where(
            FailureGroupInstallation.group_id == gid, FailureGroupInstallation.installation_id == inst_id)
            .values(fixed_at=now, fixed_version=have).execution_options(synchronize_session=False))
        reached[(gid, inst_id)] = have
        pairs.add((gid, cid))
    if pairs:
        _follow_up(session, pairs, reached)


def _ticket_covers(session: Session, ticket_ids: list[int], gid: int, customer_id: int) -> bool:
    return session.scalar(select(func.count()).select_from(Ticket).where(
        Ticket.id.in_(ticket_ids), Ticket.failure_group_id == gid, Ticket.customer_id == customer_id)) > 0


def _follow_up(session: Session, pairs: set[tuple[int, int]], reached: dict[tuple[int, str], str]) -> None:
    """For each (group, customer) that moved: the step on the ticket; processed once all run a fix."""
    names = dict(session.execute(select(Installation.id, Installation.name)
                                 .where(Installation.id.in_({i for _g, i in reached}))).all())
    halt_groups: set[int] = set()
    for gid, cid in sorted(pairs):
        halt_groups.add(gid)
        ticket = session.scalar(select(Ticket).where(Ticket.failure_group_id == gid, Ticket.customer_id == cid))
        if ticket is None:
            continue
        ticket = services.root_of(session, ticket)
        rows = status_rows(session, gid, cid)
        pending = [r for r in rows if r.fixed_at is None]
        for (g, inst_id), version in sorted(reached.items()):
            if g != gid or not any(r.installation_id == inst_id for r in rows):
                continue
            services.add_event(session, ticket, "fix_installed", services.SYSTEM, public=True,
                               body=M("fix.installed", installation=names.get(inst_id, inst_id), version=version,
                                      remaining=len(pending)),
                               data={"installation_id": inst_id, "version": version, "failure_group": gid,
                                     "remaining": [r.installation_id for r in pending]})
        if not pending and ticket.status in OPEN_STATUSES:
            _process(session, ticket, rows)
        elif pending and ticket.status in OPEN_STATUSES:
            services.add_event(session, ticket, "fix_pending", services.SYSTEM, public=False,
                               body=M("fix.pending", installations=[_describe(r) for r in pending]),
                               data={"pending": [r.installation_id for r in pending]}, touch=False)
    _settle_halt_tickets(session, halt_groups)


def _process(session: Session, ticket: Ticket, rows: list[InstallationFix]) -> None:
    versions = sorted({r.fixed_version for r in rows if r.fixed_version}, key=Version)
    installations = ", ".join(r.name for r in rows)
    comment = M("fix.processed", version=", ".join(versions), installations=installations)
    services.add_event(session, ticket, "reply", services.SYSTEM, public=not ticket.internal, body=comment,
                       data={"with_status": "processed", "versions": versions,
                             "installations": [r.installation_id for r in rows]})
    services._status_change(session, ticket, "processed", services.SYSTEM)
    mailout.queue_mail(session, ticket, to=ticket.requester_email, kind="processed", text=comment, auto=True)


def _settle_halt_tickets(session: Session, group_ids: set[int]) -> None:
    """A halt ticket is processed once every installation affected by each of its groups runs a fix."""
    if not group_ids:
        return
    linked = select(TicketFailureGroup.ticket_id).where(TicketFailureGroup.group_id.in_(group_ids))
    tickets = list(session.scalars(
        select(Ticket).where(Ticket.id.in_(linked), Ticket.internal.is_(True), Ticket.rollout_id.is_not(None),
                             Ticket.status.in_(OPEN_STATUSES)).order_by(Ticket.id)))
    for ticket in tickets:
        gids = services.linked_groups(session, ticket)
        if not gids:
            continue
        left = session.scalar(select(func.count()).select_from(FailureGroupInstallation).where(
            FailureGroupInstallation.group_id.in_(gids), FailureGroupInstallation.fixed_at.is_(None)))
        if left == 0:
            rows = [r for g in gids for r in status_rows(session, g, None)]
            _process(session, ticket, rows)


# ---------------------------------------------------------------- reading

@dataclass(frozen=True)
class InstallationFix:
    installation_id: str
    name: str
    customer: str
    first_failed_at: datetime
    fixed_at: datetime | None
    fixed_version: str | None
    running: str | None
    health: str

    @property
    def state(self) -> str:
        """fixed | stale | failing | waiting (on the failing or an older version)."""
        if self.fixed_at is not None:
            return "fixed"
        if self.health == "stale":
            return "stale"
        return "failing" if self.health == "failing" else "waiting"


def status_rows(session: Session, group_id: int, customer_id: int | None) -> list[InstallationFix]:
    """Every installation affected by the group (of one customer, or all): fixed, or what it runs and how it is."""
    from ..fleet.services import health_of

    group = session.get(FailureGroup, group_id)
    stmt = (select(FailureGroupInstallation, Installation, Customer.name)
            .join(Installation, Installation.id == FailureGroupInstallation.installation_id)
            .join(Customer, Customer.id == FailureGroupInstallation.customer_id)
            .where(FailureGroupInstallation.group_id == group_id)
            .order_by(Customer.name, Installation.name, Installation.id))
    if customer_id is not None:
        stmt = stmt.where(FailureGroupInstallation.customer_id == customer_id)
    now = utcnow()
    out = []
    for row, inst, cust in session.execute(stmt).all():
        out.append(InstallationFix(inst.id, inst.name, cust, row.first_seen_at, row.fixed_at, row.fixed_version,
                                   inst.versions.get(group.component) if group else None, health_of(inst, now)))
    return out


def _describe(row: InstallationFix) -> Message:
    """One installation still waiting, for a note read in the reader's language (its state is a label)."""
    return M("fix.pending.installation", name=row.name, running=row.running or "?", state=label("fix_state", row.state))


@dataclass(frozen=True)
class Span:
    """Moments from the first failure, and the seconds each took (None: not reached yet)."""

    first_failure_at: datetime | None
    fix_published_at: datetime | None
    fix_installed_at: datetime | None
    processed_at: datetime | None

    def seconds(self, moment: datetime | None) -> float | None:
        if moment is None or self.first_failure_at is None:
            return None
        return max(0.0, (moment - self.first_failure_at).total_seconds())

    def as_dict(self) -> dict[str, Any]:
        return {"first_failure_at": self.first_failure_at, "fix_published_at": self.fix_published_at,
                "fix_installed_at": self.fix_installed_at, "processed_at": self.processed_at,
                "to_fix_published_seconds": self.seconds(self.fix_published_at),
                "to_fix_installed_seconds": self.seconds(self.fix_installed_at),
                "to_processed_seconds": self.seconds(self.processed_at)}


@dataclass(frozen=True)
class GroupFigures:
    group_id: int
    overall: Span
    customers: dict[str, Span]


def figures(session: Session, group_id: int) -> GroupFigures:
    """Time to fix per group (all its customers) and per customer.

    * first failure: the group's (the customer's) first affected installation;
    * fix published: the first link of a fixing release (at publish, or later);
    * fix installed: the moment the last affected installation ran a fix (None while one does not);
    * processed: when the ticket was processed (for the group: the last customer's).
    """
    group = session.get(FailureGroup, group_id)
    if group is None:
        raise UnknownFailureGroupError(group_id)
    published = _aware(session.scalar(select(func.min(ReleaseFixedGroup.linked_at))
                                      .where(ReleaseFixedGroup.group_id == group_id)))
    by_ticket = dict(session.execute(
        select(Ticket.customer_id, func.min(ReleaseFixedTicket.linked_at))
        .join(ReleaseFixedTicket, ReleaseFixedTicket.ticket_id == Ticket.id)
        .where(Ticket.failure_group_id == group_id).group_by(Ticket.customer_id)).all())
    rows = status_rows(session, group_id, None)
    tickets = {t.customer_id: services.root_of(session, t) for t in session.scalars(
        select(Ticket).where(Ticket.failure_group_id == group_id))}
    names = dict(session.execute(select(Customer.id, Customer.name)
                                 .where(Customer.id.in_(list(tickets) or [-1]))).all())
    customers: dict[str, Span] = {}
    for cid, ticket in tickets.items():
        mine = [r for r in rows if r.customer == names.get(cid)]
        pub = min((m for m in (published, _aware(by_ticket.get(cid))) if m is not None), default=None)
        customers[names.get(cid, str(cid))] = Span(
            min((r.first_failed_at for r in mine), default=None), pub,
            max((r.fixed_at for r in mine), default=None) if mine and all(r.fixed_at for r in mine) else None,
            ticket.processed_at if ticket.status in ("processed", "closed") else None)
    all_pub = min((m for m in [published, *(_aware(v) for v in by_ticket.values())] if m is not None), default=None)
    processed = [s.processed_at for s in customers.values()]
    overall = Span(group.first_seen_at, all_pub,
                   max((r.fixed_at for r in rows), default=None) if rows and all(r.fixed_at for r in rows) else None,
                   max(processed) if processed and all(processed) else None)
    return GroupFigures(group_id, overall, customers)


def _aware(value: Any) -> datetime | None:
    from ..models_common import UTCDateTime

    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return UTCDateTime().process_result_value(value, None) if value is not None else None


def customer_figures(session: Session, customer: Customer) -> list[tuple[int, Span]]:
    """Time-to-fix of every group that affected the customer (newest first)."""
    gids = list(session.scalars(select(FailureGroupInstallation.group_id)
                                .where(FailureGroupInstallation.customer_id == customer.id)
                                .group_by(FailureGroupInstallation.group_id)
                                .order_by(FailureGroupInstallation.group_id.desc()).limit(500)))
    out = []
    for gid in gids:
        span = figures(session, gid).customers.get(customer.name)
        if span is not None:
            out.append((gid, span))
    return out


class ReleaseFixes:
    """The face the release domain calls at publish (``app.extensions["release_fixes"]``)."""

    @staticmethod
    def plan(session: Session, component: Component, tickets: list[str], groups: list[int]) -> FixPlan:
        return resolve(session, component, tickets, groups)

    @staticmethod
    def link(session: Session, release: Release, plan: FixPlan, actor: str) -> None:
        link(session, release, plan, actor, at_publish=True)

    @staticmethod
    def of_release(session: Session, release: Release) -> dict[str, list[Any]]:
        links = of_release(session, release)
        return {"tickets": [t.number for t in links.tickets], "groups": links.group_ids}


def ticket_owners(session: Session, seqs: set[int]) -> dict[int, int | None]:
    """Whose each ticket (by number) is, for changelogs offered to installations: internal tickets are nobody's."""
    out: dict[int, int | None] = {}
    wanted = sorted(seqs)
    for start in range(0, len(wanted), 500):
        for seq, cid, internal in session.execute(select(Ticket.seq, Ticket.customer_id, Ticket.internal)
                                                  .where(Ticket.seq.in_(wanted[start:start + 500]))):
            out[int(seq)] = None if internal else cid
    return out


def require_ticket(session: Session, ref: str) -> Ticket:
    ticket = services.find_ticket(session, ref)
    if ticket is None:
        raise UnknownTicketError(ref)
    return ticket
