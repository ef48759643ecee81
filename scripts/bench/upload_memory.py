#!/usr/bin/env python3
"""Publish a large artifact to a running server: speed, server and client CPU, memory growth.

Starts a server (the shipped gunicorn settings, one worker, embedded default: SQLite +
local disk) in a temporary instance and alternates rounds A B B A on one file of
``--size-mb`` MB: A runs the references, ``openssl dgst -sha256`` of the file and
``cp`` of it to the instance's disk followed by ``sync``; B publishes it with
``release-server publish`` (a new version each round) while the worker's RSS is
sampled every 20 ms. Prints, per side, the median rate with min-max and the CPU
seconds of the server process tree and of the client. Targets: publish at >= 0.5x
``cp`` + ``sync``; server CPU under 2x ``openssl``'s for the same file; RSS growth
under ``--limit-mb``.

    .venv/bin/python scripts/bench/upload_memory.py [--size-mb 500] [--rounds 4]
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402


def bar(value: float, scale: float, width: int = 40) -> str:
    n = 0 if scale <= 0 else int(round(width * min(value / scale, 1.0)))
    return "#" * n + "." * (width - n)


def child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(cmd: list[str], **kw) -> tuple[float, float, subprocess.CompletedProcess]:  # noqa: ANN003
    """(wall seconds, CPU seconds of the command) for one run."""
    c0, t0 = child_cpu(), time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    return time.perf_counter() - t0, child_cpu() - c0, proc


class _Payload:
    """``size_mb`` MiB of incompressible bytes (a random block, rotated), read like a file."""

    def __init__(self, size_mb: int) -> None:
        self.block = os.urandom(1024 * 1024)
        self.left = size_mb * 1024 * 1024
        self.i = 0

    def read(self, n: int = -1) -> bytes:
        out = bytearray()
        while self.left and (n < 0 or len(out) < n):
            b = self.block[self.i % 256:] + self.block[:self.i % 256]
            self.i += 1
            take = b[:min(len(b), self.left, (n - len(out)) if n >= 0 else len(b))]
            out += take
            self.left -= len(take)
            if len(take) < len(b):
                self.block = b[len(take):] + b[:len(take)]  # go on from where this read stopped
                self.i = 0
        return bytes(out)


def write_artifact(path: Path, size_mb: int) -> None:
    """A ``.tar.gz`` the agent could install (publish refuses anything else): one member of
    incompressible content, so the archive is about as large as its payload."""
    import tarfile

    info = tarfile.TarInfo("payload.bin")
    info.size, info.mode = size_mb * 1024 * 1024, 0o644
    with tarfile.open(path, "w:gz", compresslevel=0) as tar:  # stored: deflate finds nothing to gain anyway
        tar.addfile(info, _Payload(size_mb))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=4, help="A B B A ...: an even number")
    ap.add_argument("--limit-mb", type=int, default=64, help="allowed RSS growth (pass/fail)")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="rs-bench-upload-"))
    instance = work / "instance"
    env = benchlib.server_env(instance, RELEASE_SERVER_MAX_ARTIFACT_SIZE=str((args.size_mb + 64) * 1024 * 1024))
    cli = [sys.executable, "-m", "release_server.cli"]
    server = None
    try:
        subprocess.run(cli + ["init"], env=env, capture_output=True, text=True, check=True)
        subprocess.run(cli + ["components", "create", "server"], env=env, check=True, capture_output=True)
        token = subprocess.run(cli + ["tokens", "create", "--name", "bench", "--role", "publisher"], env=env,
                               check=True, capture_output=True, text=True).stdout.strip()

        artifact = work / "server-9.9.tar.gz"
        print(f"writing a {args.size_mb} MB artifact ...", flush=True)
        write_artifact(artifact, args.size_mb)
        size = artifact.stat().st_size
        mb = size / 2**20

        port = benchlib.free_port()
        server = benchlib.start_gunicorn("release_server:create_app()", port, env, ["--workers", "1"])
        url = f"http://127.0.0.1:{port}"
        worker = psutil.Process(server.pid).children()[0]
        print(f"server: gunicorn --config python:release_server.gunicorn_conf --workers 1; {benchlib.load_line()}",
              flush=True)

        res: dict[str, list[tuple[float, float, float]]] = {"openssl": [], "cp+sync": [], "publish": []}
        base_rss = worker.memory_info().rss
        peak = base_rss
        samples: list[tuple[float, int]] = []
        version = 0
        for r in range(args.rounds):
            side = "A" if r % 4 in (0, 3) else "B"
            if side == "A":
                wall, cpu, _ = timed(["openssl", "dgst", "-sha256", str(artifact)])
                res["openssl"].append((wall, cpu, 0.0))
                dest = instance / "copy.bin"
                c0, t0 = child_cpu(), time.perf_counter()
                subprocess.run(["cp", str(artifact), str(dest)], check=True)
                subprocess.run(["sync"], check=True)
                res["cp+sync"].append((time.perf_counter() - t0, child_cpu() - c0, 0.0))
                dest.unlink()
                subprocess.run(["sync"], check=True)
                print(f"  round {r + 1} A: openssl {mb / res['openssl'][-1][0]:6.0f} MB/s "
                      f"(CPU {res['openssl'][-1][1]:.2f} s), cp+sync {mb / res['cp+sync'][-1][0]:6.0f} MB/s "
                      f"(CPU {res['cp+sync'][-1][1]:.2f} s)", flush=True)
                continue
            version += 1
            stop = threading.Event()
            round_samples: list[tuple[float, int]] = []

            def sample() -> None:
                start = time.perf_counter()
                while not stop.is_set():
                    round_samples.append((time.perf_counter() - start, worker.memory_info().rss))
                    time.sleep(0.02)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            u0, k0 = benchlib.tree_cpu_split(server.pid)
            wall, cpu, pub = timed(cli + ["publish", "--server", url, "--token", token, "--component", "server",
                                          "--version", f"9.9.{version}", "--quiet", str(artifact)], env=env)
            u1, k1 = benchlib.tree_cpu_split(server.pid)
            server_cpu = (u1 - u0) + (k1 - k0)
            stop.set()
            sampler.join()
            if pub.returncode != 0:
                print(pub.stderr, file=sys.stderr)
                return 1
            res["publish"].append((wall, cpu, server_cpu, u1 - u0, k1 - k0))
            peak = max([peak] + [rss for _, rss in round_samples])
            samples = samples or round_samples
            print(f"  round {r + 1} B: publish {mb / wall:6.0f} MB/s, server CPU {server_cpu:.2f} s "
                  f"(user {u1 - u0:.2f}, system {k1 - k0:.2f}), "
                  f"client CPU {cpu:.2f} s", flush=True)

        def med(name: str, i: int) -> float:
            return statistics.median(x[i] for x in res[name])

        def rate(name: str) -> str:
            rates = [mb / x[0] for x in res[name]]
            return f"{statistics.median(rates):6.0f} MB/s ({min(rates):.0f}-{max(rates):.0f})"

        growth_mb = (peak - base_rss) / 2**20
        print()
        print(f"artifact {mb:.0f} MB")
        print(f"{'':28} {'rate, median (min-max)':>26} {'server CPU s':>13} {'client CPU s':>13}")
        print(f"{'openssl dgst -sha256':28} {rate('openssl'):>26} {'':>13} {med('openssl', 1):13.2f}")
        print(f"{'cp + sync':28} {rate('cp+sync'):>26} {'':>13} {med('cp+sync', 1):13.2f}")
        print(f"{'publish (CLI -> server)':28} {rate('publish'):>26} {med('publish', 2):13.2f} "
              f"{med('publish', 1):13.2f}")
        speed_ratio = med("cp+sync", 0) / med("publish", 0)
        cpu_ratio = med("publish", 2) / max(med("openssl", 1), 1e-9)
        print(f"\npublish / (cp + sync) rate: {speed_ratio:.2f}x   (target >= 0.50)")
        print(f"server CPU / openssl CPU:   {cpu_ratio:.2f}x   (target < 2.00); "
              f"server CPU per MB {med('publish', 2) / mb * 1000:.2f} ms, openssl {med('openssl', 1) / mb * 1000:.2f} ms")
        print(f"server CPU split: user {med('publish', 3):.2f} s (hashing, parsing: {med('publish', 3) / med('openssl', 1):.2f}x "
              f"openssl), system {med('publish', 4):.2f} s (socket receive, page-cache write, fsync); "
              f"cp + sync spent {med('cp+sync', 1):.2f} s writing the same file")
        print(f"server worker RSS: baseline {base_rss / 2**20:.1f} MB, peak {peak / 2**20:.1f} MB, growth "
              f"{growth_mb:.1f} MB (limit {args.limit_mb} MB)")
        print("worker RSS during the first upload (MB above baseline; each row ~1/12 of it):")
        step = max(1, len(samples) // 12)
        scale = max(args.limit_mb, growth_mb)
        for t, rss in samples[::step]:
            g = (rss - base_rss) / 2**20
            print(f"  {t:6.1f}s |{bar(g, scale)}| {g:6.1f}")
        ok = growth_mb < args.limit_mb and speed_ratio >= 0.5 and cpu_ratio < 2.0
        print("\nPASS" if ok else "\nFAIL")
        return 0 if ok else 1
    finally:
        benchlib.stop(server)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
