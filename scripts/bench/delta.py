#!/usr/bin/env python3
"""Delta patches on realistic artifacts: size, generation cost, and applying against downloading.

Builds, offline, a release of a Python application with its dependencies: the packages
of this virtual environment's site-packages (sorted by name, until about ``--size-mb``
of ``.tar.gz``) under ``app/vendor/`` plus a generated application package ``app/crm/``,
packed by GNU tar and gzip as a CI would. Then two next releases:

* small: one dependency upgraded (a third of its modules edited, its dist-info renamed)
  and three application files changed;
* large: most files changed (every text file edited in several places, binaries patched).

For each it measures, with the server's own code (:mod:`client_agent.deltapatch`):

* patch size against the full artifact; generation time and peak memory (a child
  process each, so its peak RSS is its own);
* applying on the agent (apply to the kept tar stream of the installed release, hash the
  result) plus downloading the patch,
  against downloading the full artifact, both from a loopback HTTP server throttled to
  ``--rate-mb`` MB/s (10), in alternating rounds (A B B A ...), median with min–max,
  with the serving process's CPU time per request beside it.

And, to justify the method, one round each of the alternatives: ``zstd --patch-from``
over the whole tar stream (python-zstandard raw-content dictionary, long-distance
matching), the same over the compressed ``.tar.gz`` bytes, bsdiff4 against the
Zstandard dictionary on the changed members, and whether zlib can reproduce the
published ``.tar.gz`` (and at what speed it recompresses).

Usage: python scripts/bench/delta.py [--size-mb 100] [--rounds 2] [--rate-mb 10] [--work DIR] [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import site
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

MB = 1024 * 1024
SKIP = {"pip", "setuptools", "_distutils_hack", "__pycache__", "release_server", "client_agent"}


# --------------------------------------------------------------------------- building releases


def site_packages() -> Path:
    for p in site.getsitepackages():
        if Path(p).is_dir() and any(Path(p).iterdir()):
            return Path(p)
    raise SystemExit("no site-packages found")


def copy_tree(src: Path, dest: Path) -> int:
    total = 0
    for path in sorted(src.rglob("*")):
        if "__pycache__" in path.parts or path.is_symlink():
            continue
        rel = path.relative_to(src)
        target = dest / rel
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif path.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            total += path.stat().st_size
    return total


def app_module(i: int, version: str) -> str:
    rng = random.Random(i)
    words = ["customer", "invoice", "order", "ledger", "contact", "report", "account", "payment", "stock", "quote"]
    lines = [f'"""CRM module {i}."""', "from __future__ import annotations", ""]
    for j in range(60):
        a, b = rng.choice(words), rng.choice(words)
        lines += [f"def {a}_{b}_{j}(value: int) -> int:", f"    # {a} rules for {b}",
                  f"    return value * {rng.randint(2, 99)} + {j}", ""]
    lines.append(f"VERSION = {version!r}")
    return "\n".join(lines) + "\n"


def build_v1(tree: Path, size_mb: int) -> list[str]:
    """Copy packages until the tree is about 4.2 times the wanted compressed size; returns the packages."""
    src = site_packages()
    vendor = tree / "app" / "vendor"
    vendor.mkdir(parents=True)
    budget = int(size_mb * 4.2 * MB)
    used, total = [], 0
    entries = sorted(p for p in src.iterdir() if p.name not in SKIP and not p.name.endswith(".pth"))
    for entry in entries:
        if total >= budget:
            break
        if entry.is_dir():
            total += copy_tree(entry, vendor / entry.name)
        elif entry.is_file():
            shutil.copyfile(entry, vendor / entry.name)
            total += entry.stat().st_size
        used.append(entry.name)
    crm = tree / "app" / "crm"
    crm.mkdir(parents=True)
    for i in range(80):
        (crm / f"module_{i:02d}.py").write_text(app_module(i, "1.0"))
    (tree / "VERSION").write_text("1.0\n")
    return used


def biggest_python_package(tree: Path) -> Path:
    vendor = tree / "app" / "vendor"
    best, size = None, 0
    for d in vendor.iterdir():
        if d.is_dir() and not d.name.endswith(".dist-info"):
            n = sum(1 for _ in d.rglob("*.py"))
            if n > size and n < 1500:
                best, size = d, n
    assert best is not None
    return best


def edit_text(path: Path, rng: random.Random, edits: int) -> None:
    try:
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    except (UnicodeDecodeError, OSError):
        return
    for _ in range(edits):
        if not lines:
            break
        k = rng.randrange(len(lines))
        lines.insert(k, f"# changed in this release ({rng.random():.6f})\n")
    path.write_text("".join(lines), encoding="utf-8")


def make_small_change(v1: Path, v2: Path) -> str:
    shutil.copytree(v1, v2, symlinks=True)
    rng = random.Random(2)
    pkg = biggest_python_package(v2)
    modules = sorted(pkg.rglob("*.py"))
    for path in modules[::3]:
        edit_text(path, rng, 3)
    for info in (v2 / "app" / "vendor").glob(f"{pkg.name}-*.dist-info"):
        meta = info / "METADATA"
        if meta.exists():
            meta.write_text(meta.read_text(errors="replace").replace("Version: ", "Version: 99.", 1))
        info.rename(info.with_name(info.name.replace("-", "-99.", 1)))
    for i in (3, 17, 42):
        (v2 / "app" / "crm" / f"module_{i:02d}.py").write_text(app_module(i + 1000, "1.1"))
    (v2 / "VERSION").write_text("1.1\n")
    return pkg.name


def make_large_change(v1: Path, v2: Path) -> int:
    shutil.copytree(v1, v2, symlinks=True)
    rng = random.Random(3)
    changed = 0
    for path in sorted(v2.rglob("*")):
        if not path.is_file() or rng.random() > 0.85:
            continue
        if path.suffix in (".so", ".pyd") or b"\0" in path.read_bytes()[:1024]:
            data = bytearray(path.read_bytes())
            for _ in range(8):
                if data:
                    data[rng.randrange(len(data))] ^= 0xFF
            path.write_bytes(bytes(data))
        else:
            edit_text(path, rng, 4)
        changed += 1
    (v2 / "VERSION").write_text("2.0\n")
    return changed


def pack(tree: Path, dest: Path) -> None:
    """GNU tar + gzip -6, reproducible order and owners (what a CI pipeline produces)."""
    subprocess.run(["tar", "--sort=name", "--mtime=2026-12-01 00:00Z", "--owner=0", "--group=0",
                    "--numeric-owner", "-czf", str(dest), "-C", str(tree), "."], check=True)


# --------------------------------------------------------------------------- child measurements


def peak_rss_mb() -> float:
    """This process's own peak RSS (VmHWM: unlike ru_maxrss, not inherited from the parent across exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(kind: str, args: list[str]) -> dict[str, Any]:
    """Run one measurement in a fresh process (its peak RSS is its own)."""
    proc = subprocess.run([sys.executable, __file__, "--child", kind, *args], capture_output=True, text=True,
                          check=False, timeout=3600)
    if proc.returncode != 0:
        raise SystemExit(f"child {kind} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_child(kind: str, args: list[str]) -> dict[str, Any]:
    from client_agent import deltapatch

    base_rss = peak_rss_mb()
    t0, c0 = time.perf_counter(), time.process_time()
    out: dict[str, Any] = {}
    if kind == "ours":  # the server's generation: unpack both artifacts, build the patch
        old, new, patch, work = map(Path, args)
        deltapatch.to_tar(old, work / "a.tar")
        deltapatch.to_tar(new, work / "b.tar")
        stats = deltapatch.build_patch(work / "a.tar", work / "b.tar", patch)
        out = {"copied": stats.copied, "diffed": stats.diffed, "literal": stats.literal}
    elif kind == "keep":  # the agent after a full install: keep the release's tar stream as the next base
        artifact, kept = map(Path, args)
        deltapatch.to_tar(artifact, kept)
    elif kind == "apply":  # the agent during the update: apply the patch to the kept tar, hash the result
        kept, patch, work, tar_len = args
        digest = deltapatch.apply_patch(Path(kept), Path(patch), Path(work) / "out.tar", max_output=int(tar_len))
        out = {"sha256": digest.sha256}
    elif kind == "zstd-whole":  # zstd --patch-from over whole files
        import zstandard

        old, new, patch = map(Path, args[:3])
        base = old.read_bytes()
        size = max(len(base), new.stat().st_size)
        wlog = min(31, max(10, (size - 1).bit_length() + 1))
        params = zstandard.ZstdCompressionParameters.from_level(3, window_log=wlog, enable_ldm=True,
                                                                source_size=new.stat().st_size)
        d = zstandard.ZstdCompressionDict(base, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
        with open(new, "rb") as src, open(patch, "wb") as dst:
            zstandard.ZstdCompressor(dict_data=d, compression_params=params).copy_stream(src, dst)
    elif kind == "members":  # bsdiff4 against the zstd dictionary, on the changed members only
        import zstandard

        old_tar, new_tar = map(Path, args)
        try:
            import bsdiff4
        except ImportError:
            bsdiff4 = None
        pairs = changed_members(old_tar, new_tar)
        zs, zt, bs, bt = 0, 0.0, 0, 0.0
        for a, b in pairs:
            t = time.perf_counter()
            d = zstandard.ZstdCompressionDict(a, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
            zs += len(zstandard.ZstdCompressor(level=19, dict_data=d).compress(b))
            zt += time.perf_counter() - t
            if bsdiff4 is not None:
                t = time.perf_counter()
                bs += len(bsdiff4.diff(a, b))
                bt += time.perf_counter() - t
        out = {"members": len(pairs), "bytes": sum(len(b) for _, b in pairs), "zstd": zs, "zstd_s": zt,
               "bsdiff": bs if bsdiff4 else None, "bsdiff_s": bt if bsdiff4 else None}
    out.update(seconds=time.perf_counter() - t0, cpu=time.process_time() - c0,
               rss_mb=peak_rss_mb(), rss_start_mb=base_rss)
    return out


def zstd_cli_patch(old: Path, new: Path, patch: Path) -> dict[str, Any] | None:
    """``zstd --patch-from`` (the command-line tool, when installed): size, seconds, peak RSS of the process."""
    exe = shutil.which("zstd")
    if exe is None:
        return None
    t = time.perf_counter()
    proc = subprocess.Popen([exe, "-q", "-f", "-3", "-T1", "--long=31", f"--patch-from={old}", str(new), "-o",
                             str(patch)])
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        return None
    return {"bytes": patch.stat().st_size, "seconds": time.perf_counter() - t, "rss_mb": usage.ru_maxrss / 1024}


def changed_members(old_tar: Path, new_tar: Path) -> list[tuple[bytes, bytes]]:
    def read(p: Path) -> dict[str, bytes]:
        out = {}
        with tarfile.open(p) as t:
            for m in t:
                if m.isreg() and m.size < 8 * MB:
                    out[m.name] = t.extractfile(m).read()  # type: ignore[union-attr]
        return out

    a, b = read(old_tar), read(new_tar)
    return [(a[n], b[n]) for n in sorted(b) if n in a and a[n] != b[n]]


def zlib_reproduces(artifact: Path, tar: Path) -> tuple[int | None, float]:
    """The zlib level (if any) that reproduces the first MiB of the gzip body, and level-6 speed (MB/s)."""
    with open(artifact, "rb") as f:
        head = f.read(2 * MB)
    flags, pos = head[3], 10
    if flags & 8:
        pos = head.index(b"\0", pos) + 1
    body = head[pos:pos + MB]
    with open(tar, "rb") as f:
        plain = f.read(16 * MB)
    found = None
    for level in range(1, 10):
        c = zlib.compressobj(level, zlib.DEFLATED, -15)
        if (c.compress(plain) + c.flush())[:len(body)] == body:
            found = level
            break
    t = time.perf_counter()
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    with open(tar, "rb") as f:
        n = 0
        while chunk := f.read(MB):
            c.compress(chunk)
            n += len(chunk)
    c.flush()
    return found, n / MB / (time.perf_counter() - t)


# --------------------------------------------------------------------------- throttled serving


SERVER = r'''
import http.server, os, sys, time
root, rate = sys.argv[1], float(sys.argv[2])
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        path = os.path.join(root, self.path.lstrip("/"))
        size = os.path.getsize(path)
        self.send_response(200); self.send_header("Content-Length", str(size)); self.end_headers()
        start, sent = time.perf_counter(), 0
        with open(path, "rb") as f:
            while chunk := f.read(65536):
                self.wfile.write(chunk); sent += len(chunk)
                ahead = sent / rate - (time.perf_counter() - start)
                if ahead > 0: time.sleep(ahead)
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
'''


class Throttled:
    def __init__(self, root: Path, rate_bytes: float) -> None:
        import psutil

        self.proc = subprocess.Popen([sys.executable, "-c", SERVER, str(root), str(rate_bytes)],
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())
        self.ps = psutil.Process(self.proc.pid)

    def get(self, name: str, dest: Path) -> tuple[float, float]:
        """Download ``name``; (seconds, server CPU seconds)."""
        import requests

        c0 = sum(self.ps.cpu_times()[:2])
        t = time.perf_counter()
        with requests.get(f"http://127.0.0.1:{self.port}/{name}", stream=True, timeout=600) as r, \
                open(dest, "wb") as out:
            r.raise_for_status()
            for chunk in r.iter_content(256 * 1024):
                out.write(chunk)
        return time.perf_counter() - t, sum(self.ps.cpu_times()[:2]) - c0

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} s (min {min(values):.2f}, max {max(values):.2f})"


# --------------------------------------------------------------------------- main


def scenario(name: str, work: Path, v1_art: Path, v2_art: Path, rounds: int, rate: float,
             server: Throttled) -> dict[str, Any]:
    from client_agent import deltapatch

    full = v2_art.stat().st_size
    w = work / name
    w.mkdir()
    patch = w / "patch.rsdpatch"
    gen = child("ours", [str(v1_art), str(v2_art), str(patch), str(w)])
    size = patch.stat().st_size
    tar_digest = deltapatch.file_digest(w / "b.tar")
    server_root = work / "serve"
    shutil.copyfile(patch, server_root / f"{name}.rsdpatch")
    shutil.copyfile(v2_art, server_root / f"{name}.tar.gz")

    keep = child("keep", [str(v1_art), str(w / "kept.tar")])
    a_times, b_times, a_cpu, b_cpu, apply_times, apply_rss = [], [], [], [], [], []
    order = (["A", "B", "B", "A"] * ((rounds + 1) // 2))[:max(2, rounds * 2)]
    for step in order:
        if step == "A":  # patch download + apply on the agent
            dl, cpu = server.get(f"{name}.rsdpatch", w / "dl.patch")
            res = child("apply", [str(w / "kept.tar"), str(w / "dl.patch"), str(w), str(tar_digest.length)])
            assert res["sha256"] == tar_digest.sha256, "applied patch does not give the new tar stream"
            a_times.append(dl + res["seconds"])
            a_cpu.append(cpu)
            apply_times.append(res["seconds"])
            apply_rss.append(res["rss_mb"])
        else:  # full download
            dl, cpu = server.get(f"{name}.tar.gz", w / "dl.tar.gz")
            b_times.append(dl)
            b_cpu.append(cpu)
    whole_patch = w / "whole.zst"
    whole = child("zstd-whole", [str(w / "a.tar"), str(w / "b.tar"), str(whole_patch)])
    gz_patch = w / "gz.zst"
    child("zstd-whole", [str(v1_art), str(v2_art), str(gz_patch)])
    members = child("members", [str(w / "a.tar"), str(w / "b.tar")]) if name == "small" else None
    cli = zstd_cli_patch(w / "a.tar", w / "b.tar", w / "cli.zst")
    return {"full": full, "patch": size, "gen": gen, "a": a_times, "b": b_times, "a_cpu": a_cpu, "b_cpu": b_cpu,
            "apply": apply_times, "apply_rss": apply_rss, "keep": keep, "whole": whole_patch.stat().st_size, "whole_run": whole,
            "gz": gz_patch.stat().st_size, "members": members, "tar": tar_digest.length, "cli": cli}


def report(name: str, r: dict[str, Any], rate_mb: float) -> None:
    full, patch = r["full"], r["patch"]
    g = r["gen"]
    print(f"\n== {name} change: full artifact {full / MB:.1f} MB (tar stream {r['tar'] / MB:.1f} MB)")
    print(f"  patch (per member, zstd dict)   {patch / MB:8.2f} MB = {patch / full:6.1%} of full   "
          f"[copied {g['copied'] / MB:.0f} MB, diffed {g['diffed'] / MB:.1f} MB, literal {g['literal'] / MB:.1f} MB]")
    print(f"  generation                      {g['seconds']:.1f} s (CPU {g['cpu']:.1f} s), "
          f"peak RSS {g['rss_mb']:.0f} MB (interpreter at start {g['rss_start_mb']:.0f} MB)")
    print(f"  apply on the agent (apply to the kept tar + hash): median {statistics.median(r['apply']):.2f} s, "
          f"peak RSS {max(r['apply_rss']):.0f} MB")
    print(f"  keeping the base after the previous install (unpack its .tar.gz, once, not while updating): "
          f"{r['keep']['seconds']:.2f} s")
    print(f"  A patch download + apply at {rate_mb:g} MB/s: {summary(r['a'])}, "
          f"server CPU {statistics.median(r['a_cpu']) * 1000:.0f} ms/request")
    print(f"  B full download at {rate_mb:g} MB/s:          {summary(r['b'])}, "
          f"server CPU {statistics.median(r['b_cpu']) * 1000:.0f} ms/request "
          f"({statistics.median(r['b_cpu']) * 1000 / (full / MB):.1f} ms/MB)")
    w = r["whole_run"]
    print(f"  alternative: python-zstandard raw dictionary + LDM, whole tar stream {r['whole'] / MB:8.2f} MB = {r['whole'] / full:6.1%}"
          f"  ({w['seconds']:.1f} s, peak RSS {w['rss_mb']:.0f} MB)")
    print(f"  alternative: zstd --patch-from, .tar.gz bytes     {r['gz'] / MB:8.2f} MB = {r['gz'] / full:6.1%}")
    c = r.get("cli")
    if c:
        print(f"  alternative: zstd CLI --patch-from --long=31, whole tar stream {c['bytes'] / MB:8.2f} MB = "
              f"{c['bytes'] / full:6.1%}  ({c['seconds']:.1f} s, peak RSS {c['rss_mb']:.0f} MB)")
    m = r["members"]
    if m:
        bs = (f"bsdiff4 {m['bsdiff'] / 1024:.0f} KB in {m['bsdiff_s']:.1f} s" if m["bsdiff"] is not None
              else "bsdiff4 not installed")
        print(f"  changed members ({m['members']}, {m['bytes'] / MB:.1f} MB): zstd dict {m['zstd'] / 1024:.0f} KB "
              f"in {m['zstd_s']:.1f} s; {bs}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=int, default=100, help="about this many MB of .tar.gz for the release")
    ap.add_argument("--rounds", type=int, default=2, help="rounds of A and B each (A B B A ...)")
    ap.add_argument("--rate-mb", type=float, default=10.0, help="download rate of the throttled server")
    ap.add_argument("--work", type=Path, help="work folder (default: a temporary one, removed after)")
    ap.add_argument("--quick", action="store_true", help="small change only (for a smoke run)")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_child(args.child[0], args.child[1:])))
        return 0
    work = args.work or Path(tempfile.mkdtemp(prefix="delta-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    server = None
    try:
        t = time.perf_counter()
        used = build_v1(work / "v1", args.size_mb)
        dep = make_small_change(work / "v1", work / "v2s")
        pack(work / "v1", work / "v1.tar.gz")
        pack(work / "v2s", work / "v2s.tar.gz")
        shutil.rmtree(work / "v2s")
        if not args.quick:
            changed = make_large_change(work / "v1", work / "v2l")
            pack(work / "v2l", work / "v2l.tar.gz")
            shutil.rmtree(work / "v2l")
        print(f"built releases in {time.perf_counter() - t:.0f} s from {len(used)} packages of {site_packages()}")
        print(f"small change: dependency {dep!r} upgraded (a third of its modules edited), 3 application files")
        if not args.quick:
            print(f"large change: {changed} files changed")
        (work / "serve").mkdir(exist_ok=True)
        server = Throttled(work / "serve", args.rate_mb * MB)
        results = {"small": scenario("small", work, work / "v1.tar.gz", work / "v2s.tar.gz", args.rounds,
                                     args.rate_mb, server)}
        if not args.quick:
            results["large"] = scenario("large", work, work / "v1.tar.gz", work / "v2l.tar.gz", args.rounds,
                                        args.rate_mb, server)
        found, speed = zlib_reproduces(work / "v1.tar.gz", work / "small" / "a.tar")
        for name, r in results.items():
            report(name, r, args.rate_mb)
        print("\n== rebuilding the published .tar.gz on the agent")
        print(f"  zlib level reproducing GNU gzip's output: {found if found else 'none (1-9 tried)'}; "
              f"zlib level 6 recompresses at {speed:.0f} MB/s")
        small = results["small"]
        ok_size = small["patch"] < 0.10 * small["full"]
        ok_time = statistics.median(small["a"]) < statistics.median(small["b"])
        print(f"\ntarget: small-change patch under 10% of full: {'met' if ok_size else 'NOT met'} "
              f"({small['patch'] / small['full']:.1%}); patch+apply faster than the full download: "
              f"{'met' if ok_time else 'NOT met'}")
        return 0
    finally:
        if server is not None:
            server.close()
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
