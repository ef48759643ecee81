#!/usr/bin/env python3
"""Throughput of the check endpoint against a bare Flask route, same gunicorn configuration.

Builds an instance with 10,000 enrolled installations and 50 releases over 5 components
(most installations up to date, some one release behind), starts gunicorn on it, and
drives ``POST /api/v1/updates/check`` with each installation's own token. Then it starts
the same gunicorn configuration on a bare Flask app whose route returns a constant JSON
body and drives it the same way. Two cases of the check endpoint: *cached* (the default flush
interval; an installation cycled within seconds is written once per interval) and *due*
(every check is the first of its installation's last-seen interval, as with hourly polls,
so every check's last-seen is written, in the background batches). Rounds alternate A B B
A; each prints the rate and the server process tree's CPU time per request. Target: both
cases at least 0.8x the bare route.

Load comes from wrk (Debian package) when installed, else from a Python generator.

    .venv/bin/python scripts/bench/check_throughput.py [--seconds 15] [--workers 4]
"""
from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

COMPONENTS = ["server", "web", "db-schema", "reports", "client-agent"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_instance(instance: Path, installations: int) -> list[tuple[str, str]]:
    """Returns (token, JSON body) per installation."""
    os.environ["RELEASE_SERVER_INSTANCE_PATH"] = str(instance)
    from release_server import create_app
    from release_server.db import db
    from release_server.fleet import services as fleet
    from release_server.fleet.schemas import EnrollRequest
    from release_server.migrations import upgrade
    from release_server.releases import services as rel
    from release_server.releases.schemas import PublishMetadata
    from release_server.storage import get_storage

    app = create_app({"INSTANCE_PATH": str(instance)})
    work = []
    with app.app_context():
        upgrade(db.engine)
        s = db.session
        storage = get_storage()
        latest = {}
        for comp in COMPONENTS:
            rel.create_component(s, comp)
            for minor in range(10):
                version = f"1.{minor}.0"
                blob = storage.put_stream(__import__("io").BytesIO(f"{comp} {version}".encode()))
                plan = rel.plan_publish(s, comp, PublishMetadata(version=version, channels=["stable"],
                                                                 changelog=f"* {comp} {version}"))
                rel.create_release(s, plan, blob, f"{comp}-{version}.tar.gz", "bench")
                latest[comp] = version
        cust = fleet.create_customer(s, "Bench Corp")
        _, secret = fleet.create_enrollment_token(s, cust, actor="bench")
        s.commit()
        rng = random.Random(7)
        for i in range(installations):
            installed = dict(latest)
            if rng.random() < 0.1:
                installed[rng.choice(COMPONENTS)] = "1.8.0"
            inst, token = fleet.enroll(s, EnrollRequest(enrollment_token=secret, name=f"inst-{i}",
                                                        installed=installed))
            work.append((token, json.dumps({"installed": installed})))
            if i % 1000 == 999:
                s.commit()
        s.commit()
    app.extensions["db_engine"].dispose()
    return work


def _py_worker(port: int, work: list[tuple[str, str]], seconds: float, seed: int, q: mp.Queue) -> None:
    rng = random.Random(seed)
    ok = errors = 0
    deadline = time.monotonic() + seconds
    conn = None
    while time.monotonic() < deadline:
        token, body = work[rng.randrange(len(work))]
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("POST", "/api/v1/updates/check", body=body,
                         headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            if resp.status == 200:
                ok += 1
            else:
                errors += 1
            if resp.getheader("Connection", "").lower() == "close":
                conn.close()
                conn = None
        except OSError:
            errors += 1
            conn = None
    q.put((ok, errors))


def load_python(port: int, work: list[tuple[str, str]], seconds: float, clients: int) -> tuple[float, int]:
    q: mp.Queue = mp.Queue()
    procs = [mp.Process(target=_py_worker, args=(port, work, seconds, i, q)) for i in range(clients)]
    for p in procs:
        p.start()
    results = [q.get() for _ in procs]
    for p in procs:
        p.join()
    return sum(r[0] for r in results) / seconds, sum(r[1] for r in results)


LUA = """
local tokens = {}
local bodies = {}
for line in io.lines("%s") do
  local t, b = line:match("^(%%S+)\\t(.*)$")
  tokens[#tokens + 1] = t
  bodies[#bodies + 1] = b
end
local n = #tokens
counter = 0
request = function()
  counter = counter + 1
  local i = (counter * 7919) %% n + 1
  return wrk.format("POST", "/api/v1/updates/check",
    {["Authorization"] = "Bearer " .. tokens[i], ["Content-Type"] = "application/json"}, bodies[i])
end
"""


def load_wrk(port: int, work: list[tuple[str, str]], seconds: float, clients: int, tmp: Path) -> tuple[float, int]:
    data = tmp / "work.tsv"
    data.write_text("".join(f"{t}\t{b}\n" for t, b in work))
    script = tmp / "check.lua"
    script.write_text(LUA % data)
    out = subprocess.run(["wrk", "-t", "2", "-c", str(clients), "-d", f"{int(seconds)}s", "-s", str(script),
                          f"http://127.0.0.1:{port}/"], capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rate, int(m.group(1)) if m else 0


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process and its children (the gunicorn workers)."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root] + root.children(recursive=True)
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def bar(value: float, scale: float, width: int = 40) -> str:
    n = int(round(width * min(value / scale, 1.0))) if scale else 0
    return "#" * n + "." * (width - n)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--installations", type=int, default=10_000)
    ap.add_argument("--seconds", type=float, default=30, help="measured seconds per server, over all rounds")
    ap.add_argument("--rounds", type=int, default=4, help="rounds, run as A B B A pairs (even number)")
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--loader", choices=["auto", "wrk", "python"], default="auto")
    ap.add_argument("--warmup", type=float, default=10, help="seconds per server before measuring (fills caches)")
    args = ap.parse_args()
    loader = args.loader
    if loader == "auto":
        loader = "wrk" if shutil.which("wrk") else "python"

    tmp = Path(tempfile.mkdtemp(prefix="rs-bench-check-"))
    procs = []
    try:
        t0 = time.perf_counter()
        work = build_instance(tmp / "instance", args.installations)
        print(f"built {len(work)} installations, 50 releases over {len(COMPONENTS)} components "
              f"in {time.perf_counter() - t0:.0f} s; load: {loader} ({args.clients} connections, keep-alive); "
              f"both sides: gunicorn --config python:release_server.gunicorn_conf --workers {args.workers} "
              f"(threaded, as scripts/run), no access log; {benchlib.load_line()}")
        env = benchlib.server_env(tmp / "instance")
        # cached: the default flush interval, so an installation cycled within seconds is written
        # once per interval. due: a flush interval far below the time between two checks of one
        # installation, so every check is the first of its interval and its last-seen is written,
        # as at the real poll cadence (hourly polls, one write each).
        due_env = dict(env, RELEASE_SERVER_LAST_SEEN_FLUSH_SECONDS="0.5")
        servers = {}
        for name, target, e in (("bare Flask route", "bare_app:app", env),
                                ("check, cached", "release_server:create_app()", env),
                                ("check, due", "release_server:create_app()", due_env)):
            port = free_port()
            proc = benchlib.start_gunicorn(target, port, e, ["--workers", str(args.workers)])
            procs.append(proc)
            servers[name] = (port, proc.pid)

        def load(port: int, seconds: float) -> tuple[float, int]:
            if loader == "wrk":
                return load_wrk(port, work, seconds, args.clients, tmp)
            return load_python(port, work, seconds, max(1, args.clients // 4))

        for port, _ in servers.values():  # warm up: every worker fills its caches
            load(port, args.warmup)
        # A B B A: the baseline and ours alternate, so other load on the machine hits both alike.
        per_round = max(2.0, args.seconds / args.rounds)
        names = list(servers)
        rates: dict[str, list[float]] = {name: [] for name in servers}
        cpu: dict[str, list[float]] = {name: [] for name in servers}
        errors = {name: 0 for name in servers}
        for r in range(args.rounds):
            order = names if r % 2 == 0 else names[::-1]
            line = []
            for name in order:
                port, pid = servers[name]
                c0 = tree_cpu(pid)
                rate, err = load(port, per_round)
                used = tree_cpu(pid) - c0
                rates[name].append(rate)
                cpu[name].append(used / max(1, rate * per_round) * 1000)
                errors[name] += err
                line.append(f"{name} {rate:6.0f}/s {cpu[name][-1]:.2f} ms CPU/req")
            print(f"  round {r + 1}: " + "; ".join(line), flush=True)
        bare = statistics.median(rates["bare Flask route"])
        scale = max(max(v) for v in rates.values())
        print()
        ok = True
        for name in names:
            med = statistics.median(rates[name])
            ratio = med / bare if bare else 0.0
            target = "" if name.startswith("bare") else f"  ratio {ratio:.2f} (target >= 0.80)"
            if not name.startswith("bare"):
                ok = ok and ratio >= 0.8 and errors[name] == 0
            print(f"{name:18} {med:7.0f} req/s (min {min(rates[name]):.0f}, max {max(rates[name]):.0f}) "
                  f"|{bar(med, scale, 30)}| CPU {statistics.median(cpu[name]):.2f} ms/req, "
                  f"errors {errors[name]}{target}")
        print("PASS" if ok else "FAIL")
        return 0 if ok else 1
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
