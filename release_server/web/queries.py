"""Read-only figures the pages show that no domain service computes (counts for the dashboard).

Nothing here changes data or decides a rule; the rules stay in the domain services.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from datetime import date, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..fleet.models import Installation, UpdateReport
from ..models_common import utcnow
from ..rollouts import members
from ..support.models import (KINDS, OPEN_STATUSES, FailureGroupInstallation, FailureGroupReport, Ticket)


def open_tickets_by_kind_status(session: Session) -> dict[str, dict[str, int]]:
    """{kind: {status: count}} of open tickets (merged duplicates left out)."""
    out: dict[str, dict[str, int]] = {k: {s: 0 for s in OPEN_STATUSES} for k in KINDS}
    for kind, status, n in session.execute(
            select(Ticket.kind, Ticket.status, func.count()).where(Ticket.status.in_(OPEN_STATUSES),
                                                                   Ticket.merged_into_id.is_(None))
            .group_by(Ticket.kind, Ticket.status)):
        out.setdefault(kind, {s: 0 for s in OPEN_STATUSES})[status] = n
    return out


def tickets_per_day(session: Session, days: int, today: date | None = None) -> tuple[list[date], dict[str, list[int]]]:
    """Tickets opened per day, by kind, over the last ``days`` days."""
    today = today or utcnow().date()
    first = today - timedelta(days=days - 1)
    since = utcnow() - timedelta(days=days + 1)
    counts: dict[str, Counter[date]] = defaultdict(Counter)
    for kind, at in session.execute(select(Ticket.kind, Ticket.created_at).where(Ticket.created_at >= since)):
        counts[kind][at.date()] += 1
    axis = [first + timedelta(days=i) for i in range(days)]
    return axis, {k: [counts[k][d] for d in axis] for k in KINDS}


def group_occurrences(session: Session, group_id: int, limit: int = 20) -> list[tuple[Any, Any]]:
    """The latest reports of a failure group with their installations."""
    return list(session.execute(
        select(UpdateReport, Installation)
        .join(FailureGroupReport, FailureGroupReport.report_id == UpdateReport.id)
        .join(Installation, Installation.id == UpdateReport.installation_id)
        .where(FailureGroupReport.group_id == group_id)
        .order_by(UpdateReport.received_at.desc()).limit(limit)).all())


def group_installations(session: Session, group_id: int, limit: int = 50) -> list[Installation]:
    return list(session.scalars(
        select(Installation).join(FailureGroupInstallation,
                                  FailureGroupInstallation.installation_id == Installation.id)
        .where(FailureGroupInstallation.group_id == group_id).order_by(Installation.name).limit(limit)))


def tickets_of_installation(session: Session, installation_id: str, limit: int = 20) -> list[Ticket]:
    return list(session.scalars(select(Ticket).where(Ticket.installation_id == installation_id)
                                .order_by(Ticket.id.desc()).limit(limit)))


def group_reports_per_day(session: Session, group_id: int, days: int = 30,
                          today: date | None = None) -> tuple[list[date], dict[str, list[int]]]:
    """A failure group's reports per day over the last ``days`` days, by outcome (rolled back / failed)."""
    today = today or utcnow().date()
    first = today - timedelta(days=days - 1)
    since = utcnow() - timedelta(days=days + 1)
    counts: dict[str, Counter[date]] = defaultdict(Counter)
    for outcome, at in session.execute(select(FailureGroupReport.outcome, FailureGroupReport.received_at)
                                       .where(FailureGroupReport.group_id == group_id,
                                              FailureGroupReport.received_at >= since)):
        counts[outcome][at.date()] += 1
    axis = [first + timedelta(days=i) for i in range(days)]
    return axis, {o: [counts[o][d] for d in axis] for o in ("rolled_back", "failed")}


def group_customers(session: Session, group_id: int) -> list[tuple[Any, int]]:
    """Customers affected by a group, with how many of their installations, most affected first."""
    from ..fleet.models import Customer

    return [(c, int(n)) for c, n in session.execute(
        select(Customer, func.count()).join(FailureGroupInstallation, FailureGroupInstallation.customer_id == Customer.id)
        .where(FailureGroupInstallation.group_id == group_id).group_by(Customer.id)
        .order_by(func.count().desc(), Customer.name))]


def group_release_and_rollouts(session: Session, group: Any) -> tuple[Any, list[Any]]:
    """The release a group's reports were updating to, and that release's rollouts."""
    from ..releases.models import Component, Release
    from ..rollouts.models import Rollout

    release = session.scalar(select(Release).join(Component, Component.id == Release.component_id)
                             .where(func.lower(Component.name) == group.component,
                                    Release.version == group.target_version))
    rollouts = list(session.scalars(select(Rollout).where(Rollout.release_id == release.id)
                                    .order_by(Rollout.id))) if release is not None else []
    return release, rollouts


ROLLOUT_INSTALLATION_STATES = members.STATES


def rollout_installations(session: Session, ro: Any) -> list[members.Member]:
    """Each installation on a rollout's channel with where it stands (see :mod:`release_server.rollouts.members`)."""
    return members.rollout_members(session, ro)


def newly_admitted(session: Session, ro: Any, percent: float) -> int:
    """How many installations on the channel widening ``ro`` to ``percent`` would add (≈, buckets move none out)."""
    from ..rollouts.policy import BUCKETS, bucket

    new_share = int(round(max(0.0, min(percent, 100.0)) * BUCKETS / 100))
    ids = session.scalars(select(Installation.id).where(Installation.channel == ro.channel,
                                                        Installation.revoked_at.is_(None)))
    return sum(1 for i in ids if ro.share <= bucket(i, ro.release_id) < new_share)


def component_names(session: Session) -> list[str]:
    """The components installations report, for the filter lists."""
    from ..fleet.models import InstalledComponent

    return sorted(session.scalars(select(InstalledComponent.component).distinct()))
