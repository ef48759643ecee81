"""The daemon and the timer mode: maintenance window, lock, SIGTERM, and the agent updating itself."""
from __future__ import annotations

import json
import shutil
import signal
import time
from datetime import datetime, timedelta
from pathlib import Path

from client_agent.selfupdate import PACKAGE_DIR, build_agent_artifact


def wait_for(predicate, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_run_once_installs_only_inside_the_maintenance_window(e2e):
    e2e.publish("app", "1.0")
    e2e.enroll()
    now = datetime.now()
    closed = f"{(now + timedelta(hours=2)):%H:%M}-{(now + timedelta(hours=3)):%H:%M}"
    e2e.set_config(maintenance_window=closed)

    out = e2e.agent("run", "--once", check=0).stdout
    assert "app: 1.0 downloaded; it will be installed in the maintenance window" in out
    assert e2e.current() is None
    assert len(list((e2e.state_dir / "downloads").glob("*.app-1.0.tar.gz"))) == 1  # downloaded early
    assert e2e.reports() == []

    e2e.set_config(maintenance_window="any")
    out = e2e.agent("run", "--once", check=0).stdout
    assert "app: updated (none) -> 1.0" in out
    assert [r["outcome"] for r in e2e.reports()] == ["success"]
    assert not list((e2e.state_dir / "downloads").iterdir())


def test_daemon_polls_holds_the_lock_updates_itself_and_stops_on_sigterm(e2e):
    e2e.enroll()
    e2e.set_config(poll_interval=1)
    daemon = e2e.spawn("run")
    try:
        wait_for(lambda: (e2e.state_dir / "status.json").exists()
                 and json.loads((e2e.state_dir / "status.json").read_text()).get("last_check_ok"),
                 what="the first check")
        proc = e2e.agent("update", "--yes", check=6)
        assert "another agent" in proc.stderr

        e2e.publish("app", "1.0")
        wait_for(lambda: e2e.current() == "1.0", what="app 1.0 installed by the daemon")

        e2e.publish("client-agent", "2.0", build_agent_artifact("2.0"))
        wait_for(lambda: "agent 2.0 started (daemon)" in e2e.agent_log(), what="the daemon on agent 2.0")
        assert daemon.poll() is None  # re-executed in place
        assert e2e.current("client-agent") == "2.0"
    finally:
        daemon.send_signal(signal.SIGTERM)
        out, err = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, err
    assert e2e.agent_log().rstrip().endswith("agent stopped")
    reports = {(r["component"], r["to_version"], r["outcome"]) for r in e2e.reports()}
    assert {("app", "1.0", "success"), ("client-agent", "2.0", "success")} <= reports


def test_self_update_takes_effect_next_run_and_a_broken_agent_is_not_switched_to(e2e, tmp_path):
    e2e.publish("client-agent", "2.0", build_agent_artifact("2.0"))
    e2e.enroll(components=())
    assert "client-agent 0.1.0" in e2e.agent("--version", check=0).stdout

    out = e2e.agent("update", "--yes", check=0).stdout
    assert "client-agent: updated (none) -> 2.0" in out
    release = (e2e.install_dir / "client-agent" / "releases" / "2.0").resolve()
    version = e2e.agent("--version", check=0).stdout
    assert version.startswith("client-agent 2.0 ") and str(release) in version
    assert e2e.status()["agent"]["version"] == "2.0"
    self_check = [r for r in e2e.reports() if r["component"] == "client-agent"][0]
    assert self_check["outcome"] == "success"

    broken = tmp_path / "broken" / "client_agent"
    shutil.copytree(PACKAGE_DIR, broken, ignore=shutil.ignore_patterns("__pycache__"))
    (broken / "trust.py").write_text((broken / "trust.py").read_text() + "\nthis is not python\n")
    e2e.publish("client-agent", "3.0", build_agent_artifact("3.0", source=broken))
    proc = e2e.agent("update", "--yes", check=1)
    assert "client-agent: update to 3.0 failed at pre_install (hook_failed); rolled back, 2.0 is running" \
        in proc.stdout
    assert e2e.current("client-agent") == "2.0"
    assert not Path(e2e.install_dir / "client-agent" / "releases" / "3.0").exists()
    assert e2e.agent("--version", check=0).stdout.startswith("client-agent 2.0 ")
    failed = next(r for r in e2e.reports() if r["to_version"] == "3.0")
    assert failed["outcome"] == "rolled_back" and failed["stage"] == "pre_install"
    assert "cannot import client_agent.trust" in failed["log_tail"]
