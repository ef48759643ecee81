"""Failed updates become tickets: fingerprint -> failure group -> one ticket per (group, customer).

:func:`on_reports` is registered in ``app.extensions["report_hooks"]``; the fleet calls it
once per request batch with the new reports, inside the request's transaction, and
:func:`record_failures` does the batch set-based (a constant number of statements,
not a number per report). A report whose outcome is
``rolled_back`` (the agent restored the old release: an *incident*) or ``failed`` (the
installation was left not working: a *problem*) is fingerprinted
(:mod:`.fingerprint`) and joins its group; the group's ticket for the report's customer
is opened on the first report and gets a timeline entry for every later one.

A failure whose fingerprint has no group yet but whose *cause* (the fingerprint without
the target version) is that of a group resolved in version X, on X or newer, joins that
group instead: it is the fix's regression, and reopens the group and the customer's
ticket (one look-up per batch, only for fingerprints without a group). A failure marks
the installation's row of the group not fixed any more (:mod:`.fixes` follows the fixes).

Concurrency without application locks: the group (unique fingerprint), the group's
installation rows (primary key) and the customer's ticket (unique ``(failure_group_id,
customer_id)``) are each *insert-or-get*: ``INSERT ... ON CONFLICT DO NOTHING RETURNING``
and, when another transaction won, a read of its row. On PostgreSQL the group and the
ticket are created in a short transaction of their own (see :func:`_autonomous`): the
loser waits only for that commit, and no report transaction holds a new group or ticket
while it works on another one, which is how two batches would otherwise deadlock. On
SQLite writers are serialised by ``BEGIN IMMEDIATE``. The group row is never updated per
report (counts, first and last seen are aggregates over ``failure_group_reports``), so
reports of one cause do not queue on a hot row.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, case, func, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from ..fleet.models import Customer, Installation, UpdateReport
from ..messages import M, Message, stored
from ..models_common import utcnow
from ..releases.models import Component, Release
from ..rollouts.models import Rollout
from . import group_states, mailout, services
from .group_states import version_at_least
from .errors import UnknownFailureGroupError
from .fingerprint import Fingerprint, fingerprint
from .models import (OPEN_STATUSES, FailureGroup, FailureGroupInstallation, FailureGroupReport, Ticket,
                     TicketEvent, TicketFailureGroup)

FAILURE_OUTCOMES = {"rolled_back": "incident", "failed": "problem"}


def insert_or_get(session: Session, table: Table, key: dict[str, Any], values: dict[str, Any]) -> tuple[Any, bool]:
    """Insert a row unless its unique ``key`` exists; returns (primary key tuple, inserted)."""
    session.flush()
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    pk = list(table.primary_key.columns)
    stmt = (insert(table).values(**key, **values).on_conflict_do_nothing(index_elements=list(key))
            .returning(*pk))
    row = session.execute(stmt).first()
    if row is not None:
        return tuple(row), True
    row = session.execute(select(*pk).where(*(table.c[k] == v for k, v in key.items()))).first()
    if row is None:  # the conflicting row vanished (deleted concurrently); try once more
        row = session.execute(stmt).first()
        return tuple(row), True
    return tuple(row), False


def on_reports(session: Session, inst: Installation, reports: list[UpdateReport]) -> None:
    """Report hook: group a batch's failed updates and keep their tickets (registered by ``support.init_app``)."""
    failed = [r for r in reports if r.outcome in FAILURE_OUTCOMES]
    if failed:
        record_failures(session, inst, failed)


@dataclass(frozen=True)
class RecordedFailure:
    group_id: int
    ticket_id: int
    new_group: bool
    new_ticket: bool
    reopened: bool


def record_failure(session: Session, report: UpdateReport, now: datetime | None = None) -> RecordedFailure:
    """Put one failure report into its group and its customer's ticket."""
    (recorded,) = record_failures(session, session.get(Installation, report.installation_id), [report], now)
    return recorded


def record_failures(session: Session, inst: Installation, reports: list[UpdateReport],
                    now: datetime | None = None) -> list[RecordedFailure]:
    """Put one installation's failure reports into their groups and its customer's tickets, set-based.

    The same outcome as taking the reports one by one, in order, with a constant number
    of statements for the batch: one look-up of the groups and one of the customer's
    tickets (creating only those missing), one insert of the affected-installation rows,
    one of the group memberships and one of the timeline entries. A reopen or an
    escalation is decided once per ticket, at the report that causes it.
    """
    fps = [fingerprint(r.component, r.to_version, r.stage, r.error_code, r.error_message) for r in reports]
    first_of: dict[str, tuple[Fingerprint, UpdateReport]] = {}
    for fp, r in zip(fps, reports):
        first_of.setdefault(fp.value, (fp, r))
    when = {r.id: now or r.received_at or utcnow() for r in reports}

    groups = dict(session.execute(select(FailureGroup.fingerprint, FailureGroup.id)
                                  .where(FailureGroup.fingerprint.in_(first_of))).all())
    new_groups: set[int] = set()
    missing = {v: first for v, first in first_of.items() if v not in groups}
    if missing:  # the same failure on a release at or above the one a group was resolved in: its regression
        groups.update(_regressed_groups(session, missing))
        missing = {v: first for v, first in missing.items() if v not in groups}
    if missing:
        created = _autonomous(session, lambda s: _create_groups(s, missing, when))
        for value, (gid, new) in created.items():
            groups[value] = gid
            if new:
                new_groups.add(gid)

    group_ids = list(dict.fromkeys(groups[fp.value] for fp in fps))
    tickets = dict(session.execute(select(Ticket.failure_group_id, Ticket.id).where(
        Ticket.failure_group_id.in_(group_ids), Ticket.customer_id == inst.customer_id)).all())
    fresh_tickets: set[int] = set()
    for fp, r in zip(fps, reports):
        gid = groups[fp.value]
        if gid in tickets:
            continue
        kind = FAILURE_OUTCOMES[r.outcome]
        tid, created_ticket = _autonomous(session, lambda s: _open_failure_ticket(
            s, gid, inst, r, kind, fp.pattern, when[r.id]))
        tickets[gid] = tid
        if created_ticket:
            fresh_tickets.add(tid)

    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    session.flush()
    session.execute(insert(FailureGroupInstallation.__table__).on_conflict_do_nothing(
        index_elements=["group_id", "installation_id"]),
        [{"group_id": gid, "installation_id": inst.id, "customer_id": inst.customer_id,
          "first_seen_at": min(when[r.id] for fp, r in zip(fps, reports) if groups[fp.value] == gid)}
         for gid in sorted(group_ids)])  # one lock order for concurrent batches
    # failing again where a fix had been installed: that installation is not fixed any more
    session.execute(update(FailureGroupInstallation).where(
        FailureGroupInstallation.installation_id == inst.id, FailureGroupInstallation.group_id.in_(group_ids),
        FailureGroupInstallation.fixed_at.is_not(None)).values(fixed_at=None, fixed_version=None)
        .execution_options(synchronize_session=False))
    loaded = {t.id: t for t in session.scalars(select(Ticket).where(Ticket.id.in_(set(tickets.values()))))}
    root = {tid: services.root_of(session, t) for tid, t in loaded.items()}

    out: list[RecordedFailure] = []
    pending: list[Any] = []
    events: list[dict[str, Any]] = []
    first_seen: set[int] = set()
    for fp, r in zip(fps, reports):
        gid, own = groups[fp.value], tickets[groups[fp.value]]
        ticket = root[own]
        pending.append(dict(report_id=r.id, group_id=gid, ticket_id=ticket.id, installation_id=inst.id,
                            outcome=r.outcome, received_at=when[r.id]))
        events.append(_event(ticket, "failure_report", public=False, body=_report_line(r, inst),
                              data={"report_id": r.id, "installation_id": inst.id, "outcome": r.outcome,
                                    "from_version": r.from_version, "to_version": r.to_version,
                                    "failure_group": gid}))
        new_ticket = own in fresh_tickets and own not in first_seen
        first_seen.add(own)
        reopened = False
        if not new_ticket:
            needs_reopen = ticket.status in ("processed", "closed")
            needs_escalation = FAILURE_OUTCOMES[r.outcome] == "problem" and ticket.kind == "incident"
            if needs_reopen or needs_escalation:  # rare: write what came before, keep the timeline's order
                _write(session, pending, events)
                pending, events = [], []
                if needs_reopen:
                    reopened = _maybe_reopen(session, ticket, gid, r)
                if FAILURE_OUTCOMES[r.outcome] == "problem" and ticket.kind == "incident":
                    _escalate(session, ticket)
        out.append(RecordedFailure(gid, ticket.id, gid in new_groups and fp.value in first_of
                                   and first_of[fp.value][1] is r, new_ticket, reopened))
    _write(session, pending, events)
    versions: dict[int, list[str]] = {}
    for fp in fps:
        versions.setdefault(groups[fp.value], []).append(fp.target_version)
    for gid, seen in versions.items():  # a resolved group regresses, an ignore may end
        group_states.on_report(session, gid, now, versions=seen)
    for gid in sorted(new_groups):
        fp = next(f for f in fps if groups[f.value] == gid)
        _link_to_open_halt_tickets(session, gid, fp.component, fp.target_version)
    return out


def _event(ticket: Ticket, kind: str, *, public: bool, body: str | Message, data: dict[str, Any]) -> dict[str, Any]:
    """A system timeline entry, written with the others of the batch (``services.add_event`` flushes each)."""
    actor = services.SYSTEM
    return dict(ticket_id=ticket.id, kind=kind, public=public, author=actor.email or actor.name,
                author_kind=actor.kind, data=data, mail_id=None, at=utcnow(), **stored(body, "body"))


def _write(session: Session, memberships: list[dict[str, Any]], events: list[dict[str, Any]]) -> None:
    """One multi-row insert each, through Core (no ORM objects, no ids needed back)."""
    session.flush()
    if memberships:
        session.execute(FailureGroupReport.__table__.insert(), memberships)
    if events:
        session.execute(TicketEvent.__table__.insert(), events)


def _create_groups(session: Session, missing: dict[str, tuple[Fingerprint, UpdateReport]],
                   when: dict[str, datetime]) -> dict[str, tuple[int, bool]]:
    """Insert the failure groups not there yet, in one statement; read those another request made."""
    session.flush()
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    table = FailureGroup.__table__
    rows = [dict(fingerprint=fp.value, cause=fp.cause, component=fp.component, target_version=fp.target_version, stage=fp.stage,
                 error_code=fp.error_code, message_pattern=fp.pattern,
                 sample_message=(r.error_message or "")[:4000], first_seen_at=when[r.id], regressions=0)
            for fp, r in missing.values()]
    made = dict(session.execute(insert(table).values(rows).on_conflict_do_nothing(index_elements=["fingerprint"])
                                .returning(table.c.fingerprint, table.c.id)).all())
    out = {v: (gid, True) for v, gid in made.items()}
    rest = [v for v in missing if v not in made]
    if rest:
        for value, gid in session.execute(select(table.c.fingerprint, table.c.id).where(table.c.fingerprint.in_(rest))):
            out[value] = (gid, False)
    return out


def _regressed_groups(session: Session, missing: dict[str, tuple[Fingerprint, UpdateReport]]) -> dict[str, int]:
    """Fingerprints (of no group yet) that are the cause of a group resolved in their version or an older one.

    One query for the batch; the version order is PEP 440's, compared here.
    """
    by_cause: dict[str, list[tuple[str, Fingerprint]]] = {}
    for value, (fp, _r) in missing.items():
        by_cause.setdefault(fp.cause, []).append((value, fp))
    rows = session.execute(select(FailureGroup.id, FailureGroup.cause, FailureGroup.resolved_in_version).where(
        FailureGroup.cause.in_(by_cause), FailureGroup.state == "resolved",
        FailureGroup.resolved_in_version.is_not(None)).order_by(FailureGroup.id)).all()
    out: dict[str, int] = {}
    for gid, cause, resolved_in in rows:
        for value, fp in by_cause.get(cause, []):
            if value not in out and version_at_least(fp.target_version, resolved_in):
                out[value] = gid
    return out


def _autonomous(session: Session, work: Callable[[Session], tuple[int, bool]]) -> tuple[int, bool]:
    """Run an insert-or-get in a short transaction of its own on PostgreSQL.

    The group and ticket rows are shared by every report of a cause; creating them in
    the report's (longer) transaction would hold their unique-index entries until it
    commits, and two requests creating two of them in opposite orders would deadlock.
    Committed at once, they are there for everyone. SQLite has one writer at a time
    (the request already holds the lock), so there the report's own session does it.
    """
    bind = session.get_bind()
    if bind.dialect.name != "postgresql" or not isinstance(bind, Engine):
        return work(session)
    own = Session(bind=bind, expire_on_commit=False)
    try:
        result = work(own)
        own.commit()
        return result
    finally:
        own.close()


def _escalate(session: Session, ticket: Ticket) -> None:
    """An incident becomes a problem once an installation is left not working."""
    changed = session.execute(update(Ticket).where(Ticket.id == ticket.id, Ticket.kind == "incident")
                              .values(kind="problem", priority="high", updated_at=utcnow())
                              .execution_options(synchronize_session=False)).rowcount
    if changed:
        session.refresh(ticket)
        services.add_event(session, ticket, "changed", services.SYSTEM, public=True, body=M("failure.escalated"),
                           data={"field": "kind", "from": "incident", "to": "problem",
                                 "reason": "an installation was left not working"})


def _report_line(report: UpdateReport, inst: Installation) -> Message:
    code = "failure.report.rolled_back" if report.outcome == "rolled_back" else "failure.report.failed"
    line = M(code, component=report.component, to=report.to_version, installation=inst.name,
             **{"from": report.from_version or "?"})
    if report.stage or report.error_code:
        line = M("failure.report.details", summary=line, stage=report.stage or "?", code=report.error_code or "?")
    if report.error_message:
        line = M("failure.report.message", summary=line, message=report.error_message[:2000])
    return line


def _open_failure_ticket(session: Session, group_id: int, inst: Installation, report: UpdateReport, kind: str,
                         pattern: str, now: datetime) -> tuple[int, bool]:
    customer = session.get(Customer, inst.customer_id)
    seq, number = services.next_number(session)
    variant = {(True, True): ".stage_code", (True, False): ".stage", (False, True): ".code"}.get(
        (bool(report.stage), bool(report.error_code)), "")
    subject = M("failure.subject" + variant, component=report.component, version=report.to_version,
                stage=report.stage, code=report.error_code)
    description = M("failure.description", component=report.component, version=report.to_version, group=group_id,
                    stage=report.stage, code=report.error_code, message=(report.error_message or pattern)[:2000])
    texts = {**stored(subject, "subject"), **stored(description, "description")}
    texts["subject"] = texts["subject"][:300]
    (ticket_id,), created = insert_or_get(session, Ticket.__table__,
                                          {"failure_group_id": group_id, "customer_id": customer.id}, dict(
        seq=seq, number=number, kind=kind, **texts, status="new",
        priority="high" if kind == "problem" else "normal", requester_email=customer.contact_email,
        requester_name="", source="failure_report", internal=False, installation_id=inst.id,
        release_id=report.release_id, regression=False, created_by="system", created_at=now, updated_at=now))
    if created:
        ticket = session.get(Ticket, ticket_id)
        services.add_event(session, ticket, "created", services.SYSTEM, public=True, body=description,
                           data={"source": "failure_report", "kind": kind, "failure_group": group_id})
        mailout.queue_mail(session, ticket, to=customer.contact_email, kind="failure_opened",
                           text=M("failure.mail_details", component=report.component, version=report.to_version),
                           auto=True)
    return ticket_id, created


def _maybe_reopen(session: Session, ticket: Ticket, group_id: int, report: UpdateReport) -> bool:
    """A report on a processed or closed ticket reopens it as a regression (once, however many arrive)."""
    if ticket.status not in ("processed", "closed"):
        return False
    target = services.reopen_status(ticket)
    old = ticket.status
    changed = session.execute(update(Ticket).where(Ticket.id == ticket.id, Ticket.status.in_(("processed", "closed")))
                              .values(status=target, regression=True, closed_at=None, updated_at=utcnow())
                              .execution_options(synchronize_session=False)).rowcount
    if not changed:
        return False
    session.refresh(ticket)
    session.execute(update(FailureGroup).where(FailureGroup.id == group_id)
                    .values(regressions=FailureGroup.regressions + 1).execution_options(synchronize_session=False))
    services.add_event(session, ticket, "status", services.SYSTEM, public=True,
                       body=M("failure.regression"),
                       data={"from": old, "to": target, "regression": True, "report_id": report.id})
    return True


def _link_to_open_halt_tickets(session: Session, group_id: int, component: str, version: str) -> None:
    rows = session.scalars(
        select(Ticket).join(Rollout, Rollout.id == Ticket.rollout_id).join(Release, Release.id == Rollout.release_id)
        .join(Component, Component.id == Release.component_id)
        .where(Ticket.internal.is_(True), Ticket.status.in_(OPEN_STATUSES), func.lower(Component.name) == component,
               Release.version == version))
    for ticket in rows:
        services.link_groups(session, ticket, [group_id])


# ---------------------------------------------------------------- rollout halts

def on_rollout_halt(session: Session, rollout: Rollout) -> Ticket | None:
    """Rollout halt hook: an automatic halt opens an internal problem ticket linked to its failure groups."""
    if not (rollout.halt_figures or {}).get("automatic", True):
        return None
    release = rollout.release
    group_ids = list(session.scalars(select(FailureGroup.id).where(
        FailureGroup.component == release.component.name.lower(), FailureGroup.target_version == release.version)))
    return services.open_halt_ticket(session, rollout, group_ids)


# ---------------------------------------------------------------- reading groups

@dataclass(frozen=True)
class GroupStats:
    reports: int
    rolled_back: int
    failed: int
    installations: int
    customers: int
    tickets: int
    first_seen_at: datetime | None
    last_seen_at: datetime | None


def stats(session: Session, group_ids: list[int]) -> dict[int, GroupStats]:
    """Counts and first/last seen per group, computed from the rows (always exact)."""
    if not group_ids:
        return {}
    reports = {r.group_id: r for r in session.execute(
        select(FailureGroupReport.group_id, func.count().label("n"),
               func.sum(case((FailureGroupReport.outcome == "rolled_back", 1), else_=0)).label("rb"),
               func.min(FailureGroupReport.received_at).label("first"),
               func.max(FailureGroupReport.received_at).label("last"))
        .where(FailureGroupReport.group_id.in_(group_ids)).group_by(FailureGroupReport.group_id))}
    insts = {r.group_id: r for r in session.execute(
        select(FailureGroupInstallation.group_id, func.count().label("n"),
               func.count(func.distinct(FailureGroupInstallation.customer_id)).label("c"))
        .where(FailureGroupInstallation.group_id.in_(group_ids)).group_by(FailureGroupInstallation.group_id))}
    tickets = dict(session.execute(select(Ticket.failure_group_id, func.count()).where(
        Ticket.failure_group_id.in_(group_ids)).group_by(Ticket.failure_group_id)).all())
    out = {}
    from ..models_common import UTCDateTime

    conv = UTCDateTime().process_result_value
    for gid in group_ids:
        r, i = reports.get(gid), insts.get(gid)
        n, rb = (int(r.n), int(r.rb or 0)) if r else (0, 0)
        out[gid] = GroupStats(n, rb, n - rb, int(i.n) if i else 0, int(i.c) if i else 0, int(tickets.get(gid, 0)),
                              _as_dt(r.first, conv) if r else None, _as_dt(r.last, conv) if r else None)
    return out


def _as_dt(value: Any, conv: Any) -> datetime | None:
    if isinstance(value, str):  # SQLite returns aggregates of datetimes as text
        value = datetime.fromisoformat(value)
    return conv(value, None) if value is not None else None


def get_group(session: Session, group_id: int) -> FailureGroup:
    group = session.get(FailureGroup, group_id)
    if group is None:
        raise UnknownFailureGroupError(group_id)
    return group


def list_groups(session: Session, *, component: str | None = None, version: str | None = None,
                limit: int = 100, offset: int = 0) -> tuple[list[FailureGroup], int]:
    conds = []
    if component:
        conds.append(FailureGroup.component == component.lower())
    if version:
        conds.append(FailureGroup.target_version == version)
    total = session.scalar(select(func.count()).select_from(FailureGroup).where(*conds)) or 0
    last = (select(func.max(FailureGroupReport.received_at)).where(FailureGroupReport.group_id == FailureGroup.id)
            .scalar_subquery())
    rows = list(session.scalars(select(FailureGroup).where(*conds).order_by(last.desc(), FailureGroup.id.desc())
                                .limit(limit).offset(offset)))
    return rows, total


def group_tickets(session: Session, group_id: int) -> list[Ticket]:
    linked = select(TicketFailureGroup.ticket_id).where(TicketFailureGroup.group_id == group_id)
    return list(session.scalars(select(Ticket).where((Ticket.failure_group_id == group_id) | Ticket.id.in_(linked))
                                .order_by(Ticket.id)))
