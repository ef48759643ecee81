"""The metadata-size benchmark still runs (on a small repository) and stays within budget."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_benchmark_runs_on_a_small_repository():
    proc = subprocess.run([sys.executable, str(ROOT / "scripts/bench/tuf_metadata_size.py"), "--releases", "20",
                           "--components", "2"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = {line.split("  ")[0].strip(): line for line in proc.stdout.splitlines()}
    nothing_new = lines["check, nothing new"]
    assert "timestamp.json 200" in nothing_new and "snapshot" not in nothing_new
    assert "of the 100 KB budget" in proc.stdout
