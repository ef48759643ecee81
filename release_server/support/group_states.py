"""Failure groups as issues to work: unresolved, resolved (optionally "in version X") or ignored.

* *resolved* says the cause is fixed (``in_version``: the release that fixes it; linking a
  fixing release sets it, see :mod:`.fixes`). A report that joins a resolved group is a
  *regression* (the group is unresolved again and its ``regressions`` count goes up),
  except, for a group resolved in a version, a failure of an older release: that
  installation has not taken the fix yet.
* *ignored* hides a group from the default list, until a moment (``ignored_until``) or
  until it has had ``N`` more reports (``ignored_until_reports`` holds the total count
  that ends it); then the next report makes it unresolved again. Without either, it
  stays ignored.

:func:`on_report` is called for every report that joins a group (by
:func:`.failures.record_failure`). Listing, filters and sorting for the console are
:func:`list_groups`. Services flush; the caller commits.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from packaging.version import InvalidVersion, Version
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from ..accounts.services import audit
from ..errors import ValidationError
from ..models_common import utcnow
from .models import FailureGroup, FailureGroupInstallation, FailureGroupReport, Ticket, TicketFailureGroup

STATES = ("unresolved", "resolved", "ignored")
SORTS = ("last_seen", "count", "installations", "customers", "first_seen")


def set_state(session: Session, group: FailureGroup, state: str, actor: str, *, in_version: str | None = None,
              ignore_hours: float | None = None, ignore_reports: int | None = None,
              now: datetime | None = None) -> FailureGroup:
    """Resolve, ignore or reopen a group (audited)."""
    if state not in STATES:
        raise ValidationError(f"state must be one of {', '.join(STATES)}", field="state")
    now = now or utcnow()
    in_version = (in_version or "").strip() or None
    if in_version is not None and len(in_version) > 64:
        raise ValidationError("the version is longer than 64 characters", field="in_version")
    if ignore_hours is not None and not 0 < ignore_hours <= 24 * 366:
        raise ValidationError("ignore for between 1 hour and a year", field="ignore_hours")
    if ignore_reports is not None and not 0 < ignore_reports <= 1_000_000:
        raise ValidationError("ignore for between 1 and 1,000,000 more reports", field="ignore_reports")
    group.state = state
    group.state_changed_at, group.state_changed_by = now, actor
    group.resolved_in_version = in_version if state == "resolved" else None
    group.ignored_until = now + timedelta(hours=ignore_hours) if state == "ignored" and ignore_hours else None
    group.ignored_until_reports = (report_count(session, group.id) + ignore_reports
                                   if state == "ignored" and ignore_reports else None)
    details: dict[str, Any] = {"state": state}
    if group.resolved_in_version:
        details["in_version"] = group.resolved_in_version
    audit(session, actor, "failure_group.state", f"failure_group:{group.id}", details)
    session.flush()
    return group


def version_at_least(version: str, floor: str) -> bool:
    """``version >= floor`` in PEP 440 order; a version that does not parse is not at least anything."""
    try:
        return Version(version) >= Version(floor)
    except InvalidVersion:
        return False


def report_count(session: Session, group_id: int) -> int:
    return int(session.scalar(select(func.count()).select_from(FailureGroupReport)
                              .where(FailureGroupReport.group_id == group_id)) or 0)


def on_report(session: Session, group_id: int, now: datetime | None = None, *,
              versions: list[str] | None = None) -> str | None:
    """A report joined the group: a resolved group regresses, an ignore that ran out ends. Returns the change.

    A group resolved *in version X* regresses only on a failure of X or newer (``versions``:
    the target versions of the reports that joined); a failure of an older release is an
    installation that has not taken the fix yet.
    """
    now = now or utcnow()
    group = session.get(FailureGroup, group_id)
    if group is None:
        return None
    if group.state == "resolved" and group.resolved_in_version and versions is not None:
        if not any(version_at_least(v, group.resolved_in_version) for v in versions):
            return None
    if group.state == "resolved":
        group.state, group.regressions = "unresolved", (group.regressions or 0) + 1
        group.state_changed_at, group.state_changed_by = now, "system"
        session.flush()
        return "regression"
    if group.state == "ignored":
        until_time = group.ignored_until is not None and now >= group.ignored_until
        until_count = (group.ignored_until_reports is not None
                       and report_count(session, group_id) >= group.ignored_until_reports)
        if until_time or until_count:
            group.state, group.ignored_until, group.ignored_until_reports = "unresolved", None, None
            group.state_changed_at, group.state_changed_by = now, "system"
            session.flush()
            return "unignored"
    return None


@dataclass
class GroupFilter:
    state: str | None = "unresolved"   # None: every state
    component: str | None = None
    version: str | None = None         # a release version or its prefix ("2.4")
    customer_id: int | None = None
    q: str | None = None
    sort: str = "last_seen"
    page: int = 1
    per_page: int = 50


def _like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def list_groups(session: Session, flt: GroupFilter) -> tuple[list[FailureGroup], int]:
    """Groups filtered and sorted for the console's list (sort descending by the chosen figure)."""
    conds: list[Any] = []
    if flt.state:
        if flt.state not in STATES:
            raise ValidationError(f"state must be one of {', '.join(STATES)}", field="state")
        conds.append(FailureGroup.state == flt.state)
    if flt.component:
        conds.append(FailureGroup.component == flt.component.strip().lower())
    if flt.version:
        v = flt.version.strip()
        conds.append(or_(FailureGroup.target_version == v,
                         FailureGroup.target_version.like(_like(v) + ".%", escape="\\")))
    if flt.customer_id is not None:
        conds.append(FailureGroup.id.in_(select(FailureGroupInstallation.group_id)
                                         .where(FailureGroupInstallation.customer_id == flt.customer_id)))
    if flt.q:
        like = "%" + _like(flt.q.strip()) + "%"
        conds.append(or_(FailureGroup.sample_message.ilike(like, escape="\\"),
                         FailureGroup.error_code.ilike(like, escape="\\"),
                         FailureGroup.stage.ilike(like, escape="\\")))
    if flt.sort not in SORTS:
        raise ValidationError(f"sort must be one of {', '.join(SORTS)}", field="sort")
    key = {
        "last_seen": select(func.max(FailureGroupReport.received_at)).where(
            FailureGroupReport.group_id == FailureGroup.id).scalar_subquery(),
        "first_seen": FailureGroup.first_seen_at,
        "count": select(func.count()).select_from(FailureGroupReport).where(
            FailureGroupReport.group_id == FailureGroup.id).scalar_subquery(),
        "installations": select(func.count()).select_from(FailureGroupInstallation).where(
            FailureGroupInstallation.group_id == FailureGroup.id).scalar_subquery(),
        "customers": select(func.count(func.distinct(FailureGroupInstallation.customer_id))).where(
            FailureGroupInstallation.group_id == FailureGroup.id).scalar_subquery(),
    }[flt.sort]
    total = session.scalar(select(func.count()).select_from(FailureGroup).where(*conds)) or 0
    rows = list(session.scalars(select(FailureGroup).where(*conds).order_by(key.desc(), FailureGroup.id.desc())
                                .limit(flt.per_page).offset((flt.page - 1) * flt.per_page)))
    return rows, total


def tickets_of(session: Session, group_id: int) -> list[Ticket]:
    linked = select(TicketFailureGroup.ticket_id).where(TicketFailureGroup.group_id == group_id)
    return list(session.scalars(select(Ticket).where((Ticket.failure_group_id == group_id) | Ticket.id.in_(linked))
                                .order_by(Ticket.id)))
