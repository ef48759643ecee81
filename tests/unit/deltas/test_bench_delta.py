"""The delta benchmark still runs end to end (on a small release) and meets its size target."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_benchmark_runs_on_a_small_release(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "scripts/bench/delta.py"), "--size-mb", "2", "--quick",
                           "--rounds", "1", "--work", str(tmp_path / "w")], capture_output=True, text=True,
                          timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "small-change patch under 10% of full: met" in proc.stdout, proc.stdout
    assert "== small change: full artifact" in proc.stdout
