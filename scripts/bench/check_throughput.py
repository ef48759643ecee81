#!/usr/bin/env python3
"""Throughput of the check endpoint against a bare Flask route, same gunicorn configuration.

Builds an instance with 10,000 enrolled installations and 50 releases over 5 components
(most installations up to date, some one release behind), starts gunicorn on it, and
drives ``POST /api/v1/updates/check`` with each installation's own token. Then it starts
the same gunicorn configuration on a bare Flask app whose route returns a constant JSON
body and drives it the same way. It prints both rates and their ratio (target >= 0.7).

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


def start_gunicorn(target: str, port: int, workers: int, env: dict, cwd: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "--workers", str(workers), "--bind",
                             f"127.0.0.1:{port}", "--log-level", "warning", target],
                            env=env, cwd=str(cwd), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{target} did not start")


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


def bar(value: float, scale: float, width: int = 40) -> str:
    n = int(round(width * min(value / scale, 1.0))) if scale else 0
    return "#" * n + "." * (width - n)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--installations", type=int, default=10_000)
    ap.add_argument("--seconds", type=float, default=30, help="measured seconds per server, over all rounds")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--loader", choices=["auto", "wrk", "python"], default="auto")
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
              f"in {time.perf_counter() - t0:.0f} s; load: {loader}, gunicorn --workers {args.workers}")
        env = {k: v for k, v in os.environ.items() if not k.startswith("RELEASE_SERVER_")}
        env.update(RELEASE_SERVER_INSTANCE_PATH=str(tmp / "instance"), PYTHONPATH=str(ROOT))
        servers = {}
        for name, target, cwd in (("check endpoint", "release_server:create_app()", ROOT),
                                  ("bare Flask route", "bare_app:app", ROOT / "scripts" / "bench")):
            port = free_port()
            procs.append(start_gunicorn(target, port, args.workers, env, cwd))
            servers[name] = port

        def load(port: int, seconds: float) -> tuple[float, int]:
            if loader == "wrk":
                return load_wrk(port, work, seconds, args.clients, tmp)
            return load_python(port, work, seconds, max(1, args.clients // 4))

        for port in servers.values():  # warm up: every worker loads its tables
            load(port, 4)
        # Alternate short runs so that other load on the machine hits both sides alike.
        per_round = max(2.0, args.seconds / args.rounds)
        rates: dict[str, list[float]] = {name: [] for name in servers}
        errors = {name: 0 for name in servers}
        ratios = []
        for r in range(args.rounds):
            for name, port in servers.items():
                rate, err = load(port, per_round)
                rates[name].append(rate)
                errors[name] += err
            ratios.append(rates["check endpoint"][-1] / rates["bare Flask route"][-1])
            print(f"  round {r + 1}: check {rates['check endpoint'][-1]:7.0f} req/s, "
                  f"bare {rates['bare Flask route'][-1]:7.0f} req/s, ratio {ratios[-1]:.2f}", flush=True)
        check_rate = statistics.median(rates["check endpoint"])
        bare_rate = statistics.median(rates["bare Flask route"])
        ratio = statistics.median(ratios)
        scale = max(check_rate, bare_rate)
        print()
        print(f"bare Flask route  {bare_rate:9.0f} req/s |{bar(bare_rate, scale)}| errors {errors['bare Flask route']}")
        print(f"check endpoint    {check_rate:9.0f} req/s |{bar(check_rate, scale)}| errors {errors['check endpoint']}")
        print(f"ratio (median of {args.rounds} paired rounds) {ratio:.2f}   (target >= 0.70)")
        ok = ratio >= 0.7 and errors["check endpoint"] == 0
        print("PASS" if ok else "FAIL")
        return 0 if ok else 1
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
