"""Fleet figures: versions in use, adoption over time, a rollout's attempts by day.

Adoption is rebuilt from what the fleet reported: an installation runs, at the end
of a day, the version of its last successful update before then; before its first
reported update, the version that update started from; with no update reported, the
version it reports now (from the day it enrolled).

The console's dashboard asks for these on every view, so they read columns and
aggregates, never whole installations: the fleet is counted in SQL and the adoption
rebuild holds one (id, enrolled) pair per installation.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from datetime import date, datetime, timedelta

from packaging.version import Version
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..fleet.models import InstalledComponent, Installation, UpdateReport
from ..models_common import utcnow
from .models import Rollout


def versions_in_use(session: Session) -> tuple[list[tuple[str, str, int]], int, int]:
    rows = session.execute(select(InstalledComponent.component, InstalledComponent.version,
                                  func.count(InstalledComponent.installation_id))
                           .join(Installation, Installation.id == InstalledComponent.installation_id)
                           .where(Installation.revoked_at.is_(None))
                           .group_by(InstalledComponent.component, InstalledComponent.version)).all()
    out = sorted(((c, v, n) for c, v, n in rows), key=lambda r: (r[0], Version(r[1])), reverse=False)
    # stale as fleet.services.health_of has it: never seen, or not seen for STALE_AFTER_HOURS
    seen_before = utcnow() - timedelta(hours=_stale_after_hours())
    live = Installation.revoked_at.is_(None)
    total, stale = session.execute(select(
        func.count(Installation.id),
        func.count(Installation.id).filter((Installation.last_seen_at.is_(None))
                                           | (Installation.last_seen_at < seen_before))).where(live)).one()
    return out, stale or 0, total or 0


def _stale_after_hours() -> float:
    from flask import current_app, has_app_context

    return current_app.config.get("STALE_AFTER_HOURS", 48) if has_app_context() else 48


def adoption(session: Session, component: str, days: int, today: date | None = None) -> list[tuple[date, dict]]:
    today = today or utcnow().date()
    first_day = today - timedelta(days=days - 1)
    insts = dict(session.execute(select(Installation.id, Installation.enrolled_at)
                                 .where(Installation.revoked_at.is_(None))).all())
    current = dict(session.execute(select(InstalledComponent.installation_id, InstalledComponent.version)
                                   .where(InstalledComponent.component == component)).all())
    events: dict[str, list[tuple[datetime, str | None, str]]] = defaultdict(list)
    for inst_id, at, frm, to in session.execute(
            select(UpdateReport.installation_id, UpdateReport.received_at, UpdateReport.from_version,
                   UpdateReport.to_version)
            .where(UpdateReport.component == component, UpdateReport.outcome == "success")
            .order_by(UpdateReport.received_at)):
        events[inst_id].append((at, frm, to))
    result = []
    for n in range(days):
        day = first_day + timedelta(days=n)
        end = datetime.combine(day + timedelta(days=1), datetime.min.time()).replace(tzinfo=utcnow().tzinfo)
        counts: Counter[str] = Counter()
        for inst_id, enrolled_at in insts.items():
            if enrolled_at >= end:
                continue
            evs = events.get(inst_id, [])
            before = [e for e in evs if e[0] < end]
            if before:
                version = before[-1][2]
            elif evs:
                version = evs[0][1]
            else:
                version = current.get(inst_id)
            if version:
                counts[version] += 1
        result.append((day, dict(sorted(counts.items(), key=lambda kv: Version(kv[0])))))
    return result


def rollout_days(session: Session, ro: Rollout) -> list[tuple[date, int, int]]:
    rows = session.execute(
        select(UpdateReport.received_at, UpdateReport.outcome)
        .join(Installation, Installation.id == UpdateReport.installation_id)
        .where(UpdateReport.release_id == ro.release_id, Installation.channel == ro.channel,
               UpdateReport.outcome.in_(("success", "rolled_back", "failed")))).all()
    per: dict[date, list[int]] = defaultdict(lambda: [0, 0])
    for at, outcome in rows:
        d = per[at.date()]
        d[0] += 1
        if outcome != "success":
            d[1] += 1
    start = ro.created_at.date()
    end = max([utcnow().date(), *per.keys()])
    out = []
    day = start
    while day <= end:
        a, f = per.get(day, [0, 0])
        out.append((day, a, f))
        day += timedelta(days=1)
    return out
