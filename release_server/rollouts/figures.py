"""Fleet figures: versions in use, adoption over time, a rollout's attempts by day.

Adoption is the number of installations on each version of a component at the end of
each (UTC) day. Today's figure is the fleet's inventory now (``installed_components`` of
the installations not revoked, the aggregate :func:`versions_in_use` also reads). Each
past day is counted once, after it ended, by the worker job ``count-adoption``
(:func:`count_missing_days`) and kept in ``adoption_days`` / ``adoption_counts``, so a
chart costs one read of days x versions rows whatever the size of the fleet. A day not
counted yet (no worker ran since it ended) comes back marked ``counted=False`` and empty.

A day is counted by replaying what the fleet reported, in one SQL statement over the
installations and their reports (O(installations + reports), once, for any number of
days): an installation counts from the day it enrolled until the day it was revoked
(not on that day: it no longer ran at its end); it runs, at the end of a day, the version
its last report before then moved it to, as the inventory follows reports (a successful
update or an operator's rollback: the version it went to; an automatic rollback: the
version it went back to); before its first such report, the version that report
started from; with no such report, the version it reports now. The same replay fills,
on the job's first run, every day of the last :data:`HISTORY_DAYS` that is missing.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from datetime import date, datetime, timedelta, timezone
from typing import Any, NamedTuple

from packaging.version import Version
from sqlalchemy import Date, and_, case, cast, delete, func, insert, literal, null, or_, select, type_coerce, union_all
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..fleet.models import InstalledComponent, Installation, UpdateReport
from ..models_common import utcnow
from .models import AdoptionCount, AdoptionDayCounted, Rollout

#: how far back days are kept and backfilled, today included: the longest chart the API serves
HISTORY_DAYS = 366


def _inventory_counts(session: Session, *keys: Any, where: Any = None) -> Counter[tuple[Any, ...]]:
    """Installed components per ``keys`` over the installations not revoked.

    Counted as every row less the revoked installations' rows: the first is one pass over
    ``installed_components`` with no join, the second reads the few revoked installations
    through their partial index, where a join of the whole inventory with every
    installation costs several times as much on a large fleet.
    """
    ic = InstalledComponent
    conditions = [] if where is None else [where]
    counts: Counter[tuple[Any, ...]] = Counter({tuple(row[:-1]): row[-1] for row in session.execute(
        select(*keys, func.count()).where(*conditions).group_by(*keys))})
    revoked = session.execute(
        select(*keys, func.count()).join(Installation, Installation.id == ic.installation_id)
        .where(Installation.revoked_at.is_not(None), *conditions).group_by(*keys))
    counts.subtract({tuple(row[:-1]): row[-1] for row in revoked})
    return +counts  # only the positive: a version that only revoked installations ran is not in use


def versions_in_use(session: Session) -> tuple[list[tuple[str, str, int]], int, int]:
    """(component, version, installations) in use, with the stale and the whole count of installations not revoked."""
    counts = _inventory_counts(session, InstalledComponent.component, InstalledComponent.version)
    out = sorted(((c, v, n) for (c, v), n in counts.items()), key=lambda r: (r[0], Version(r[1])))
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


class DayCounts(NamedTuple):
    """Installations per version at the end of one day; ``counted`` False: the day is not counted yet."""

    day: date
    versions: dict[str, int]
    counted: bool = True


def live_versions(session: Session, component: str) -> dict[str, int]:
    """Installations per version of ``component`` now (the inventory of installations not revoked)."""
    counts = _inventory_counts(session, InstalledComponent.version, where=InstalledComponent.component == component)
    return {v: n for (v,), n in counts.items()}


def adoption(session: Session, component: str, days: int, today: date | None = None,
             live: dict[str, int] | None = None) -> list[DayCounts]:
    """The last ``days`` days up to today: the counted days as stored, today from the inventory.

    ``live``: today's counts when the caller already has them (the dashboard reads every
    component's in :func:`versions_in_use`); else they are read here, one aggregate.
    """
    today = today or utcnow().date()
    first_day = today - timedelta(days=days - 1)
    stored: dict[date, dict[str, int]] = {}
    for day, version, n in session.execute(
            select(AdoptionDayCounted.day, AdoptionCount.version, AdoptionCount.installations)
            .outerjoin(AdoptionCount, and_(AdoptionCount.day == AdoptionDayCounted.day,
                                           AdoptionCount.component == AdoptionDayCounted.component))
            .where(AdoptionDayCounted.component == component, AdoptionDayCounted.day >= first_day,
                   AdoptionDayCounted.day < today)):
        counts = stored.setdefault(day, {})
        if version is not None:
            counts[version] = n
    if live is None:
        live = live_versions(session, component)
    result = []
    for n in range(days):
        day = first_day + timedelta(days=n)
        if day == today:
            result.append(DayCounts(day, _by_version(live)))
        elif day in stored:
            result.append(DayCounts(day, _by_version(stored[day])))
        else:
            result.append(DayCounts(day, {}, False))
    return result


def _by_version(counts: dict[str, int]) -> dict[str, int]:
    return dict(sorted(((v, n) for v, n in counts.items() if n > 0), key=lambda kv: Version(kv[0])))


def _start_of(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time()).replace(tzinfo=timezone.utc)


def _day_of(dialect: str, t: Any) -> Any:
    """The UTC day of a timestamp column, in SQL."""
    if dialect == "postgresql":
        return cast(func.timezone("UTC", t), Date)
    return type_coerce(func.date(t), Date)  # SQLite keeps UTC timestamps as ISO text


def count_days(session: Session, component: str, first: date, last: date) -> dict[date, dict[str, int]]:
    """Installations per version of ``component`` at the end of each day from ``first`` to ``last``.

    The replay of the module's docstring, in one statement: each installation's timeline
    is a list of points (enrolled: its first version; each report that moved the
    version; revoked: none), each point's version holds until the next point, and the
    statement returns only the sum of +1 / -1 per (day, version) where such a span
    starts and ends (days before ``first`` folded into ``first``), so what comes back is
    days x versions rows; a running sum over the days gives each day's counts.
    """
    dialect = session.get_bind().dialect.name
    end = _start_of(last + timedelta(days=1))
    inst, rep, inv = Installation.__table__, UpdateReport.__table__, InstalledComponent.__table__
    # the reports that moved the version the inventory holds, until the installation was revoked
    moves = (select(rep.c.installation_id.label("iid"), rep.c.received_at.label("at"), rep.c.id.label("rid"),
                    rep.c.from_version.label("frm"),
                    case((rep.c.outcome == "rolled_back", rep.c.from_version), else_=rep.c.to_version).label("ver"),
                    inst.c.enrolled_at.label("enrolled"))
             .join(inst, inst.c.id == rep.c.installation_id)
             .where(rep.c.component == component,
                    or_(rep.c.outcome.in_(("success", "operator_rollback")),
                        and_(rep.c.outcome == "rolled_back", rep.c.from_version.is_not(None))),
                    or_(inst.c.revoked_at.is_(None), rep.c.received_at < inst.c.revoked_at))
             .cte("moves"))
    ranked = select(moves.c.iid, moves.c.frm, func.row_number().over(
        partition_by=moves.c.iid, order_by=(moves.c.at, moves.c.rid)).label("n")).subquery("ranked")
    firsts = select(ranked.c.iid, ranked.c.frm).where(ranked.c.n == 1).subquery("firsts")
    enrolled = (select(inst.c.id.label("iid"), inst.c.enrolled_at.label("t"), literal(0).label("seq"),
                       literal("").label("rid"),
                       case((firsts.c.iid.is_not(None), firsts.c.frm), else_=inv.c.version).label("ver"))
                .select_from(inst.outerjoin(firsts, firsts.c.iid == inst.c.id)
                             .outerjoin(inv, and_(inv.c.installation_id == inst.c.id, inv.c.component == component))))
    moved = select(moves.c.iid, case((moves.c.at > moves.c.enrolled, moves.c.at), else_=moves.c.enrolled),
                   literal(1), moves.c.rid, moves.c.ver)
    revoked = (select(inst.c.id, case((inst.c.revoked_at > inst.c.enrolled_at, inst.c.revoked_at),
                                      else_=inst.c.enrolled_at),
                      literal(2), literal(""), type_coerce(null(), inv.c.version.type))
               .where(inst.c.revoked_at.is_not(None)))
    points = union_all(enrolled, moved, revoked).subquery("points")
    spans = (select(points.c.ver, points.c.t,
                    func.lead(points.c.t).over(partition_by=points.c.iid,
                                               order_by=(points.c.t, points.c.seq, points.c.rid)).label("until"))
             .where(points.c.t < end).subquery("spans"))

    def day(t: Any) -> Any:
        d = _day_of(dialect, t)
        return type_coerce(case((d < literal(first, Date), literal(first, Date)), else_=d), Date)

    starts = select(day(spans.c.t).label("day"), spans.c.ver, literal(1).label("delta")).where(spans.c.ver.is_not(None))
    ends = (select(day(spans.c.until), spans.c.ver, literal(-1))
            .where(spans.c.ver.is_not(None), spans.c.until.is_not(None)))
    deltas = union_all(starts, ends).subquery("deltas")
    per_day: dict[date, Counter[str]] = defaultdict(Counter)
    for d, version, n in session.execute(select(deltas.c.day, deltas.c.ver, func.sum(deltas.c.delta))
                                         .group_by(deltas.c.day, deltas.c.ver)):
        per_day[d if isinstance(d, date) else date.fromisoformat(d)][version] += int(n)
    running: Counter[str] = Counter()
    out = {}
    day_ = first
    while day_ <= last:
        running.update(per_day.get(day_, {}))
        out[day_] = {v: n for v, n in running.items() if n > 0}
        day_ += timedelta(days=1)
    return out


def record_days(session: Session, component: str, counts: dict[date, dict[str, int]]) -> int:
    """Store counted days and commit; 0 (and nothing stored) when one of them was counted meanwhile."""
    if not counts:
        return 0
    now = utcnow()
    try:
        session.execute(insert(AdoptionDayCounted),
                        [{"day": d, "component": component, "counted_at": now} for d in sorted(counts)])
        rows = [{"day": d, "component": component, "version": v, "installations": n}
                for d in sorted(counts) for v, n in counts[d].items()]
        if rows:
            session.execute(insert(AdoptionCount), rows)
        session.commit()
    except IntegrityError:  # another worker (or run) counted one of these days first: its counts stand
        session.rollback()
        return 0
    return len(counts)


def missing_days(session: Session, component: str, today: date) -> list[date]:
    """The days of the last :data:`HISTORY_DAYS` before today not counted yet for ``component``."""
    first = today - timedelta(days=HISTORY_DAYS - 1)
    have = set(session.scalars(select(AdoptionDayCounted.day).where(AdoptionDayCounted.component == component,
                                                                   AdoptionDayCounted.day >= first)))
    return [first + timedelta(days=n) for n in range(HISTORY_DAYS - 1)
            if first + timedelta(days=n) not in have]


def count_missing_days(read: Session, write: Session, components: list[str], today: date | None = None) -> int:
    """Count every missing day of every component (the job ``count-adoption``); the days stored.

    ``read`` runs the replays (a plain transaction: on SQLite it does not hold the write
    lock while it reads the fleet), ``write`` stores each component's days in one
    transaction; days older than :data:`HISTORY_DAYS` are dropped.
    """
    today = today or utcnow().date()
    stored = 0
    for component in components:
        missing = missing_days(read, component, today)
        read.rollback()
        if not missing:
            continue
        counts = count_days(read, component, missing[0], missing[-1])
        read.rollback()
        stored += record_days(write, component, {d: counts[d] for d in missing})
    write.execute(delete(AdoptionDayCounted).where(AdoptionDayCounted.day < today - timedelta(days=HISTORY_DAYS - 1)))
    write.commit()
    return stored


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
