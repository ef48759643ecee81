#!/usr/bin/env python3
"""A mass update: many slow clients download a large artifact while checks and console pages go on.

Builds an instance (SQLite + local disk, the embedded default) with one release whose
artifact is ``--size-mb`` MB, an installation for the check load and a staff user for
the console, and starts gunicorn as ``scripts/run`` does
(``--config python:release_server.gunicorn_conf --workers 2``). Then it alternates
rounds A B B A: A measures the check load (paced ``POST /api/v1/updates/check``) and
the page load (the console dashboard) with no downloads; B starts ``--clients``
downloads, each read at ``--rate-mb`` MB/s, and measures the same loads until every
download has finished, then checks every download's SHA-256.

Prints check p50/p99 and page p99 with and without downloads, their ratio, and the
server process tree's CPU time per check and per downloaded MB. Targets: during the
downloads check p99 < 100 ms and page p99 < 500 ms, and every download intact.

    .venv/bin/python scripts/bench/mass_download.py [--size-mb 200] [--clients 40] [--rate-mb 2]

200 MB at 2 MB/s is 100 s per B round; ``--size-mb 40`` makes a shorter run.
``--gunicorn-args "--worker-class sync"`` measures another worker model on the same load.
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import multiprocessing as mp
import os
import re
import shlex
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

PASSWORD = "bench password 12345"


def build(instance: Path, size_mb: int) -> dict[str, str]:
    os.environ["RELEASE_SERVER_INSTANCE_PATH"] = str(instance)
    sys.path.insert(0, str(benchlib.ROOT))
    from release_server import create_app
    from release_server.accounts import services as accounts
    from release_server.db import db
    from release_server.fleet import services as fleet
    from release_server.fleet.schemas import EnrollRequest
    from release_server.migrations import upgrade
    from release_server.releases import services as rel
    from release_server.releases.schemas import PublishMetadata
    from release_server.storage import get_storage

    artifact = instance.parent / "artifact.bin"
    block = os.urandom(1024 * 1024)
    digest = hashlib.sha256()
    with artifact.open("wb") as fh:
        for i in range(size_mb):
            chunk = block[i % 256:] + block[:i % 256]  # no two MB alike
            digest.update(chunk)
            fh.write(chunk)
    app = create_app({"INSTANCE_PATH": str(instance)})
    with app.app_context():
        upgrade(db.engine)
        s = db.session
        storage = get_storage()
        rel.create_component(s, "server")
        with artifact.open("rb") as fh:
            blob = storage.put_stream(fh)
        plan = rel.plan_publish(s, "server", PublishMetadata(version="2.0.0", channels=["stable"],
                                                             changelog="* the mass update"))
        rel.create_release(s, plan, blob, "server-2.0.0.tar.gz", "bench")
        cust = fleet.create_customer(s, "Bench Corp")
        _, secret = fleet.create_enrollment_token(s, cust, actor="bench")
        _, inst_token = fleet.enroll(s, EnrollRequest(enrollment_token=secret, name="checker",
                                                      installed={"server": "1.0.0"}))
        user = accounts.create_user(s, "bench-admin", PASSWORD, "admin")
        staff = accounts.issue_token(s, name="bench", role="admin", user=user).secret
        s.commit()
    app.extensions["db_engine"].dispose()
    artifact.unlink()
    return {"installation": inst_token, "staff": staff, "sha256": digest.hexdigest()}


def server_times(access: Path) -> dict[str, list[float]]:
    """Seconds each request spent in the server (gunicorn's %(L)s) since the last call, by path."""
    out: dict[str, list[float]] = {}
    if access.exists():
        for line in access.read_text().splitlines():
            parts = line.split()
            if len(parts) == 4:
                out.setdefault(parts[1], []).append(float(parts[3]))
        access.write_text("")
    return out


def console_cookie(port: int) -> str:
    """Log in to the console as the bench user; returns the Cookie header value."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/console/login")
    resp = conn.getresponse()
    html = resp.read().decode()
    cookies = [h.split(";", 1)[0] for k, h in resp.getheaders() if k.lower() == "set-cookie"]
    token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
    form = f"username=bench-admin&password={PASSWORD.replace(' ', '+')}&csrf_token={token}"
    conn.request("POST", "/console/login", body=form, headers={
        "Content-Type": "application/x-www-form-urlencoded", "Cookie": "; ".join(cookies)})
    resp = conn.getresponse()
    resp.read()
    new = [h.split(";", 1)[0] for k, h in resp.getheaders() if k.lower() == "set-cookie"]
    if resp.status != 302 or not new:
        raise RuntimeError(f"console login failed: {resp.status}")
    return "; ".join(new)


def _downloader(port: int, path: str, token: str, rate: float, q: mp.Queue) -> None:
    """One slow client: reads at ``rate`` bytes/s with a small receive window; reports (ok, seconds, sha256)."""
    t0 = time.monotonic()
    try:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)
        s.connect(("127.0.0.1", port))
        s.settimeout(120)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n"
                  f"Connection: close\r\n\r\n".encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                raise OSError("closed before the headers")
            buf += chunk
        head, _, body = buf.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))
        h = hashlib.sha256(body)
        got = len(body)
        view = memoryview(bytearray(256 * 1024))
        while got < length:
            n = s.recv_into(view, min(len(view), length - got))
            if n == 0:
                break
            h.update(view[:n])
            got += n
            ahead = got / rate - (time.monotonic() - t0)
            if ahead > 0:
                time.sleep(ahead)
        s.close()
        q.put((status == 200 and got == length, time.monotonic() - t0, h.hexdigest(), got))
    except OSError as e:
        q.put((False, time.monotonic() - t0, str(e), 0))


def _download_group(port: int, path: str, token: str, n: int, rate: float, q: mp.Queue) -> None:
    """``n`` slow clients as threads of one process (few processes: the load side stays light)."""
    ts = [threading.Thread(target=_downloader, args=(port, path, token, rate, q)) for _ in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def _run_downloads(port: int, path: str, token: str, clients: int, rate: float, q: mp.Queue) -> list[mp.Process]:
    groups = min(4, clients)
    sizes = [clients // groups + (1 if i < clients % groups else 0) for i in range(groups)]
    procs = [mp.Process(target=_download_group, args=(port, path, token, n, rate, q)) for n in sizes]
    for p in procs:
        p.start()
    return procs


def measure(port: int, seconds: float, tokens: dict[str, str], cookie: str, args: argparse.Namespace,
            out: dict) -> None:  # noqa: ANN401
    """Check load and page load side by side for ``seconds``; fills ``out`` with latencies and counts."""
    body = json.dumps({"installed": {"server": "1.0.0"}}).encode()
    res: dict = {}

    def checks() -> None:
        res["check"] = benchlib.run_load(port, "/api/v1/updates/check", seconds, args.check_clients, method="POST",
                                         headers={"Authorization": f"Bearer {tokens['installation']}",
                                                  "Content-Type": "application/json"}, body=body,
                                         rate_per_client=args.check_rate)

    def pages() -> None:
        res["page"] = benchlib.run_load(port, "/console/", seconds, 1, headers={"Cookie": cookie},
                                        rate_per_client=args.page_rate)

    ts = [threading.Thread(target=checks), threading.Thread(target=pages)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    out.update(res)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=200)
    ap.add_argument("--clients", type=int, default=40)
    ap.add_argument("--rate-mb", type=float, default=2.0, help="each download's speed, MB/s")
    ap.add_argument("--quiet-seconds", type=float, default=15.0, help="length of a round without downloads")
    ap.add_argument("--check-clients", type=int, default=2)
    ap.add_argument("--check-rate", type=float, default=20.0, help="checks per second per check client")
    ap.add_argument("--page-rate", type=float, default=2.0, help="console pages per second")
    ap.add_argument("--gunicorn-args", default="", help="extra gunicorn arguments (e.g. '--worker-class sync')")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="rs-bench-download-"))
    instance = work / "instance"
    server = None
    try:
        print(f"building an instance with a {args.size_mb} MB artifact ...", flush=True)
        tokens = build(instance, args.size_mb)
        env = benchlib.server_env(instance)
        port = benchlib.free_port()
        access = work / "access.log"
        gargs = ["--workers", "2", "--access-logfile", str(access), "--access-logformat", "%(m)s %(U)s %(s)s %(L)s",
                 *shlex.split(args.gunicorn_args)]
        server = benchlib.start_gunicorn("release_server:create_app()", port, env, gargs, log=work / "server.log")
        cookie = console_cookie(port)
        path = "/api/v1/components/server/releases/2.0.0/artifact"
        rate = args.rate_mb * 1024 * 1024
        print(f"gunicorn --config python:release_server.gunicorn_conf {' '.join(gargs)}; {args.clients} downloads "
              f"of {args.size_mb} MB at {args.rate_mb} MB/s (~{args.size_mb / args.rate_mb:.0f} s); check load "
              f"{args.check_clients}x{args.check_rate:.0f}/s, console page {args.page_rate:.0f}/s; "
              f"{benchlib.load_line()}", flush=True)
        benchlib.run_load(port, "/console/", 1.0, 1, headers={"Cookie": cookie})  # warm up
        rounds = []
        all_ok = True
        for label in ("A", "B", "B", "A"):
            server_times(access)  # forget what came before this round
            c0 = benchlib.tree_cpu(server.pid)
            t0 = time.monotonic()
            out: dict = {}
            moved = 0
            if label == "A":
                measure(port, args.quiet_seconds, tokens, cookie, args, out)
            else:
                q: mp.Queue = mp.Queue()
                procs = _run_downloads(port, path, tokens["staff"], args.clients, rate, q)
                time.sleep(1.0)  # the downloads are under way
                expected = args.size_mb / args.rate_mb
                measure(port, max(5.0, expected - 3.0), tokens, cookie, args, out)
                results = [q.get() for _ in range(args.clients)]
                for p in procs:
                    p.join()
                good = [r for r in results if r[0] and r[2] == tokens["sha256"]]
                moved = sum(r[3] for r in results)
                out["downloads"] = (len(good), len(results), statistics.median(r[1] for r in results))
                all_ok &= len(good) == len(results)
            wall = time.monotonic() - t0
            cpu = benchlib.tree_cpu(server.pid) - c0
            served = server_times(access)
            ok_c, err_c, lat_c = out["check"]
            ok_p, err_p, lat_p = out["page"]
            row = {"label": label, "check_p50": benchlib.percentile(lat_c, 50) * 1000,
                   "check_p99": benchlib.percentile(lat_c, 99) * 1000, "page_p99": benchlib.percentile(lat_p, 99) * 1000,
                   "srv_check_p99": benchlib.percentile(served.get("/api/v1/updates/check", []), 99) * 1000,
                   "srv_page_p99": benchlib.percentile(served.get("/console/", []), 99) * 1000,
                   "checks": ok_c, "errors": err_c + err_p, "pages": ok_p, "cpu": cpu, "wall": wall, "mb": moved / 2**20}
            rounds.append(row)
            extra = ""
            if label == "B":
                g, n, med = out["downloads"]
                extra = (f"; downloads intact {g}/{n}, median {med:.0f} s, {row['mb']:.0f} MB sent, "
                         f"server CPU {cpu / max(row['mb'], 1) * 1000:.1f} ms/MB")
            print(f"  round {label}: check p50 {row['check_p50']:6.1f} ms p99 {row['check_p99']:6.1f} ms, page p99 "
                  f"{row['page_p99']:6.1f} ms (in the server: check p99 {row['srv_check_p99']:.1f} ms, page p99 "
                  f"{row['srv_page_p99']:.1f} ms), {ok_c / wall:5.1f} checks/s, errors {row['errors']}, "
                  f"server CPU {cpu:.1f} s in {wall:.0f} s{extra}", flush=True)

        def med(label: str, key: str) -> float:
            return statistics.median(r[key] for r in rounds if r["label"] == label)

        print()
        print(f"{'':22} {'no downloads (A)':>18} {'downloads (B)':>15} {'B / A':>7}")
        for key, name in (("check_p50", "check p50, ms"), ("check_p99", "check p99, ms"), ("page_p99", "page p99, ms"),
                          ("srv_check_p99", "  in server: check p99"), ("srv_page_p99", "  in server: page p99")):
            a, b = med("A", key), med("B", key)
            print(f"{name:22} {a:18.1f} {b:15.1f} {b / a if a else float('nan'):7.2f}")
        cpu_check = med("A", "cpu") / max(1, med("A", "checks") + med("A", "pages"))
        print(f"server CPU per request without downloads: {cpu_check * 1000:.2f} ms; "
              f"per downloaded MB (B rounds, loads included): "
              f"{statistics.median(r['cpu'] / max(r['mb'], 1) for r in rounds if r['label'] == 'B') * 1000:.2f} ms")
        errors = sum(r["errors"] for r in rounds)
        ok = all_ok and med("B", "check_p99") < 100 and med("B", "page_p99") < 500 and errors == 0
        print(f"targets during downloads: check p99 < 100 ms, page p99 < 500 ms, every download intact, no errors: "
              f"{'PASS' if ok else 'FAIL'}")
        return 0 if ok else 1
    finally:
        benchlib.stop(server)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
