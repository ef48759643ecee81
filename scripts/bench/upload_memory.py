#!/usr/bin/env python3
"""Publish a large artifact to a running server; report the server's memory growth and speed.

Starts a server (gunicorn, one worker, embedded default: SQLite + local disk) in a
temporary instance, publishes an artifact of ``--size-mb`` MB through the streaming
publish client, samples the worker's RSS every 20 ms, and compares the upload's
hashing throughput with ``sha256sum`` on the same file in the same run.

    .venv/bin/python scripts/bench/upload_memory.py [--size-mb 500]
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import requests

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bar(value: float, scale: float, width: int = 40) -> str:
    n = 0 if scale <= 0 else int(round(width * min(value / scale, 1.0)))
    return "#" * n + "." * (width - n)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=500)
    ap.add_argument("--limit-mb", type=int, default=64, help="allowed RSS growth (pass/fail)")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="rs-bench-upload-"))
    instance = work / "instance"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELEASE_SERVER_")}
    env.pop("DATABASE_URL", None)
    env.update(RELEASE_SERVER_INSTANCE_PATH=str(instance), PYTHONPATH=str(ROOT),
               RELEASE_SERVER_MAX_ARTIFACT_SIZE=str((args.size_mb + 64) * 1024 * 1024))
    cli = [sys.executable, "-m", "release_server.cli"]
    server = None
    try:
        out = subprocess.run(cli + ["init"], env=env, capture_output=True, text=True, check=True).stdout
        subprocess.run(cli + ["components", "create", "server"], env=env, check=True, capture_output=True)
        token = subprocess.run(cli + ["tokens", "create", "--name", "bench", "--role", "publisher"], env=env,
                               check=True, capture_output=True, text=True).stdout.strip()
        assert "API token" in out

        artifact = work / "server-9.9.9.tar.gz"
        print(f"writing a {args.size_mb} MB artifact ...", flush=True)
        block = os.urandom(1024 * 1024)
        with artifact.open("wb") as fh:
            for _ in range(args.size_mb):
                fh.write(block)
        size = artifact.stat().st_size

        t0 = time.perf_counter()
        subprocess.run(["sha256sum", str(artifact)], check=True, capture_output=True)
        sha_secs = time.perf_counter() - t0

        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--workers", "1", "--bind", f"127.0.0.1:{port}", "--timeout", "600",
             "release_server:create_app()"], env=env, cwd=str(ROOT), stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                requests.get(url + "/healthz", timeout=1)
                break
            except requests.RequestException:
                time.sleep(0.1)
        requests.get(url + "/api/v1/components", headers={"Authorization": f"Bearer {token}"}, timeout=10)
        master = psutil.Process(server.pid)
        worker = master.children()[0]
        base_rss = worker.memory_info().rss
        samples: list[tuple[float, int]] = []
        stop = threading.Event()

        def sample() -> None:
            start = time.perf_counter()
            while not stop.is_set():
                samples.append((time.perf_counter() - start, worker.memory_info().rss))
                time.sleep(0.02)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t0 = time.perf_counter()
        pub = subprocess.run(cli + ["publish", "--server", url, "--token", token, "--component", "server",
                                    "--version", "9.9.9", "--quiet", str(artifact)],
                             env=env, capture_output=True, text=True)
        up_secs = time.perf_counter() - t0
        stop.set()
        sampler.join()
        if pub.returncode != 0:
            print(pub.stderr, file=sys.stderr)
            return 1

        peak = max(r for _, r in samples)
        growth_mb = (peak - base_rss) / 2**20
        sha_rate = size / sha_secs / 2**20
        up_rate = size / up_secs / 2**20
        print()
        print(f"artifact                     {size / 2**20:8.0f} MB")
        print(f"server worker RSS, baseline  {base_rss / 2**20:8.1f} MB")
        print(f"server worker RSS, peak      {peak / 2**20:8.1f} MB")
        print(f"RSS growth                   {growth_mb:8.1f} MB   (limit {args.limit_mb} MB)")
        print(f"sha256sum                    {sha_rate:8.0f} MB/s  (baseline, same file, same run)")
        print(f"publish (receive+hash+store) {up_rate:8.0f} MB/s  = {up_rate / sha_rate:.2f} x sha256sum")
        print()
        print("worker RSS during the upload (MB above baseline; each row ~1/12 of the run):")
        step = max(1, len(samples) // 12)
        scale = max(args.limit_mb, growth_mb)
        for t, rss in samples[::step]:
            g = (rss - base_rss) / 2**20
            print(f"  {t:6.1f}s |{bar(g, scale)}| {g:6.1f}")
        print(f"  limit   |{bar(args.limit_mb, scale)}| {args.limit_mb:6.1f}")
        ok = growth_mb < args.limit_mb
        print("\nPASS" if ok else "\nFAIL: memory grew with the artifact")
        return 0 if ok else 1
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
