#!/usr/bin/env python3
"""``timestamp.json`` through the app against a bare Flask route and nginx, same machine, same run.

Builds an instance with a bootstrapped TUF repository and one release, exports it for
nginx, and starts three servers: the app and a bare Flask route returning the same
bytes from memory (both on the shipped gunicorn settings, ``release_server.gunicorn_conf``),
and nginx with the shipped configuration serving the export. Rounds alternate
(app, bare, nginx, then the reverse: A B C C B A ...); each prints the rate and the
server process tree's CPU time per request. The target: the app at >= 0.8x the bare
route (rate, and bare's CPU per request over the app's).

    .venv/bin/python scripts/bench/tuf_timestamp.py [--seconds 4] [--rounds 4] [--clients 4]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

PATH = "/tuf/metadata/timestamp.json"


def build(instance: Path, env: dict[str, str]) -> None:
    cli = [sys.executable, "-m", "release_server.cli"]
    subprocess.run(cli + ["init"], env=env, check=True, capture_output=True)
    subprocess.run(cli + ["keys", "init-root", "--out", str(instance / "root-keys"), "--no-passphrase",
                          "--if-missing"], env=env, check=True, capture_output=True)
    subprocess.run(cli + ["tuf", "bootstrap", "--if-needed", str(instance / "root-keys" / "1.root.json")], env=env,
                   check=True, capture_output=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=4.0, help="per server per round")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--no-nginx", action="store_true")
    ap.add_argument("--request-log", action="store_true",
                    help="keep the app's per-request INFO log line (off by default: the bare route logs nothing)")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="rs-bench-tuf-"))
    instance = work / "instance"
    env = benchlib.server_env(instance)
    if not args.request_log:
        env["RELEASE_SERVER_LOG_LEVEL"] = "WARNING"
    procs: dict[str, subprocess.Popen] = {}
    try:
        build(instance, env)
        subprocess.run([sys.executable, "-m", "release_server.cli", "tuf", "export", str(work / "srv" / "tuf")],
                       env=env, check=True, capture_output=True)
        ports = {}
        ports["app"] = benchlib.free_port()
        procs["app"] = benchlib.start_gunicorn("release_server:create_app()", ports["app"], env)
        ports["bare Flask"] = benchlib.free_port()
        bare_env = dict(env, BARE_TUF_TIMESTAMP=str(work / "srv" / "tuf" / "metadata" / "timestamp.json"))
        procs["bare Flask"] = benchlib.start_gunicorn("bare_tuf_app:app", ports["bare Flask"], bare_env)
        nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
        if nginx and not args.no_nginx:
            ports["nginx"] = benchlib.free_port()
            conf = benchlib.write_nginx_conf(work / "nginx", ports["nginx"], work / "srv", ports["app"],
                                             instance / "blobs")
            procs["nginx"] = subprocess.Popen([nginx, "-c", str(conf), "-p", str(work / "nginx"), "-e",
                                               str(work / "nginx" / "error.log")], stdout=subprocess.DEVNULL,
                                              stderr=subprocess.DEVNULL)
            benchlib.wait_http(ports["nginx"], PATH, procs["nginx"])
        names = list(ports)
        print(f"servers: {', '.join(names)}; gunicorn: release_server.gunicorn_conf (gthread); app request log "
              f"{'on' if args.request_log else 'off'}; "
              f"{args.clients} keep-alive clients; {benchlib.load_line()}", flush=True)
        for name in names:  # warm up
            benchlib.run_load(ports[name], PATH, 1.0, args.clients)
        rates: dict[str, list[float]] = {n: [] for n in names}
        cpu_us: dict[str, list[float]] = {n: [] for n in names}
        errors = dict.fromkeys(names, 0)
        for r in range(args.rounds):
            order = names if r % 2 == 0 else names[::-1]
            for name in order:
                c0 = benchlib.tree_cpu(procs[name].pid)
                ok, err, _ = benchlib.run_load(ports[name], PATH, args.seconds, args.clients)
                c1 = benchlib.tree_cpu(procs[name].pid)
                rates[name].append(ok / args.seconds)
                cpu_us[name].append((c1 - c0) / max(ok, 1) * 1e6)
                errors[name] += err
            print(f"  round {r + 1} ({' '.join(o[0] for o in order)}): " + ", ".join(
                f"{n} {rates[n][-1]:6.0f}/s {cpu_us[n][-1]:5.0f} us" for n in names), flush=True)
        print()
        print(f"{'server':12} {'req/s median (min-max)':>26} {'server CPU/request, us':>24}  errors")
        for n in names:
            print(f"{n:12} {statistics.median(rates[n]):10.0f} ({min(rates[n]):6.0f}-{max(rates[n]):6.0f})"
                  f" {statistics.median(cpu_us[n]):14.0f} ({min(cpu_us[n]):4.0f}-{max(cpu_us[n]):4.0f})"
                  f"  {errors[n]}")
        ratios = [a / b for a, b in zip(rates["app"], rates["bare Flask"])]
        cpu_ratio = statistics.median(cpu_us["bare Flask"]) / statistics.median(cpu_us["app"])
        rate_ratio = statistics.median(ratios)
        print(f"\napp / bare Flask: rate {rate_ratio:.2f}x (median of paired rounds), "
              f"CPU per request {cpu_ratio:.2f}x (bare's over the app's)   target >= 0.80")
        if "nginx" in names:
            print(f"app / nginx: rate {statistics.median(rates['app']) / statistics.median(rates['nginx']):.2f}x, "
                  f"CPU per request {statistics.median(cpu_us['nginx']) / statistics.median(cpu_us['app']):.2f}x")
        ok = rate_ratio >= 0.8 and errors["app"] == 0
        print("PASS" if ok else "FAIL")
        return 0 if ok else 1
    finally:
        for p in procs.values():
            benchlib.stop(p)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
