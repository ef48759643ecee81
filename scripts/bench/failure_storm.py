#!/usr/bin/env python3
"""A storm of failed-update reports: how fast they are ingested, and whether the grouping stays exact.

Builds a fleet (``--customers`` customers, ``--installations`` installations), then sends
``--reports`` failure reports with ``--causes`` distinct causes (each message varies in
numbers, paths, ids and timestamps, so only the normalised fingerprint groups them) from
``--clients`` concurrent HTTP clients, some batches sent twice. It then checks that there
is exactly one failure group per cause, exactly one ticket per (group, customer) affected,
and exact report/installation/customer counts, and prints reports ingested per second.

Starts its own server (gunicorn) on a temporary instance: SQLite + local disk by
default, or PostgreSQL with ``--database-url postgresql://...`` (a fresh, empty database).

    .venv/bin/python scripts/bench/failure_storm.py [--reports 2000 --clients 8 --workers 4]

The functions here (``build_fleet``, ``make_plan``, ``run_storm``, ``verify``) are also
used by tests/functional/test_support_storm.py.
"""
from __future__ import annotations

import argparse
import os
import queue
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[2]

CAUSES = [
    # (stage, error code, outcome, message template)
    ("migrate", "E_MIGRATION", "rolled_back",
     "Migration {n} failed: lock timeout after {s}s on /var/lib/crm/{u}/db.sqlite at {ts}"),
    ("health_check", "E_HEALTH", "failed",
     "Health check got HTTP 503 from http://127.0.0.1:{port}/health after {s} attempts (request {h})"),
    ("download", "E_DIGEST", "rolled_back",
     "Digest mismatch for /srv/crm/cache/{h}.tar.gz: expected sha256 {h2}, {n} bytes read"),
    ("pre_install", "E_HOOK", "failed",
     "pre-install hook exited with status {n} at {ts}: C:\\CRM\\hooks\\{u}\\pre.cmd"),
    ("post_install", "E_SCHEMA", "mixed",
     "Schema check failed: table invoices has {n} columns, expected {n2} (txid 0x{h})"),
]


@dataclass
class Plan:
    """Who sends what: batches of report dicts per installation token."""

    batches: list[tuple[str, list[dict[str, Any]]]]  # (installation token, reports)
    duplicates: int
    expected_groups: dict[int, dict[str, Any]] = field(default_factory=dict)  # cause -> figures
    expected_tickets: set[tuple[int, int]] = field(default_factory=set)  # (cause, customer id)

    @property
    def unique_reports(self) -> int:
        return sum(g["reports"] for g in self.expected_groups.values())


def build_fleet(session: Any, customers: int, installations: int) -> list[tuple[str, int, str]]:
    """Customers and enrolled installations, made by the fleet services: [(installation id, customer id, token)]."""
    from release_server.fleet import services
    from release_server.fleet.schemas import EnrollRequest

    custs = [services.create_customer(session, f"Storm Customer {c:02d}", f"it@storm{c:02d}.example")
             for c in range(customers)]
    tokens = {c.id: services.create_enrollment_token(session, c, actor="bench")[1] for c in custs}
    out = []
    for i in range(installations):
        cust = custs[i % customers]
        inst, secret = services.enroll(session, EnrollRequest(enrollment_token=tokens[cust.id], name=f"site-{i:04d}",
                                                              installed={"server": "1.0"}))
        out.append((inst.id, cust.id, secret))
    session.commit()
    return out


def _message(template: str, rnd: random.Random) -> str:
    h = "".join(rnd.choice("0123456789abcdef") for _ in range(12))
    return template.format(
        n=rnd.randint(1, 99999), n2=rnd.randint(1, 99), s=rnd.randint(1, 600),
        u=str(uuid.UUID(int=rnd.getrandbits(128))),
        ts=f"2025-0{rnd.randint(1, 9)}-1{rnd.randint(0, 9)}T{rnd.randint(10, 23)}:{rnd.randint(10, 59)}:00Z",
        port=rnd.randint(1024, 65535), h=h, h2=h[::-1] * 2)


def make_plan(fleet: list[tuple[str, int, str]], reports: int, causes: int = 5, duplicate_share: float = 0.1,
              seed: int = 7) -> Plan:
    """Spread ``reports`` over the installations (round robin), each installation cycling through causes."""
    rnd = random.Random(seed)
    per_inst: dict[int, list[dict[str, Any]]] = defaultdict(list)
    groups: dict[int, dict[str, Any]] = {}
    tickets: set[tuple[int, int]] = set()
    seen_inst: dict[int, set[str]] = defaultdict(set)
    seen_cust: dict[int, set[int]] = defaultdict(set)
    for r in range(reports):
        idx = r % len(fleet)
        inst_id, cust_id, _ = fleet[idx]
        cause = (idx + r // len(fleet)) % causes
        stage, code, outcome, template = CAUSES[cause]
        if outcome == "mixed":
            outcome = "rolled_back" if rnd.random() < 0.5 else "failed"
        per_inst[idx].append({"id": str(uuid.UUID(int=rnd.getrandbits(128))), "component": "server",
                              "from_version": "1.0", "to_version": "2.0", "outcome": outcome, "stage": stage,
                              "error_code": code, "error_message": _message(template, rnd),
                              "log_tail": "...\n" * 20})
        g = groups.setdefault(cause, {"reports": 0, "rolled_back": 0, "failed": 0})
        g["reports"] += 1
        g[outcome] += 1
        seen_inst[cause].add(inst_id)
        seen_cust[cause].add(cust_id)
        tickets.add((cause, cust_id))
    for cause, g in groups.items():
        g["installations"] = len(seen_inst[cause])
        g["customers"] = len(seen_cust[cause])
    batches = []
    for idx, items in per_inst.items():
        token = fleet[idx][2]
        for start in range(0, len(items), 2):  # batches of two: one transaction touches two groups
            batches.append((token, items[start:start + 2]))
    rnd.shuffle(batches)
    dups = [batches[i] for i in rnd.sample(range(len(batches)), int(len(batches) * duplicate_share))]
    for d in dups:  # sent again, at a random later point (possibly at the same time by another client)
        batches.insert(rnd.randrange(len(batches) // 2, len(batches) + 1), d)
    return Plan(batches, len(dups), groups, tickets)


@dataclass
class StormResult:
    seconds: float
    requests: int
    retries: int
    accepted: int
    duplicates: int
    errors: list[str]
    #: how often each report id was answered "accepted" (stored by that request), and every id answered at all
    accepted_ids: Counter = field(default_factory=Counter)
    answered_ids: set = field(default_factory=set)

    def rate(self, reports: int) -> float:
        return reports / self.seconds if self.seconds else 0.0


def run_storm(url: str, plan: Plan, clients: int = 8, max_tries: int = 8) -> StormResult:
    """Send every batch from ``clients`` threads; 5xx and connection errors are retried like the agent does."""
    work: queue.Queue = queue.Queue()
    for b in plan.batches:
        work.put(b)
    lock = threading.Lock()
    totals = {"requests": 0, "retries": 0, "accepted": 0, "duplicates": 0}
    accepted_ids: Counter = Counter()
    answered_ids: set = set()
    errors: list[str] = []

    def client() -> None:
        with requests.Session() as http:
            while True:
                try:
                    token, reports = work.get_nowait()
                except queue.Empty:
                    return
                for attempt in range(max_tries):
                    try:
                        resp = http.post(f"{url}/api/v1/reports", json={"reports": reports}, timeout=120,
                                         headers={"Authorization": f"Bearer {token}"})
                    except requests.RequestException as e:
                        status, body = None, str(e)
                    else:
                        with resp:
                            status, body = resp.status_code, resp.json() if resp.ok else resp.text[:300]
                    with lock:
                        totals["requests"] += 1
                    if status == 200:
                        with lock:
                            totals["accepted"] += len(body["accepted"])
                            totals["duplicates"] += len(body["duplicates"])
                            accepted_ids.update(str(uuid.UUID(i)) for i in body["accepted"])
                            answered_ids.update(str(uuid.UUID(i)) for i in body["accepted"] + body["duplicates"])
                        break
                    if status is not None and status < 500:
                        with lock:
                            errors.append(f"{status}: {body}")
                        break
                    with lock:
                        totals["retries"] += 1
                    time.sleep(min(0.05 * 2 ** attempt, 2.0) * random.uniform(0.5, 1.5))
                else:
                    with lock:
                        errors.append(f"gave up after {max_tries} tries: {body}")

    threads = [threading.Thread(target=client) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return StormResult(time.perf_counter() - t0, totals["requests"], totals["retries"], totals["accepted"],
                       totals["duplicates"], errors, accepted_ids, answered_ids)


def verify(session: Any, plan: Plan) -> list[str]:
    """Compare the database with the plan; returns the differences (empty when exact)."""
    from sqlalchemy import func, select

    from release_server.support import failures
    from release_server.support.models import FailureGroup, FailureGroupReport, Ticket, TicketEvent

    problems = []
    groups = list(session.scalars(select(FailureGroup).order_by(FailureGroup.id)))
    if len(groups) != len(plan.expected_groups):
        problems.append(f"{len(groups)} failure groups, expected {len(plan.expected_groups)}")
    by_code = {g.error_code: g for g in groups}
    stats = failures.stats(session, [g.id for g in groups])
    for cause, exp in plan.expected_groups.items():
        g = by_code.get(CAUSES[cause][1])
        if g is None:
            problems.append(f"no group for cause {cause}")
            continue
        s = stats[g.id]
        got = {"reports": s.reports, "rolled_back": s.rolled_back, "failed": s.failed,
               "installations": s.installations, "customers": s.customers}
        if got != exp:
            problems.append(f"cause {cause}: {got} != expected {exp}")
    pairs = session.execute(select(Ticket.failure_group_id, Ticket.customer_id)
                            .where(Ticket.source == "failure_report", Ticket.internal.is_(False))).all()
    code_of = {g.id: g.error_code for g in groups}
    cause_of = {c[1]: i for i, c in enumerate(CAUSES)}
    got_pairs = [(cause_of[code_of[gid]], cid) for gid, cid in pairs]
    if len(got_pairs) != len(set(got_pairs)):
        problems.append("duplicate tickets for a (group, customer)")
    if set(got_pairs) != plan.expected_tickets:
        problems.append(f"{len(set(got_pairs))} (group, customer) tickets, expected {len(plan.expected_tickets)}")
    linked = session.scalar(select(func.count()).select_from(FailureGroupReport))
    events = session.scalar(select(func.count()).select_from(TicketEvent).where(TicketEvent.kind == "failure_report"))
    if linked != plan.unique_reports or events != plan.unique_reports:
        problems.append(f"{linked} grouped reports / {events} timeline entries, expected {plan.unique_reports}")
    return problems


# ---------------------------------------------------------------- the benchmark


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reports", type=int, default=2000)
    ap.add_argument("--installations", type=int, default=500)
    ap.add_argument("--customers", type=int, default=20)
    ap.add_argument("--causes", type=int, default=5, choices=range(1, len(CAUSES) + 1))
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    ap.add_argument("--database-url", default=None, help="an empty PostgreSQL database (default: SQLite)")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="rs-bench-storm-"))
    instance = work / "instance"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELEASE_SERVER_")}
    env.pop("DATABASE_URL", None)
    env.update(RELEASE_SERVER_INSTANCE_PATH=str(instance), PYTHONPATH=str(ROOT))
    if args.database_url:
        env["DATABASE_URL"] = args.database_url
    os.environ.update({k: v for k, v in env.items() if k in ("RELEASE_SERVER_INSTANCE_PATH", "DATABASE_URL")})
    sys.path.insert(0, str(ROOT))
    server = None
    try:
        from release_server import create_app
        from release_server.db import db
        from release_server.migrations import upgrade

        app = create_app({"INSTANCE_PATH": str(instance)})  # creates the instance folder
        with app.app_context():
            upgrade(db.engine)
            t0 = time.perf_counter()
            fleet = build_fleet(db.session, args.customers, args.installations)
            print(f"fleet: {args.customers} customers, {len(fleet)} installations "
                  f"({time.perf_counter() - t0:.1f}s)", flush=True)
        plan = make_plan(fleet, args.reports, args.causes)
        port = free_port()
        log = open(work / "server.log", "wb")
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--workers", str(args.workers), "--bind", f"127.0.0.1:{port}",
             "--timeout", "300", "release_server:create_app()"], env=env, cwd=str(ROOT), stdout=log,
            stderr=subprocess.STDOUT)
        log.close()
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                requests.get(url + "/healthz", timeout=1).close()
                break
            except requests.RequestException:
                time.sleep(0.1)
        result = run_storm(url, plan, args.clients)
        with app.app_context():
            problems = verify(db.session, plan)
        app.extensions["db_engine"].dispose()
        backend = "PostgreSQL" if args.database_url else "SQLite"
        print()
        print(f"backend                      {backend}, {args.workers} gunicorn workers, {args.clients} clients")
        print(f"reports                      {plan.unique_reports} unique + {result.duplicates} resent duplicates "
              f"in {len(plan.batches)} requests ({plan.duplicates} resent batches)")
        print(f"wall time                    {result.seconds:8.2f} s")
        print(f"reports ingested per second  {result.rate(plan.unique_reports + result.duplicates):8.1f}")
        print(f"requests per second          {result.requests / result.seconds:8.1f}   (retried after 5xx: "
              f"{result.retries})")
        print(f"groups / tickets             {len(plan.expected_groups)} / {len(plan.expected_tickets)} expected")
        for e in result.errors[:5]:
            print(f"error: {e}")
        if problems or result.errors:
            for p in problems:
                print(f"MISMATCH: {p}")
            print("\nFAIL")
            return 1
        print("counts exact: PASS")
        return 0
    finally:
        if server is not None:
            server.terminate()
            server.wait(15)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
