"""Enroll, check, update, a failing health check, operator rollback: real server, real agent."""
from __future__ import annotations

import json
import os
import stat

from e2e.agent_harness import app_artifact


def test_enroll_update_then_failed_health_check_rolls_back(e2e):
    e2e.publish("app", "1.0", changelog="* First release")
    inst = e2e.enroll()

    # the state folder is private and holds the id, the installation's own token and the root
    assert stat.S_IMODE(os.stat(e2e.state_dir).st_mode) == 0o700
    enrollment = json.loads((e2e.state_dir / "enrollment.json").read_text())
    assert enrollment["token"].startswith("rsi_")
    assert enrollment["root_json"]["signed"]["_type"] == "root"
    assert stat.S_IMODE(os.stat(e2e.state_dir / "enrollment.json").st_mode) == 0o600

    out = e2e.agent("check", check=0).stdout
    assert "app: (not installed) -> 1.0" in out
    assert "First release" in out

    out = e2e.agent("update", "--yes", check=0).stdout
    assert "app: updated (none) -> 1.0" in out
    assert e2e.running_version() == "1.0"
    assert e2e.agent("check", check=0).stdout.strip() == "Everything is up to date."

    # 1.1 and 1.2 published; 1.2's health check fails -> rolled back, 1.0 keeps running
    e2e.publish("app", "1.1", changelog="* Faster search")
    e2e.publish("app", "1.2", app_artifact("1.2", health="echo 'database schema check failed' >&2; exit 3"),
                changelog="* New invoice export")
    out = e2e.agent("check", check=0).stdout
    assert "app: 1.0 -> 1.2" in out
    assert "Faster search" in out and "New invoice export" in out  # the skipped 1.1 is in the changelog
    proc = e2e.agent("update", "--yes", check=1)
    assert "rolled back, 1.0 is running" in proc.stdout
    assert e2e.current() == "1.0" and e2e.running_version() == "1.0"
    assert not (e2e.install_dir / "app" / "releases" / "1.2").exists()

    reports = {(r["to_version"], r["outcome"]): r for r in e2e.reports()}
    assert ("1.0", "success") in reports
    failed = reports[("1.2", "rolled_back")]
    assert failed["stage"] == "health_check"
    assert failed["error_code"] == "health_check_failed"
    assert failed["from_version"] == "1.0"
    assert "database schema check failed" in failed["log_tail"]
    assert "--- agent log ---" in failed["log_tail"]
    assert failed["duration_seconds"] >= 0
    assert e2e.status()["pending_reports"] == []

    # the server's inventory follows the reports
    assert e2e.installation()["versions"]["app"] == "1.0"
    assert inst


def test_enroll_refuses_an_enrolled_state_folder_unless_forced(e2e):
    e2e.publish("app", "1.0")
    first = e2e.enroll()
    proc = e2e.agent("enroll", "--server", e2e.server.url, "--token", e2e.enrollment_token(),
                     "--install-dir", str(e2e.install_dir), check=3)
    assert "already enrolled" in proc.stderr and "--force" in proc.stderr
    assert json.loads((e2e.state_dir / "enrollment.json").read_text())["installation_id"] == first

    e2e.agent("enroll", "--server", e2e.server.url, "--token", e2e.enrollment_token(),
              "--install-dir", str(e2e.install_dir), "--force", check=0)
    second = json.loads((e2e.state_dir / "enrollment.json").read_text())["installation_id"]
    assert second != first

    # a bad enrollment token: a clear message, non-zero exit, nothing changed
    proc = e2e.agent("enroll", "--server", e2e.server.url, "--token", "rse_nope0000_xxxxxxxxxxxxxxxxxxxxxxxx",
                     "--install-dir", str(e2e.install_dir), "--force", check=3)
    assert "refused the enrollment token" in proc.stderr and "unknown token" in proc.stderr
    assert json.loads((e2e.state_dir / "enrollment.json").read_text())["installation_id"] == second


def test_operator_rollback_and_status(e2e):
    e2e.publish("app", "1.0")
    e2e.enroll()
    e2e.agent("update", "--yes", check=0)
    e2e.publish("app", "1.1")
    e2e.agent("update", "--yes", check=0)
    assert e2e.running_version() == "1.1"

    status = e2e.status()
    assert status["components"]["app"]["installed"] == "1.1"
    assert status["enrollment"]["installation_id"] == e2e.installation_id
    assert status["last_check_ok"] is True
    text = e2e.agent("status", check=0).stdout
    assert "app" in text and "1.1" in text and "Pending reports: 0" in text

    out = e2e.agent("rollback", "--component", "app", check=0).stdout
    assert "rolled back from 1.1 to 1.0" in out
    assert e2e.running_version() == "1.0"
    back = [r for r in e2e.reports() if r["outcome"] == "operator_rollback"]
    assert back and back[0]["from_version"] == "1.1" and back[0]["to_version"] == "1.0"
    assert e2e.installation()["versions"]["app"] == "1.0"

    # nothing older to go back to
    proc = e2e.agent("rollback", "--component", "app", check=1)
    assert "no previous release" in proc.stderr


def test_keeps_the_last_three_releases(e2e):
    e2e.publish("app", "1.0")
    e2e.enroll()
    for version in ("1.0", "1.1", "1.2", "1.3"):
        if version != "1.0":
            e2e.publish("app", version)
        e2e.agent("update", "--yes", check=0)
    assert sorted(os.listdir(e2e.install_dir / "app" / "releases")) == ["1.1", "1.2", "1.3"]
