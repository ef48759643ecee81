#!/usr/bin/env python3
"""A large fleet in PostgreSQL: worker memory, first check, steady check rate and revocation delay.

For each fleet size (``--installations``, and the 10,000 case beside it) it creates a
fresh PostgreSQL database, migrates it, publishes a few releases and bulk-loads the
installations and their installed components with ``COPY``. It then starts gunicorn
(``--workers``) on the release server and measures:

* the first check after the workers start (a token no worker has seen: one indexed
  query, no table load), median of one per worker;
* the steady check rate with random tokens from the whole fleet (almost every check
  misses the per-worker credential cache, as with hourly polls), rounds alternating
  A B B A between the two sizes, with the server process tree's CPU time per check;
* the workers' resident memory (RSS, the largest) after that load;
* the revocation delay: a token that works is revoked through the API, then checked
  on fresh connections until 20 in a row are refused.

Targets with 1,000,000 installations: worker RSS < 200 MB, first check < 100 ms,
revoked token refused within 5 s.

    .venv/bin/python scripts/bench/fleet_memory.py --installations 1000000 \\
        [--postgres-url postgresql://postgres@127.0.0.1:5432/test]
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import benchlib  # noqa: E402
from check_throughput import free_port, load_python, tree_cpu  # noqa: E402

COMPONENTS = ["server", "web"]


def token_of(i: int) -> tuple[str, str]:
    """(prefix, secret) of installation ``i``: deterministic, so the loader can rebuild them."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    n, prefix = i, ""
    for _ in range(8):
        n, r = divmod(n, 36)
        prefix = alphabet[r] + prefix
    return prefix, f"rsi_{prefix}_{hashlib.sha256(f'bench-{i}'.encode()).hexdigest()[:32]}"


def build(admin_url: str, count: int, instance: Path) -> tuple[str, str]:
    """A fresh database with ``count`` installations; returns (database URL, a staff token)."""
    url = benchlib.create_pg_database(admin_url, "rs_bench_fleet")
    os.environ["RELEASE_SERVER_INSTANCE_PATH"] = str(instance)
    os.environ["DATABASE_URL"] = url
    from release_server.db import db

    app, customer_id, staff = benchlib.seeded_app(url, instance, COMPONENTS)
    with app.app_context():
        raw = db.engine.raw_connection()
        try:
            cur = raw.cursor()
            now = datetime.now(timezone.utc).isoformat()
            t0 = time.perf_counter()
            with cur.copy("COPY installations (id, customer_id, name, hostname, platform, agent_version, channel, "
                          "tags, state, token_prefix, token_hash, enrolled_at, last_seen_at) FROM STDIN") as copy:
                for i in range(count):
                    prefix, secret = token_of(i)
                    copy.write_row((str(uuid.UUID(int=i + 1)), customer_id, f"site-{i}", f"host-{i}", "linux",
                                    "1.0", "stable", "[]", "up_to_date", prefix,
                                    hashlib.sha256(secret.encode()).hexdigest(), now, now))
            with cur.copy("COPY installed_components (installation_id, component, version, updated_at) "
                          "FROM STDIN") as copy:
                for i in range(count):
                    for comp in COMPONENTS:
                        copy.write_row((str(uuid.UUID(int=i + 1)), comp, "1.2.0" if i % 10 else "1.1.0", now))
            raw.commit()
            cur.execute("ANALYZE")
            raw.commit()
            print(f"  {count:,} installations copied in {time.perf_counter() - t0:.0f} s", flush=True)
        finally:
            raw.close()
    app.extensions["db_engine"].dispose()
    return url, staff


def start(url: str, instance: Path, workers: int) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELEASE_SERVER_")}
    env.update(RELEASE_SERVER_INSTANCE_PATH=str(instance), DATABASE_URL=url, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "--workers", str(workers), "--bind",
                             f"127.0.0.1:{port}", "--log-level", "warning", "release_server:create_app()"],
                            env=env, cwd=str(ROOT), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not start")


def check(port: int, token: str) -> tuple[int, float]:
    body = json.dumps({"installed": {"server": "1.2.0", "web": "1.2.0"}})
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", "/api/v1/updates/check", body=body,
                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp.status, (time.perf_counter() - t0) * 1000


def worker_rss_mb(pid: int) -> float:
    import psutil

    return max((c.memory_info().rss for c in psutil.Process(pid).children()), default=0) / 1e6


def revocation_delay(port: int, staff: str, count: int) -> float:
    prefix, token = token_of(count // 2)
    inst_id = str(uuid.UUID(int=count // 2 + 1))
    for _ in range(10):  # known to every worker first
        assert check(port, token)[0] == 200
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", f"/api/v1/installations/{inst_id}/revoke", body=b"{}",
                 headers={"Authorization": f"Bearer {staff}", "Content-Type": "application/json"})
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 200, resp.status
    t0 = time.perf_counter()
    refused_in_a_row, last_ok = 0, t0
    while refused_in_a_row < 20 and time.perf_counter() - t0 < 30:
        status, _ = check(port, token)
        if status == 401:
            refused_in_a_row += 1
        else:
            refused_in_a_row, last_ok = 0, time.perf_counter()
    return last_ok - t0 if refused_in_a_row >= 20 else float("inf")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--installations", type=int, default=1_000_000)
    ap.add_argument("--baseline", type=int, default=10_000, help="the small fleet measured beside it")
    ap.add_argument("--postgres-url", default=os.environ.get("TEST_POSTGRES_URL",
                                                             "postgresql://postgres@127.0.0.1:5432/test"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=16, help="measured seconds per fleet size, over all rounds")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--keep", action="store_true", help="keep the databases")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="rs-bench-fleet-"))
    sizes = [args.baseline, args.installations]
    dbs: dict[int, tuple[str, str]] = {}
    procs: dict[int, tuple[subprocess.Popen, int]] = {}
    try:
        for n in sizes:
            print(f"building {n:,} installations ...", flush=True)
            dbs[n] = build(args.postgres_url, n, tmp / f"instance-{n}")
        rnd = random.Random(5)
        first: dict[int, list[float]] = {}
        first_cpu: dict[int, float] = {}
        for n in sizes:
            procs[n] = start(dbs[n][0], tmp / f"instance-{n}", args.workers)
            first[n] = []
            c0 = tree_cpu(procs[n][0].pid)
            for _ in range(args.workers):  # fresh connections: each worker gets its first checks
                status, ms = check(procs[n][1], token_of(rnd.randrange(n))[1])
                assert status == 200, status
                first[n].append(ms)
            # CPU is steadier than wall time on a shared machine: the server's CPU per first check
            first_cpu[n] = (tree_cpu(procs[n][0].pid) - c0) / args.workers * 1000
        per_round = max(2.0, args.seconds / args.rounds)
        rates: dict[int, list[float]] = {n: [] for n in sizes}
        cpu: dict[int, list[float]] = {n: [] for n in sizes}
        errors = {n: 0 for n in sizes}
        for r in range(args.rounds):
            line = []
            for n in (sizes if r % 2 == 0 else sizes[::-1]):
                proc, port = procs[n]
                work = [(token_of(i)[1], json.dumps({"installed": {"server": "1.2.0", "web": "1.2.0"}}))
                        for i in random.Random(r).sample(range(n), min(n, 20_000))]
                c0 = tree_cpu(proc.pid)
                rate, err = load_python(port, work, per_round, max(1, args.clients // 4))
                rates[n].append(rate)
                cpu[n].append((tree_cpu(proc.pid) - c0) / max(1, rate * per_round) * 1000)
                errors[n] += err
                line.append(f"{n:>9,}: {rate:6.0f} checks/s {cpu[n][-1]:.2f} ms CPU/check")
            print(f"  round {r + 1}: " + "; ".join(line), flush=True)
        print()
        ok = True
        for n in sizes:
            proc, port = procs[n]
            rss = worker_rss_mb(proc.pid)
            delay = revocation_delay(port, dbs[n][1], n)
            print(f"{n:>9,} installations: worker RSS {rss:6.1f} MB, first check {statistics.median(first[n]):6.1f} ms "
                  f"(max {max(first[n]):.1f}; {first_cpu[n]:.1f} ms CPU), steady {statistics.median(rates[n]):6.0f} checks/s "
                  f"(min {min(rates[n]):.0f}, max {max(rates[n]):.0f}), CPU {statistics.median(cpu[n]):.2f} ms/check, "
                  f"errors {errors[n]}, revoked token refused after {delay:.2f} s")
            if n == args.installations:
                ok = rss < 200 and max(first[n]) < 100 and delay < 5 and errors[n] == 0
        small, big = statistics.median(rates[args.baseline]), statistics.median(rates[args.installations])
        print(f"steady rate {args.installations:,} / {args.baseline:,}: {big / small:.2f}")
        print("targets (RSS < 200 MB, first check < 100 ms, revocation < 5 s):", "PASS" if ok else "FAIL")
        return 0 if ok else 1
    finally:
        for proc, _ in procs.values():
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        if not args.keep:
            benchlib.drop_pg_databases(args.postgres_url, [url for url, _ in dbs.values()])
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
