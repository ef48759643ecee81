"""CLI behaviour that needs no server: messages and exit codes for each refusal."""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from client_agent import cli
from client_agent.config import AgentConfig, Enrollment, StateDir
from client_agent.fsutil import InstanceLock


@pytest.fixture
def enrolled(tmp_path: Path) -> StateDir:
    state = StateDir(tmp_path / "state")
    state.save_config(AgentConfig(server_url="http://127.0.0.1:9", install_dir=str(tmp_path / "install"),
                                  request_timeout=2, self_update=False))
    state.save_enrollment(Enrollment(installation_id="inst-1", token="rsi_x", customer="Acme", channel="stable",
                                     tuf_metadata_url="http://127.0.0.1:9/tuf/metadata/",
                                     tuf_targets_url="http://127.0.0.1:9/tuf/targets/", root_json=None))
    return state


def run(capsys, *args) -> tuple[int, str, str]:
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_not_enrolled(tmp_path, capsys):
    for command in ("status", "check", "update", "run", "rollback --component app"):
        code, _, err = run(capsys, "--state-dir", str(tmp_path / "nothing"), *command.split())
        assert code == cli.EXIT_ENROLLMENT, command
        assert "not enrolled" in err and "client-agent enroll" in err


def test_enroll_refuses_an_enrolled_folder_without_contacting_the_server(enrolled, capsys):
    code, _, err = run(capsys, "--state-dir", str(enrolled.path), "enroll", "--server", "http://127.0.0.1:9",
                       "--token", "rse_x", "--install-dir", "/opt/app")
    assert code == cli.EXIT_ENROLLMENT and "already enrolled as installation inst-1" in err and "--force" in err


def test_enroll_validates_its_arguments(tmp_path, capsys):
    code, _, err = run(capsys, "enroll", "--state-dir", str(tmp_path / "s"), "--server", "ftp://x", "--token",
                       "rse_x", "--install-dir", "/opt/app")
    assert code == cli.EXIT_USAGE and "server_url" in err
    assert not (tmp_path / "s").exists()


def test_unreachable_server_is_a_clear_transient_error(enrolled, capsys):
    code, _, err = run(capsys, "--state-dir", str(enrolled.path), "check")
    assert code == cli.EXIT_UNAVAILABLE and "server unavailable" in err
    status = json.loads(enrolled.status_file.read_text())
    assert status["last_check_ok"] is False


def test_a_second_agent_is_refused(enrolled, capsys):
    with InstanceLock(enrolled.lock_file):
        code, _, err = run(capsys, "--state-dir", str(enrolled.path), "update", "--yes")
    assert code == cli.EXIT_LOCKED and "another agent" in err


def test_status_and_state_folder_permissions(enrolled, capsys):
    code, out, _ = run(capsys, "status", "--state-dir", str(enrolled.path), "--json")
    assert code == 0
    data = json.loads(out)
    assert data["enrollment"]["installation_id"] == "inst-1"
    assert data["enrollment"]["trusted_root"] is False
    assert data["pending_reports"] == [] and data["interrupted_installation"] is None
    assert stat.S_IMODE(os.stat(enrolled.path).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(enrolled.enrollment_file).st_mode) == 0o600


def test_rollback_without_a_previous_release(enrolled, capsys):
    code, _, err = run(capsys, "--state-dir", str(enrolled.path), "rollback", "--component", "app")
    assert code == cli.EXIT_FAILED and "no previous release" in err


def test_bad_config_file(enrolled, capsys):
    enrolled.config_file.write_text(json.dumps({"server_url": "http://x", "install_dir": "/opt", "colour": 1}))
    code, _, err = run(capsys, "--state-dir", str(enrolled.path), "status")
    assert code == cli.EXIT_USAGE and "colour" in err
