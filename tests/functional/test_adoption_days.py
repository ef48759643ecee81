"""Adoption by day: counted once per day by the worker, read as days x versions rows.

The figures are checked against the reconstruction the dashboard used to run on every
view (kept here as the oracle), on a fleet with enrollments, updates, failed updates,
automatic rollbacks and revocations spread over several days.
"""
from __future__ import annotations

import random
import uuid
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pytest
from factories import create_component, statements_run
from functional.test_web_console import console_login, make_staff
from packaging.version import Version
from sqlalchemy import delete, func, insert, select

from release_server.db import db
from release_server.fleet.models import Customer, InstalledComponent, Installation, UpdateReport
from release_server.models_common import utcnow
from release_server.rollouts import figures
from release_server.rollouts.models import AdoptionCount, AdoptionDayCounted

DAYS = 12


def old_adoption(session: Any, component: str, days: int, today: date, *,
                 revoked_as_of_day_end: bool = False) -> list[tuple[date, dict]]:
    """The reconstruction the dashboard ran on every view before days were counted (days x installations).

    ``revoked_as_of_day_end``: an installation revoked counts on the days before its
    revocation (the figures as the old function would have given them at each day's end)
    instead of disappearing from every day.
    """
    first_day = today - timedelta(days=days - 1)
    insts = {i: (enrolled, revoked) for i, enrolled, revoked in session.execute(
        select(Installation.id, Installation.enrolled_at, Installation.revoked_at))
        if revoked is None or revoked_as_of_day_end}
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
        end = datetime.combine(day + timedelta(days=1), datetime.min.time()).replace(tzinfo=timezone.utc)
        counts: Counter[str] = Counter()
        for inst_id, (enrolled_at, revoked_at) in insts.items():
            if enrolled_at >= end or (revoked_at is not None and revoked_at < end):
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


VERSIONS = ["1.0", "1.1", "2.0", "2.1", "3.0"]


def build_fleet(app: Any, count: int, *, seed: int = 7, revocations: bool = True) -> datetime:
    """``count`` installations enrolled over the last DAYS + 3 days, with reports as agents send them.

    Each installation starts on a version, then sends 0-4 reports at increasing times:
    successful updates (the version moves on), failed updates (it stays), automatic
    rollbacks (back to the version it started from, i.e. it stays); some are revoked
    (no report after that); one in ten has no inventory of the component at all.
    The inventory ends where the reports left it, as the server keeps it.
    """
    rnd = random.Random(seed)
    now = utcnow()
    start = now - timedelta(days=DAYS + 3)
    with app.app_context():
        s = db.session
        customer_id = s.scalar(select(Customer.id).where(Customer.name == "Acme"))
        insts, inventory, reports = [], [], []
        for i in range(count):
            iid = str(uuid.UUID(int=rnd.getrandbits(128)))
            enrolled = start + (now - start) * rnd.random()
            revoked = None
            if revocations and rnd.random() < 0.2:
                revoked = enrolled + (now - enrolled) * rnd.random()
            insts.append(dict(id=iid, customer_id=customer_id, name=f"n{i}", token_prefix=f"p{seed}-{i}",
                              token_hash="x" * 64, enrolled_at=enrolled, revoked_at=revoked))
            level = rnd.randrange(2)
            version: str | None = VERSIONS[level]
            t = enrolled
            for _ in range(rnd.randrange(5)):
                t = t + (now - t) * rnd.random() * 0.6
                if revoked is not None and t >= revoked:
                    break
                if level + 1 >= len(VERSIONS):
                    break
                outcome = rnd.choice(["success", "success", "failed", "rolled_back"])
                reports.append(dict(id=str(uuid.UUID(int=rnd.getrandbits(128))), installation_id=iid,
                                    component="server", from_version=VERSIONS[level], to_version=VERSIONS[level + 1],
                                    outcome=outcome, received_at=t))
                if outcome == "success":
                    level += 1
                    version = VERSIONS[level]
            if rnd.random() < 0.1 and not any(r["installation_id"] == iid for r in reports[-5:]):
                version = None  # runs no "server" (another component only)
            if version is not None:
                inventory.append(dict(installation_id=iid, component="server", version=version))
            inventory.append(dict(installation_id=iid, component="web", version="5.0"))
        s.execute(insert(Installation), insts)
        s.execute(insert(InstalledComponent), inventory)
        if reports:
            s.execute(insert(UpdateReport), reports)
        s.commit()
    return now


@pytest.fixture
def fleet_world(app: Any, client: Any, auth: Any) -> dict[str, str]:
    admin = auth.headers("admin")
    assert client.post("/api/v1/customers", json={"name": "Acme"}, headers=admin).status_code == 201
    create_component(client, admin, "server")
    create_component(client, admin, "web")
    return admin


def count_days(app: Any, today: date | None = None) -> int:
    with app.app_context():
        read, write = db.new_session(write=False), db.new_session(write=True)
        try:
            return figures.count_missing_days(read, write, ["server", "web"], today)
        finally:
            read.close()
            write.close()


def api_days(client: Any, admin: dict[str, str], days: int = DAYS) -> list[tuple[date, dict]]:
    r = client.get(f"/api/v1/fleet/adoption?component=server&days={days}", headers=admin)
    assert r.status_code == 200, r.json
    assert all(d["counted"] for d in r.json["days"]), r.json
    return [(date.fromisoformat(d["day"]), d["versions"]) for d in r.json["days"]]


def test_counted_days_equal_the_old_reconstruction_without_revocations(app: Any, client: Any,
                                                                       fleet_world: dict[str, str]) -> None:
    now = build_fleet(app, 150, revocations=False)
    assert count_days(app) == 2 * (figures.HISTORY_DAYS - 1)  # a year back, each component, in one go
    with app.app_context():
        expected = old_adoption(db.session, "server", DAYS, now.date())
    got = api_days(client, fleet_world)
    assert got == expected
    assert len({tuple(v.items()) for _, v in got}) > 5  # the fleet changed from day to day


def test_counted_days_equal_the_old_reconstruction_with_revocations_as_of_each_day(
        app: Any, client: Any, fleet_world: dict[str, str]) -> None:
    now = build_fleet(app, 200, seed=11)
    with app.app_context():
        revoked = db.session.scalar(select(func.count()).select_from(Installation)
                                    .where(Installation.revoked_at.is_not(None)))
        assert revoked > 20
        as_of_day_end = old_adoption(db.session, "server", DAYS, now.date(), revoked_as_of_day_end=True)
        old = old_adoption(db.session, "server", DAYS, now.date())
    # one day at a time, as the worker does after each day ends (the first run backfills the year before)
    for back in range(DAYS - 1, -1, -1):
        count_days(app, now.date() - timedelta(days=back))
    assert api_days(client, fleet_world) == as_of_day_end
    # today is the same either way (those revoked are gone); before, the revoked still counted then
    assert as_of_day_end[-1] == old[-1] and as_of_day_end[:-1] != old[:-1]


def test_operator_rollback_and_revocation_move_the_counts_on_their_day(app: Any, client: Any,
                                                                        fleet_world: dict[str, str]) -> None:
    today = utcnow().date()

    def at(days_back: int, hour: int = 12) -> datetime:
        return datetime.combine(today - timedelta(days=days_back), datetime.min.time()).replace(
            hour=hour, tzinfo=timezone.utc)

    with app.app_context():
        s = db.session
        cid = s.scalar(select(Customer.id).where(Customer.name == "Acme"))
        s.execute(insert(Installation), [
            dict(id="a" * 8, customer_id=cid, name="a", token_prefix="pa", token_hash="x", enrolled_at=at(6)),
            dict(id="b" * 8, customer_id=cid, name="b", token_prefix="pb", token_hash="x", enrolled_at=at(6),
                 revoked_at=at(2, 9))])
        s.execute(insert(InstalledComponent), [dict(installation_id="a" * 8, component="server", version="1.0"),
                                               dict(installation_id="b" * 8, component="server", version="1.0")])
        s.execute(insert(UpdateReport), [
            dict(id=str(uuid.uuid4()), installation_id="a" * 8, component="server", from_version="1.0",
                 to_version="2.0", outcome="success", received_at=at(4)),
            dict(id=str(uuid.uuid4()), installation_id="a" * 8, component="server", from_version="2.0",
                 to_version="1.0", outcome="operator_rollback", received_at=at(1, 23))])
        s.commit()
    count_days(app)
    days = dict(api_days(client, fleet_world, 7))
    assert days[today - timedelta(days=6)] == {"1.0": 2}
    assert days[today - timedelta(days=4)] == {"1.0": 1, "2.0": 1}
    assert days[today - timedelta(days=2)] == {"2.0": 1}  # b revoked that morning: not running at its end
    assert days[today - timedelta(days=1)] == {"1.0": 1}  # the operator took a back to 1.0, as its inventory says
    assert days[today] == {"1.0": 1}


def test_a_day_is_counted_once_by_reruns_and_racing_workers(app: Any, fleet_world: dict[str, str]) -> None:
    now = build_fleet(app, 60)
    today = now.date()
    yesterday = today - timedelta(days=1)
    assert count_days(app, yesterday) == 2 * (figures.HISTORY_DAYS - 1)
    with app.app_context():
        # two workers see the same day missing and count it; the first to store it wins
        a, b = db.new_session(write=False), db.new_session(write=False)
        assert figures.missing_days(a, "server", today) == figures.missing_days(b, "server", today) == [yesterday]
        counts_a = figures.count_days(a, "server", yesterday, yesterday)
        counts_b = figures.count_days(b, "server", yesterday, yesterday)
        a.close()
        b.close()
        assert counts_a == counts_b and sum(counts_a[yesterday].values()) > 20
        wa, wb = db.new_session(write=True), db.new_session(write=True)
        assert figures.record_days(wa, "server", counts_a) == 1
        assert figures.record_days(wb, "server", counts_b) == 0  # the unique key refused it; nothing doubled
        wa.close()
        wb.close()
        stored = dict(db.session.execute(select(AdoptionCount.version, AdoptionCount.installations)
                                         .where(AdoptionCount.component == "server", AdoptionCount.day == yesterday)).all())
        assert stored == counts_a[yesterday]
        db.session.rollback()
    # the job, run again (by hand and by the worker), only adds the day the other one did not count
    assert count_days(app, today) == 1  # "web" of yesterday
    assert count_days(app, today) == 0
    from release_server import worker

    (job,) = [j for j in app.extensions["worker_jobs"] if j.name == "count-adoption"]
    with app.app_context():
        assert worker.run_job(job)
        rows = db.session.execute(select(AdoptionCount.day, AdoptionCount.version, AdoptionCount.installations)
                                  .where(AdoptionCount.component == "server", AdoptionCount.day == yesterday)).all()
        days = db.session.scalar(select(func.count()).select_from(AdoptionDayCounted)
                                 .where(AdoptionDayCounted.component == "server"))
        run = db.session.get(worker.WorkerJobRun, "count-adoption")
    assert {v: n for _, v, n in rows} == counts_a[yesterday]
    assert days == figures.HISTORY_DAYS - 1  # each day of the year before today, once
    assert run.last_ok and run.runs == 1


def test_old_days_are_dropped_and_a_missing_day_is_marked(app: Any, client: Any, fleet_world: dict[str, str]) -> None:
    now = build_fleet(app, 30)
    count_days(app, now.date() - timedelta(days=3))  # the worker stopped three days ago
    r = client.get("/api/v1/fleet/adoption?component=server&days=5", headers=fleet_world).json["days"]
    assert [d["counted"] for d in r] == [True, False, False, False, True]
    assert r[2]["versions"] == {} and sum(r[-1]["versions"].values()) > 10
    count_days(app, now.date() + timedelta(days=400))
    with app.app_context():
        oldest = db.session.scalar(select(func.min(AdoptionDayCounted.day)))
        kept = db.session.scalar(select(func.count()).select_from(AdoptionCount)
                                 .where(AdoptionCount.day < now.date() + timedelta(days=400 - 365)))
    assert oldest == now.date() + timedelta(days=400 - 365) and kept == 0


def test_dashboard_and_api_read_the_same_statements_for_50_and_500_installations(
        app: Any, client: Any, fleet_world: dict[str, str], backend: str) -> None:
    make_staff(app, "sam", "support")
    assert console_login(client, "sam").status_code == 302
    per_size = {}
    for size, seed in ((50, 1), (500, 2)):
        build_fleet(app, size - (50 if size == 500 else 0), seed=seed)
        with app.app_context():  # counted afresh for this fleet
            db.session.execute(delete(AdoptionDayCounted))
            db.session.commit()
        count_days(app)
        board = statements_run(app, lambda: client.get("/console/?component=server"))
        api = statements_run(app, lambda: client.get("/api/v1/fleet/adoption?component=server&days=30",
                                                  headers=fleet_world))
        assert client.get("/console/?component=server").status_code == 200
        per_size[size] = (board, api)
        with app.app_context():
            total = db.session.scalar(select(func.count()).select_from(Installation))
        assert total == size
    (board50, api50), (board500, api500) = per_size[50], per_size[500]
    assert [s for s, _ in board50] == [s for s, _ in board500]
    assert [s for s, _ in api50] == [s for s, _ in api500]
    # no replay on a view: nothing reads when installations enrolled or when reports came
    for statement, _ in board500 + api500:
        assert "enrolled_at" not in statement and "received_at" not in statement, statement
    if backend == "postgres-s3":  # psycopg counts the rows of a SELECT: days x versions, not installations
        assert max(n for _, n in board500 + api500) < 200, sorted(board500 + api500, key=lambda r: -r[1])[:3]
