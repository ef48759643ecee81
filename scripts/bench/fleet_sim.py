#!/usr/bin/env python3
"""A fleet of 1,000,000 installations against the scale-out layout, beside one of 10,000.

Starts two clusters with ``scripts/cluster up`` (three gunicorn nodes, two workers, nginx,
each on its own fresh PostgreSQL database and its own moto S3 server), publishes a few
releases through nginx, then loads each database set-based with ``COPY``: the synthetic
installations (deterministic tokens, see ``fleet_memory.token_of``) and their installed
components. Then, through each cluster's nginx:

* **check traffic** at the rate the large fleet's hourly poll makes (installations / 3600
  per second, ``--rate`` to change it), each check from a random installation of the
  whole fleet (so almost every one misses a node's credential cache, as hourly polls do),
  open loop from ``--clients`` processes; rounds alternate A B B A between the two sizes;
* **a failure storm**: ``--storm-reports`` failure reports from the first installations,
  some batches sent twice, retried on 5xx like the agent; the counts are checked exactly;
* each node's resident memory (gunicorn master and workers together) after the load.

It prints, per size, the check p50/p99, the rate achieved, errors, reports per second and
per-node RSS, and the ratio large/small of each (flat: close to 1).

    .venv/bin/python scripts/bench/fleet_sim.py [--installations 1000000 --baseline 10000 --seconds 20]
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import multiprocessing as mp
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from benchlib import load_line, percentile  # noqa: E402
from fleet_memory import token_of  # noqa: E402

COMPONENTS = ["server", "web"]
INSTALLED = {"server": "1.1.0", "web": "1.1.0"}


class Cluster:
    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir
        self.state = json.loads((state_dir / "cluster.json").read_text())
        self.url = self.state["nginx"]
        self.port = int(self.url.rsplit(":", 1)[1])
        creds = (state_dir / "admin-credentials").read_text()
        self.admin = {"Authorization": "Bearer " + re.search(r"API token:\s*(\S+)", creds).group(1)}


def cluster(cmd: str, state_dir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELEASE_SERVER_") and k != "DATABASE_URL"}
    env.update(RELEASE_SERVER_LOG_LEVEL="WARNING", RELEASE_SERVER_POLL_INTERVAL_SECONDS="3600")
    out = subprocess.run([str(ROOT / "scripts" / "cluster"), cmd, "--state-dir", str(state_dir)], env=env,
                         capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise SystemExit(f"scripts/cluster {cmd} failed:\n{out.stdout}{out.stderr}")


def api(c: Cluster, method: str, path: str, **kw: Any) -> Any:
    import requests

    r = requests.request(method, c.url + path, headers=c.admin, timeout=120, **kw)
    if r.status_code >= 300:
        raise SystemExit(f"{method} {path}: {r.status_code} {r.text[:300]}")
    return r.json()


def prepare(c: Cluster, count: int) -> int:
    """Releases through nginx, then ``count`` installations with COPY; returns the customer id."""
    import io
    import tarfile

    import sqlalchemy as sa

    for comp in COMPONENTS:
        api(c, "POST", "/api/v1/components", json={"name": comp})
        for minor in range(3):
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w:gz") as tar:
                data = f"{comp} 1.{minor}".encode()
                info = tarfile.TarInfo("VERSION")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            meta = {"version": f"1.{minor}.0", "channels": ["stable"]}
            api(c, "POST", f"/api/v1/components/{comp}/releases",
                files={"metadata": (None, json.dumps(meta)), "artifact": (f"{comp}-1.{minor}.0.tar.gz", buf.getvalue())})
    api(c, "POST", "/api/v1/customers", json={"name": "Fleet Corp", "contact_email": "it@fleet.example"})
    engine = sa.create_engine(c.state["database_url"])
    with engine.connect() as conn:
        customer_id = conn.execute(sa.text("select id from customers where name = 'Fleet Corp'")).scalar()
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        now = datetime.now(timezone.utc).isoformat()
        t0 = time.perf_counter()
        with cur.copy("COPY installations (id, customer_id, name, hostname, platform, agent_version, channel, "
                      "tags, state, token_prefix, token_hash, enrolled_at, last_seen_at) FROM STDIN") as copy:
            for i in range(count):
                prefix, secret = token_of(i)
                copy.write_row((str(uuid.UUID(int=i + 1)), customer_id, f"site-{i}", f"host-{i}", "linux", "1.0",
                                "stable", "[]", "up_to_date", prefix, hashlib.sha256(secret.encode()).hexdigest(),
                                now, now))
        with cur.copy("COPY installed_components (installation_id, component, version, updated_at) FROM STDIN") as copy:
            for i in range(count):
                for comp in COMPONENTS:
                    copy.write_row((str(uuid.UUID(int=i + 1)), comp, INSTALLED[comp], now))
        raw.commit()
        cur.execute("ANALYZE")
        raw.commit()
        print(f"  {count:,} installations copied in {time.perf_counter() - t0:.0f} s", flush=True)
    finally:
        raw.close()
        engine.dispose()
    return customer_id


def _checker(port: int, count: int, seconds: float, rate: float, seed: int, q: Any) -> None:
    """Open loop: one check every 1/rate s, each from a random installation of the fleet."""
    rnd = random.Random(seed)
    body = json.dumps({"installed": INSTALLED}).encode()
    lat: list[float] = []
    ok = errors = 0
    conn = None
    start = time.monotonic()
    n = 0
    while time.monotonic() < start + seconds:
        wait = start + n / rate - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        n += 1
        token = token_of(rnd.randrange(count))[1]
        t0 = time.perf_counter()
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("POST", "/api/v1/updates/check", body=body,
                         headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            if resp.status == 200:
                ok += 1
                lat.append(time.perf_counter() - t0)
            else:
                errors += 1
        except OSError:
            errors += 1
            conn = None
    q.put((ok, errors, lat, time.monotonic() - start))


def check_round(c: Cluster, count: int, seconds: float, rate: float, clients: int) -> tuple[int, int, list[float], float]:
    q: Any = mp.Queue()
    procs = [mp.Process(target=_checker, args=(c.port, count, seconds, rate / clients, i, q)) for i in range(clients)]
    for p in procs:
        p.start()
    results = [q.get() for _ in procs]
    for p in procs:
        p.join()
    lat = [x for r in results for x in r[2]]
    return sum(r[0] for r in results), sum(r[1] for r in results), lat, max(r[3] for r in results)


def node_rss_mb(c: Cluster) -> list[float]:
    import psutil

    out = []
    for proc in c.state["processes"]:
        if proc["kind"] != "node":
            continue
        master = psutil.Process(proc["pid"])
        out.append(sum(p.memory_info().rss for p in [master, *master.children(recursive=True)]) / 1e6)
    return out


def storm(c: Cluster, customer_id: int, reports: int, installations: int) -> tuple[float, list[str]]:
    import failure_storm
    import sqlalchemy as sa

    fleet = [(str(uuid.UUID(int=i + 1)), customer_id, token_of(i)[1]) for i in range(installations)]
    plan = failure_storm.make_plan(fleet, reports)
    result = failure_storm.run_storm(c.url, plan, clients=8)
    engine = sa.create_engine(c.state["database_url"])
    with engine.connect() as conn:
        stored = conn.execute(sa.text("select count(*) from update_reports where outcome <> 'success'")).scalar()
    engine.dispose()
    problems = list(result.errors[:5])
    if stored != plan.unique_reports:
        problems.append(f"{stored} reports stored, {plan.unique_reports} sent (each once)")
    return plan.unique_reports / result.seconds, problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--installations", type=int, default=1_000_000)
    ap.add_argument("--baseline", type=int, default=10_000)
    ap.add_argument("--rate", type=float, default=0.0, help="checks per second (default: installations / 3600)")
    ap.add_argument("--seconds", type=float, default=20.0, help="measured seconds per size, over all rounds")
    ap.add_argument("--clients", type=int, default=8, help="load processes")
    ap.add_argument("--storm-reports", type=int, default=1000)
    ap.add_argument("--storm-installations", type=int, default=200)
    args = ap.parse_args()
    rate = args.rate or args.installations / 3600
    sizes = [args.baseline, args.installations]
    work = Path(tempfile.mkdtemp(prefix="rs-fleet-sim-"))
    clusters: dict[int, Cluster] = {}
    print(f"fleet simulation: {sizes[0]:,} and {sizes[1]:,} installations; {load_line()}", flush=True)
    try:
        customers = {}
        for size in sizes:
            state_dir = work / f"cluster-{size}"
            t0 = time.perf_counter()
            cluster("up", state_dir)
            clusters[size] = Cluster(state_dir)
            print(f"cluster for {size:,}: up in {time.perf_counter() - t0:.0f} s at {clusters[size].url}", flush=True)
            customers[size] = prepare(clusters[size], size)
        for size in sizes:  # warm-up: imports, catalog, connections
            check_round(clusters[size], size, 2.0, rate, args.clients)
        figures: dict[int, dict[str, Any]] = {s: {"ok": 0, "errors": 0, "lat": [], "secs": 0.0} for s in sizes}
        order = [sizes[0], sizes[1], sizes[1], sizes[0]]  # A B B A
        for size in order:
            ok, errors, lat, secs = check_round(clusters[size], size, args.seconds / 2, rate, args.clients)
            f = figures[size]
            f["ok"] += ok
            f["errors"] += errors
            f["lat"] += lat
            f["secs"] += secs
        for size in sizes:
            figures[size]["rss"] = node_rss_mb(clusters[size])
        for size in sizes:
            rps, problems = storm(clusters[size], customers[size], args.storm_reports, args.storm_installations)
            figures[size]["reports_per_s"] = rps
            figures[size]["problems"] = problems
        print()
        print(f"check traffic at {rate:.0f}/s (the hourly poll of {args.installations:,}), through nginx to 3 nodes "
              f"x 2 gunicorn processes; {load_line()}")
        print(f"{'':28}{sizes[0]:>14,}{sizes[1]:>14,}{'ratio':>8}")

        def row(label: str, a: float, b: float, fmt: str = "{:14.1f}") -> None:
            ratio = b / a if a else float("nan")
            print(f"{label:28}{fmt.format(a)}{fmt.format(b)}{ratio:8.2f}")

        fa, fb = figures[sizes[0]], figures[sizes[1]]
        row("check p50 (ms)", percentile(fa["lat"], 50) * 1000, percentile(fb["lat"], 50) * 1000)
        row("check p99 (ms)", percentile(fa["lat"], 99) * 1000, percentile(fb["lat"], 99) * 1000)
        row("checks/s achieved", fa["ok"] / fa["secs"], fb["ok"] / fb["secs"])
        row("check errors", fa["errors"], fb["errors"], "{:14.0f}")
        for i in range(3):
            row(f"node-{i + 1} RSS (MB)", fa["rss"][i], fb["rss"][i])
        row("storm reports/s", fa["reports_per_s"], fb["reports_per_s"])
        bad = fa["problems"] + fb["problems"]
        for p in bad:
            print(f"PROBLEM: {p}")
        print("storm counts exact: " + ("FAIL" if bad else "PASS"))
        return 1 if bad or fa["errors"] or fb["errors"] else 0
    finally:
        for size, c in clusters.items():
            cluster("down", c.dir)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
