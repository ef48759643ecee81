"""Where a multi-process server keeps its metric files: one folder per gunicorn master, stale ones removed."""
from __future__ import annotations

import os
import subprocess
import sys

from release_server.metrics_dir import MULTIPROC_ENV, prepare_multiprocess_dir


def test_outside_gunicorn_nothing_is_set(tmp_path, monkeypatch):
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    monkeypatch.delenv("SERVER_SOFTWARE", raising=False)
    assert prepare_multiprocess_dir(str(tmp_path)) is None
    assert MULTIPROC_ENV not in os.environ and not (tmp_path / "metrics").exists()


def test_under_gunicorn_one_folder_per_master_and_dead_ones_go(tmp_path, monkeypatch):
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    monkeypatch.setenv("SERVER_SOFTWARE", "gunicorn/23.0.0")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "metrics" / str(dead.pid)).mkdir(parents=True)  # a master that is gone
    (tmp_path / "metrics" / str(dead.pid) / "counter_1.db").write_bytes(b"x")
    (tmp_path / "metrics" / "1").mkdir()  # init: alive, kept
    got = prepare_multiprocess_dir(str(tmp_path))
    assert got == str(tmp_path / "metrics" / str(os.getppid())) and os.path.isdir(got)
    assert os.environ[MULTIPROC_ENV] == got
    assert not (tmp_path / "metrics" / str(dead.pid)).exists()
    assert (tmp_path / "metrics" / "1").exists()


def test_an_explicit_folder_wins(tmp_path, monkeypatch):
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path / "mine"))
    monkeypatch.setenv("SERVER_SOFTWARE", "gunicorn/23.0.0")
    assert prepare_multiprocess_dir(str(tmp_path)) == str(tmp_path / "mine")
    assert (tmp_path / "mine").is_dir() and not (tmp_path / "metrics").exists()
