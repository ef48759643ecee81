"""``scripts/run``: arguments checked before any set-up, and the server and worker run and stop together."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

import psutil
import pytest
import requests

from conftest import ROOT, free_port

RUN = ROOT / "scripts" / "run"


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELEASE_SERVER_")}
    env.pop("DATABASE_URL", None)
    env["RELEASE_SERVER_INSTANCE_PATH"] = str(tmp_path / "instance")
    env["WORKERS"] = "1"
    return env


@pytest.mark.parametrize("args, code, text", [
    (["--help"], 0, "usage: scripts/run"),
    (["--port"], 2, "--port needs a value"),
    (["--port", "--no-demo"], 2, "--port needs a value"),
    (["--port", "eighty"], 2, "must be a number"),
    (["--bogus"], 2, "unknown argument: --bogus"),
])
def test_arguments_answered_before_any_setup(tmp_path: Path, args: list[str], code: int, text: str) -> None:
    # PYTHON points at nothing: had the script tried to make a venv or install, it would fail differently;
    # and the instance folder must not appear.
    env = _env(tmp_path)
    env["PATH"] = "/usr/bin:/bin"
    proc = subprocess.run([str(RUN), *args], env=env, capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert proc.returncode == code, proc.stderr
    assert text in proc.stdout + proc.stderr
    assert "installing" not in proc.stderr and "creating .venv" not in proc.stderr
    assert not (tmp_path / "instance").exists()


def _lease(db_path: Path) -> tuple[str | None, str | None]:
    with sqlite3.connect(db_path) as conn:
        row = conn.execute("select holder, expires_at from worker_leases where name = 'worker'").fetchone()
    return (row[0], row[1]) if row else (None, None)


@pytest.mark.slow
def test_runs_server_and_worker_and_stops_both_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    log = open(tmp_path / "run.log", "wb")
    proc = subprocess.Popen([str(RUN), "--port", str(port), "--no-demo"], env=_env(tmp_path), cwd=ROOT,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        db_path = tmp_path / "instance" / "release-server.db"
        deadline = time.monotonic() + 120
        answered = holder = None
        while time.monotonic() < deadline and not (answered and holder):
            assert proc.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
            try:
                answered = answered or requests.get(url + "/healthz", timeout=1).status_code == 200
            except requests.RequestException:
                pass
            if db_path.exists():
                try:
                    holder, expires = _lease(db_path)
                except sqlite3.OperationalError:  # not migrated yet
                    holder = None
            time.sleep(0.3)
        output = (tmp_path / "run.log").read_text()
        assert answered, output[-3000:]
        assert holder, output[-3000:]
        # The lease is live: held by a running process, expiring in the future.
        expiry = datetime.fromisoformat(expires)
        if expiry.tzinfo is None:
            expiry = expiry.replace(tzinfo=timezone.utc)
        assert expiry > datetime.now(timezone.utc)
        worker_pid = int(holder.split(":")[1])
        assert psutil.pid_exists(worker_pid)

        family = [proc.pid] + [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
        assert worker_pid in family
        assert len(family) >= 3  # the script, the worker, gunicorn (and its workers)

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 143
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(psutil.pid_exists(p) and psutil.Process(p).status()
                                                  != psutil.STATUS_ZOMBIE for p in family):
            time.sleep(0.2)
        alive = [p for p in family if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        assert alive == []
        output = (tmp_path / "run.log").read_text()
        assert "stopping the server and the worker" in output
        assert "server and worker stopped" in output
        assert _lease(db_path)[0] is None  # the worker gave the lease up on its way out
        with pytest.raises(requests.RequestException):
            requests.get(url + "/healthz", timeout=1)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        log.close()
