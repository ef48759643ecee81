#!/usr/bin/env python3
"""Report ingestion: reports per second against a bare Flask + SQLAlchemy one-INSERT-per-report route.

Builds an instance with ``--installations`` enrolled installations of ``--customers``
customers (SQLite by default, or PostgreSQL with ``--database-url``, an empty database),
starts gunicorn on the release server and, with the same worker configuration, on
``bare_reports_app.py`` (one INSERT per report, one commit per request, no grouping), and
sends both the same failure reports in batches of ``--batch`` (5 causes, messages that
differ in numbers and paths, as in ``failure_storm.py``) from ``--clients`` threads.
Rounds alternate A B B A; each prints reports per second and the server process
tree's CPU time per report. Before that it counts, in process, the SQL statements one
batch costs (SQLAlchemy's ``before_cursor_execute`` event): the first batch of a
customer (groups and tickets to create) and a steady one.

Targets: at least 0.5x the bare route's rate, at most 4 statements per report in a
batch of 50.

    .venv/bin/python scripts/bench/report_ingest.py [--seconds 20] [--database-url postgresql://...]
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import queue
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from check_throughput import free_port, tree_cpu  # noqa: E402


def _storm() -> Any:
    spec = importlib.util.spec_from_file_location("failure_storm_bench", HERE / "failure_storm.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["failure_storm_bench"] = module
    spec.loader.exec_module(module)
    return module


storm = _storm()


def make_batch(rnd: random.Random, size: int) -> list[dict[str, Any]]:
    out = []
    for _ in range(size):
        stage, code, outcome, template = storm.CAUSES[rnd.randrange(len(storm.CAUSES))]
        if outcome == "mixed":
            outcome = "rolled_back" if rnd.random() < 0.5 else "failed"
        out.append({"id": str(uuid.UUID(int=rnd.getrandbits(128))), "component": "server", "from_version": "1.0",
                    "to_version": "2.0", "outcome": outcome, "stage": stage, "error_code": code,
                    "error_message": storm._message(template, rnd), "log_tail": "...\n" * 200})
    return out


def count_statements(app: Any, tokens: list[str], batch: int) -> tuple[float, float]:
    """SQL statements per report: a customer's first batch, then a steady batch (its groups and ticket exist)."""
    from sqlalchemy import event

    engine = app.extensions["db_engine"]
    client = app.test_client()
    rnd = random.Random(99)
    counts: list[int] = []
    for token in (tokens[0], tokens[0]):
        seen: list[str] = []

        def on(*args: Any) -> None:
            seen.append(args[2])

        event.listen(engine, "before_cursor_execute", on)
        try:
            r = client.post("/api/v1/reports", json={"reports": make_batch(rnd, batch)},
                            headers={"Authorization": f"Bearer {token}"})
        finally:
            event.remove(engine, "before_cursor_execute", on)
        assert r.status_code == 200, r.data
        counts.append(len(seen))
    return counts[0] / batch, counts[1] / batch


def start(target: str, port: int, workers: int, env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen:
    out = open(log, "wb")
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "--workers", str(workers), "--bind",
                             f"127.0.0.1:{port}", "--timeout", "300", target], env=env, cwd=str(cwd),
                            stdout=out, stderr=subprocess.STDOUT)
    out.close()
    for _ in range(300):
        try:
            requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).close()
            return proc
        except requests.RequestException:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{target} did not start (see {log})")


def drive(port: int, tokens: list[str], seconds: float, clients: int, batch: int, seed: int) -> tuple[int, int]:
    """Send batches for ``seconds`` from ``clients`` threads; returns (reports accepted, errors)."""
    deadline = time.monotonic() + seconds
    lock = threading.Lock()
    totals = {"ok": 0, "errors": 0}
    bodies: queue.Queue = queue.Queue()
    rnd = random.Random(seed)
    for _ in range(int(seconds * 400 / batch) + clients * 4):  # prepared ahead, so clients only send
        bodies.put((rnd.choice(tokens), make_batch(rnd, batch)))

    def client() -> None:
        with requests.Session() as http:
            while time.monotonic() < deadline:
                try:
                    token, reports = bodies.get_nowait()
                except queue.Empty:
                    return
                try:
                    r = http.post(f"http://127.0.0.1:{port}/api/v1/reports", json={"reports": reports}, timeout=120,
                                  headers={"Authorization": f"Bearer {token}"})
                    ok = r.status_code == 200 and len(r.json()["accepted"]) == len(reports)
                except requests.RequestException:
                    ok = False
                with lock:
                    totals["ok" if ok else "errors"] += len(reports) if ok else 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return totals["ok"], totals["errors"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20, help="measured seconds per server, over all rounds")
    ap.add_argument("--rounds", type=int, default=4, help="rounds, run as A B B A pairs")
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--installations", type=int, default=200)
    ap.add_argument("--customers", type=int, default=20)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--database-url", default=None, help="an empty PostgreSQL database (default: SQLite)")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="rs-bench-reports-"))
    instance = work / "instance"
    instance.mkdir(mode=0o700)  # create_app finds an instance only where one exists
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELEASE_SERVER_")}
    env.pop("DATABASE_URL", None)
    env.update(RELEASE_SERVER_INSTANCE_PATH=str(instance), PYTHONPATH=str(ROOT))
    if args.database_url:
        env["DATABASE_URL"] = args.database_url
    bare_env = dict(env, BARE_DATABASE_URL=args.database_url or f"sqlite:///{work / 'bare.db'}")
    os.environ.update({k: v for k, v in env.items() if k in ("RELEASE_SERVER_INSTANCE_PATH", "DATABASE_URL")})
    procs: list[subprocess.Popen] = []
    try:
        from release_server import create_app
        from release_server.db import db
        from release_server.migrations import upgrade

        app = create_app()
        with app.app_context():
            upgrade(db.engine)
            fleet = storm.build_fleet(db.session, args.customers, args.installations)
        tokens = [t for _, _, t in fleet]
        first, steady = count_statements(app, tokens, args.batch)
        app.extensions["db_engine"].dispose()
        backend = "PostgreSQL" if args.database_url else "SQLite"
        print(f"{backend}: {len(fleet)} installations of {args.customers} customers; batches of {args.batch}; "
              f"gunicorn --workers {args.workers}; {args.clients} clients")
        print(f"SQL statements per report in a batch of {args.batch}: {steady:.2f} steady, {first:.2f} in a "
              f"customer's first batch (target <= 4)")
        servers = {}
        for name, target, cwd, e in (("bare route", "bare_reports_app:app", HERE, bare_env),
                                     ("release server", "release_server:create_app()", ROOT, env)):
            port = free_port()
            proc = start(target, port, args.workers, e, cwd, work / f"{port}.log")
            procs.append(proc)
            servers[name] = (port, proc.pid)
        for port, _ in servers.values():
            drive(port, tokens, 2, args.clients, args.batch, seed=1)  # warm up
        per_round = max(2.0, args.seconds / args.rounds)
        rates: dict[str, list[float]] = {n: [] for n in servers}
        cpu: dict[str, list[float]] = {n: [] for n in servers}
        errors = {n: 0 for n in servers}
        names = list(servers)
        for r in range(args.rounds):
            line = []
            for name in (names if r % 2 == 0 else names[::-1]):
                port, pid = servers[name]
                c0, t0 = tree_cpu(pid), time.perf_counter()
                ok, err = drive(port, tokens, per_round, args.clients, args.batch, seed=100 + r)
                wall = time.perf_counter() - t0
                rates[name].append(ok / wall)
                cpu[name].append((tree_cpu(pid) - c0) / max(1, ok) * 1000)
                errors[name] += err
                line.append(f"{name} {ok / wall:7.0f} reports/s {cpu[name][-1]:.2f} ms CPU/report")
            print(f"  round {r + 1}: " + "; ".join(line), flush=True)
        print()
        bare = statistics.median(rates["bare route"])
        ours = statistics.median(rates["release server"])
        for name in names:
            print(f"{name:15} {statistics.median(rates[name]):7.0f} reports/s (min {min(rates[name]):.0f}, "
                  f"max {max(rates[name]):.0f}), CPU {statistics.median(cpu[name]):.2f} ms/report, "
                  f"errors {errors[name]}")
        ratio = ours / bare if bare else 0.0
        print(f"ratio {ratio:.2f} (target >= 0.50); statements per report {steady:.2f} (target <= 4)")
        ok = ratio >= 0.5 and steady <= 4 and not errors["release server"]
        print("PASS" if ok else "FAIL")
        return 0 if ok else 1
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
