#!/usr/bin/env python3
"""The console dashboard and ``GET /api/v1/fleet/adoption`` on a large fleet in PostgreSQL.

For each fleet size (``--installations``, and ``--baseline`` beside it) it creates a
fresh PostgreSQL database, migrates it, publishes a few releases and bulk-loads with
``COPY`` the installations (enrolled over the last 60 days, 2 % revoked since), their
installed components and their update reports (most moved 1.0.0 -> 1.1.0, half of
those on to 1.2.0, some failed attempts), so the adoption chart has a history. Then:

* it runs the job ``count-adoption`` in this process, timed: the backfill of the year
  (every day, both components) and the daily run (one day, both components);
* it serves the same database with two gunicorn servers (``WORKERS=1``): the code of
  ``--old-ref`` (a ``git archive`` of it, by default ``583bb2b``, the last commit before
  adoption was stored per day: the adoption replayed on every view) and this tree's;
* it requests, on each, the dashboard (``/console/?component=server``, logged in) and
  the adoption API (30 days), ``--requests`` times each (``--old-requests`` for the
  old code, whose views take long on a large fleet), in rounds alternating A B B A,
  and prints per server the median wall time with min-max and the server process
  tree's CPU time per request.

    .venv/bin/python scripts/bench/dashboard_scale.py --installations 1000000 \\
        [--baseline 10000] [--old-ref 583bb2b] [--postgres-url postgresql://postgres@127.0.0.1:5432/test]
"""
from __future__ import annotations

import argparse
import hashlib
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import benchlib  # noqa: E402
from benchlib import free_port, load_line, stop, tree_cpu, wait_http  # noqa: E402

COMPONENTS = ["server", "web"]
PASSWORD = benchlib.BENCH_PASSWORD


def build(admin_url: str, count: int, instance: Path) -> tuple[str, str]:
    """A fresh database with ``count`` installations and their history; returns (URL, a staff token)."""
    url = benchlib.create_pg_database(admin_url, "rs_bench_dash")
    from release_server.db import db

    app, customer_id, staff = benchlib.seeded_app(url, instance, COMPONENTS)
    with app.app_context():
        s = db.session
        raw = db.engine.raw_connection()
        rnd = random.Random(count)
        now = datetime.now(timezone.utc)
        try:
            cur = raw.cursor()
            t0 = time.perf_counter()
            server_versions = []
            with cur.copy("COPY installations (id, customer_id, name, hostname, platform, agent_version, channel, "
                          "tags, state, token_prefix, token_hash, enrolled_at, revoked_at, last_seen_at) "
                          "FROM STDIN") as copy, \
                    open(instance / "reports.tsv", "w") as reports:
                for i in range(count):
                    iid = str(uuid.UUID(int=i + 1))
                    enrolled = now - timedelta(days=60) * rnd.random()
                    revoked = enrolled + (now - enrolled) * rnd.random() if rnd.random() < 0.02 else None
                    copy.write_row((iid, customer_id, f"site-{i}", f"host-{i}", "linux", "1.0", "stable", "[]",
                                    "up_to_date", f"b{i:08d}", hashlib.sha256(iid.encode()).hexdigest(),
                                    enrolled, revoked, now))
                    version, t = "1.0.0", enrolled
                    for target, chance in (("1.1.0", 0.7), ("1.2.0", 0.5)):
                        if rnd.random() >= chance:
                            break
                        t = t + (now - t) * rnd.random()
                        if revoked is not None and t >= revoked:
                            break
                        if rnd.random() < 0.05:  # a failed attempt first
                            reports.write(f"{uuid.uuid4()}\t{iid}\tserver\t{version}\t{target}\tfailed\t"
                                          f"{(t - timedelta(hours=1)).isoformat()}\n")
                        reports.write(f"{uuid.uuid4()}\t{iid}\tserver\t{version}\t{target}\tsuccess\t{t.isoformat()}\n")
                        version = target
                    server_versions.append(version)
            with cur.copy("COPY installed_components (installation_id, component, version, updated_at) "
                          "FROM STDIN") as copy:
                for i in range(count):
                    iid = str(uuid.UUID(int=i + 1))
                    copy.write_row((iid, "server", server_versions[i], now))
                    copy.write_row((iid, "web", "1.2.0", now))
            with cur.copy("COPY update_reports (id, installation_id, component, from_version, to_version, outcome, "
                          "received_at, log_tail, details) FROM STDIN") as copy, open(instance / "reports.tsv") as reports:
                for row in reports:
                    copy.write_row((*row.rstrip("\n").split("\t"), "", "{}"))
            raw.commit()
            cur.execute("ANALYZE")
            raw.commit()
            print(f"  {count:,} installations and their history copied in {time.perf_counter() - t0:.0f} s",
                  flush=True)
        finally:
            raw.close()
            (instance / "reports.tsv").unlink()
        # the job: the year backfilled, then one day as each night
        from sqlalchemy import delete

        from release_server.rollouts import figures
        from release_server.rollouts.models import AdoptionDayCounted

        def job() -> tuple[float, int]:
            read, write = db.new_session(write=False), db.new_session(write=True)
            t0 = time.perf_counter()
            try:
                n = figures.count_missing_days(read, write, COMPONENTS)
            finally:
                read.close()
                write.close()
            return time.perf_counter() - t0, n

        backfill, days = job()
        s.execute(delete(AdoptionDayCounted).where(AdoptionDayCounted.day == now.date() - timedelta(days=1)))
        s.commit()
        daily, one = job()
        print(f"  count-adoption: backfill {days} days in {backfill:.1f} s, daily run (yesterday: {one} component-days) {daily:.1f} s",
              flush=True)
    app.extensions["db_engine"].dispose()
    return url, staff


def start(tree: Path, url: str, instance: Path) -> tuple[subprocess.Popen, int]:
    """gunicorn with the shipped settings, serving the code of ``tree`` (one worker, a few threads)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELEASE_SERVER_")}
    env.update(RELEASE_SERVER_INSTANCE_PATH=str(instance), DATABASE_URL=url, PYTHONPATH=str(tree), ACCESS_LOG="",
               WORKERS="1", THREADS="4", GUNICORN_TIMEOUT="3600")
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "--config", "python:release_server.gunicorn_conf",
                             "--bind", f"127.0.0.1:{port}", "--log-level", "warning", "release_server:create_app()"],
                            env=env, cwd=str(tree), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_http(port, "/healthz", proc)
    return proc, port


def login(port: int):  # noqa: ANN201
    import requests

    http = requests.Session()
    base = f"http://127.0.0.1:{port}"
    page = http.get(base + "/console/login", timeout=60).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    r = http.post(base + "/console/login", data={"username": "bench-admin", "password": PASSWORD,
                                                 "csrf_token": token}, allow_redirects=False, timeout=60)
    assert r.status_code == 302, r.status_code
    return http


def measure(proc: subprocess.Popen, http, url: str, n: int, headers: dict | None = None) -> list[tuple[float, float]]:
    """(wall ms, server CPU ms) of ``n`` requests one after the other."""
    out = []
    for _ in range(n):
        c0, t0 = tree_cpu(proc.pid), time.perf_counter()
        r = http.get(url, headers=headers or {}, timeout=3600)
        wall = (time.perf_counter() - t0) * 1000
        assert r.status_code == 200, (url, r.status_code)
        out.append((wall, (tree_cpu(proc.pid) - c0) * 1000))
    return out


def line(label: str, samples: list[tuple[float, float]]) -> str:
    walls = [w for w, _ in samples]
    cpus = [c for _, c in samples]
    return (f"{label:<26} {statistics.median(walls):9.1f} ms (min {min(walls):.1f}, max {max(walls):.1f}), "
            f"CPU {statistics.median(cpus):9.1f} ms/request, n={len(samples)}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--installations", type=int, default=1_000_000)
    ap.add_argument("--baseline", type=int, default=10_000, help="the small fleet measured beside it")
    ap.add_argument("--postgres-url", default=os.environ.get("TEST_POSTGRES_URL",
                                                             "postgresql://postgres@127.0.0.1:5432/test"))
    ap.add_argument("--old-ref", default="583bb2b",
                    help="git revision of the code to compare with ('' for none; default: before adoption by day)")
    ap.add_argument("--requests", type=int, default=5, help="requests per endpoint per round (this code)")
    ap.add_argument("--old-requests", type=int, default=2, help="requests per endpoint per round (old code)")
    ap.add_argument("--rounds", type=int, default=2, help="rounds: A B, then B A, ...")
    ap.add_argument("--keep", action="store_true", help="keep the databases")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="rs-bench-dash-"))
    trees = {"new": ROOT}
    if args.old_ref:
        old = tmp / "old-tree"
        old.mkdir()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.old_ref], check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(old)], input=archive.stdout, check=True)
        trees = {"old": old, "new": ROOT}
    sizes = [args.baseline, args.installations]
    dbs: dict[int, tuple[str, str]] = {}
    procs: list[subprocess.Popen] = []
    print(load_line(), flush=True)
    try:
        for n in sizes:
            print(f"building {n:,} installations ...", flush=True)
            (tmp / f"instance-{n}").mkdir()
            dbs[n] = build(args.postgres_url, n, tmp / f"instance-{n}")
        results: dict[tuple[int, str, str], list[tuple[float, float]]] = {}
        answers: dict[tuple[int, str], list] = {}
        for n in sizes:
            url, staff = dbs[n]
            servers = {}
            for label, tree in trees.items():
                (tmp / f"instance-{n}-{label}").mkdir()
                proc, port = start(tree, url, tmp / f"instance-{n}-{label}")
                procs.append(proc)
                http = login(port)
                http.get(f"http://127.0.0.1:{port}/api/v1/fleet/versions",  # warm: imports, templates, pool
                         headers={"Authorization": f"Bearer {staff}"}, timeout=600)
                servers[label] = (proc, port, http)
            for r in range(args.rounds):
                order = list(trees) if r % 2 == 0 else list(trees)[::-1]
                for label in order:
                    proc, port, http = servers[label]
                    k = args.old_requests if label == "old" else args.requests
                    base = f"http://127.0.0.1:{port}"
                    results.setdefault((n, label, "dashboard"), []).extend(
                        measure(proc, http, base + "/console/?component=server", k))
                    results.setdefault((n, label, "api"), []).extend(
                        measure(proc, http, base + "/api/v1/fleet/adoption?component=server&days=30", k,
                                {"Authorization": f"Bearer {staff}"}))
                    answers[(n, label)] = http.get(base + "/api/v1/fleet/adoption?component=server&days=30",
                                                   headers={"Authorization": f"Bearer {staff}"}, timeout=3600
                                                   ).json()["days"]
                    print(f"  {n:,} round {r + 1} {label}: dashboard "
                          f"{statistics.median(w for w, _ in results[(n, label, 'dashboard')]):.0f} ms, api "
                          f"{statistics.median(w for w, _ in results[(n, label, 'api')]):.0f} ms", flush=True)
            for proc, _, _ in servers.values():
                stop(proc)
        print()
        print(load_line())
        for n in sizes:
            print(f"{n:,} installations:")
            for label in trees:
                for what in ("dashboard", "api"):
                    print("  " + line(f"{label} {what}", results[(n, label, what)]))
            if "old" in trees:
                old_days, new_days = answers[(n, "old")], answers[(n, "new")]
                same = sum(1 for a, b in zip(old_days, new_days) if a["versions"] == b["versions"])
                print(f"  days with the same counts, old and new: {same} of {len(new_days)} "
                      f"(today the same: {old_days[-1]['versions'] == new_days[-1]['versions']}; the old code drops "
                      f"revoked installations from every day, the new one counts them until their revocation)")
        return 0
    finally:
        for proc in procs:
            stop(proc)
        if not args.keep:
            benchlib.drop_pg_databases(args.postgres_url, [url for url, _ in dbs.values()])
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
