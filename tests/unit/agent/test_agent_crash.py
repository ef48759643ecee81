"""Crash safety: the installer is SIGKILLed at every step, then recovered.

Hook steps are interrupted by the hook killing its parent (the installer);
the other steps use the installer's CLIENT_AGENT_CRASH_AT fault-injection point.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

from client_agent.installer import CRASH_ENV, Installer, read_installed
from client_agent.journal import STEPS, SWITCHED_STEPS, read_journal

APP = "app"
CHILD = Path(__file__).with_name("_crash_child.py")
HOOK_STEPS = {"pre_install", "post_install", "health_check"}
KILL_PARENT = "kill -9 $PPID"
# Steps after which `current` already points at the new release when the crash hits.
NEW_IS_CURRENT = {"post_install", "health_check", "committed"}


def run_child(dirs: tuple[Path, Path], artifact: Path, from_version: str | None, to_version: str,
              crash_at: str | None = None) -> subprocess.CompletedProcess[str]:
    state_dir, install_dir = dirs
    env = dict(os.environ)
    env.pop(CRASH_ENV, None)
    if crash_at is not None:
        env[CRASH_ENV] = crash_at
    return subprocess.run(
        [sys.executable, str(CHILD), str(state_dir), str(install_dir), str(artifact), APP,
         from_version or "-", to_version],
        env=env, capture_output=True, text=True, timeout=60,
    )


def hooks_for(step: str, marks: Path) -> dict[str, str]:
    hooks = {name: "true" for name in HOOK_STEPS}
    if step in HOOK_STEPS:
        hooks[step] = KILL_PARENT
    hooks["rollback"] = f'echo "rollback $UPDATE_FROM_VERSION->$UPDATE_TO_VERSION" >> {marks}'
    return hooks


def current_of(install_dir: Path) -> str:
    return Path(os.readlink(install_dir / APP / "current")).name


@pytest.mark.parametrize("step", STEPS)
def test_crash_at_every_step_is_recoverable(step: str, installer: Installer,
                                            dirs: tuple[Path, Path], tmp_path: Path,
                                            make_artifact: Callable[..., Path],
                                            check_release: Callable[[Path, str], None]) -> None:
    state_dir, install_dir = dirs
    marks = tmp_path / "marks.log"
    assert installer.install(make_artifact("1.0"), APP, None, "1.0").outcome == "success"

    artifact = make_artifact("2.0", hooks_for(step, marks))
    proc = run_child(dirs, artifact, "1.0", "2.0",
                     crash_at=None if step in HOOK_STEPS else step)
    assert proc.returncode == -signal.SIGKILL, proc.stderr

    # Right after the crash: a journal names the step, and `current` is a complete release.
    journal = read_journal(state_dir)
    assert journal is not None and journal.step == step
    expected_now = "2.0" if step in NEW_IS_CURRENT else "1.0"
    assert current_of(install_dir) == expected_now
    check_release(install_dir / APP / "current", expected_now)

    outcome = installer.recover()
    assert outcome is not None and outcome.report_id == journal.report_id
    assert read_journal(state_dir) is None
    assert installer.recover() is None
    releases = sorted(os.listdir(install_dir / APP / "releases"))
    if step == "committed":
        assert (outcome.outcome, outcome.error_code) == ("success", None)
        assert current_of(install_dir) == "2.0"
        assert read_installed(state_dir) == {APP: "2.0"}
        assert releases == ["1.0", "2.0"]
    else:
        assert (outcome.outcome, outcome.error_code, outcome.failed_stage) == (
            "rolled_back", "interrupted", step)
        assert current_of(install_dir) == "1.0"
        check_release(install_dir / APP / "current", "1.0")
        assert read_installed(state_dir) == {APP: "1.0"}
        assert releases == ["1.0"]  # new release and any partial extraction are gone
    ran_rollback = marks.exists() and marks.read_text() == "rollback 1.0->2.0\n"
    assert ran_rollback == (step in SWITCHED_STEPS)
    assert sorted(os.listdir(install_dir / APP)) == ["current", "releases"]

    # The recovered installation is consistent: the update can simply be retried.
    if step != "committed":
        retry = installer.install(make_artifact("2.0"), APP, "1.0", "2.0")
        assert retry.outcome == "success"
        check_release(install_dir / APP / "current", "2.0")


def test_crash_during_first_install_after_switch(installer: Installer, dirs: tuple[Path, Path],
                                                 tmp_path: Path,
                                                 make_artifact: Callable[..., Path]) -> None:
    state_dir, install_dir = dirs
    marks = tmp_path / "marks.log"
    artifact = make_artifact("1.0", hooks_for("health_check", marks))
    proc = run_child(dirs, artifact, None, "1.0")
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    outcome = installer.recover()
    assert outcome is not None
    assert (outcome.outcome, outcome.error_code) == ("failed", "interrupted")
    assert not os.path.lexists(install_dir / APP / "current")
    assert os.listdir(install_dir / APP / "releases") == []
    assert marks.read_text() == "rollback ->1.0\n"
    assert read_installed(state_dir) == {}


def test_uninterrupted_child_install_succeeds(dirs: tuple[Path, Path],
                                              make_artifact: Callable[..., Path]) -> None:
    proc = run_child(dirs, make_artifact("1.0"), None, "1.0")
    assert proc.returncode == 0, proc.stderr
    assert '"outcome": "success"' in proc.stdout


def test_crash_right_after_switch_is_undone(installer: Installer, dirs: tuple[Path, Path],
                                            tmp_path: Path, make_artifact: Callable[..., Path],
                                            check_release: Callable[[Path, str], None]) -> None:
    """Journal says "switched" but the link was already replaced when the crash hit."""
    state_dir, install_dir = dirs
    marks = tmp_path / "marks.log"
    installer.install(make_artifact("1.0"), APP, None, "1.0")
    proc = run_child(dirs, make_artifact("2.0", hooks_for("switched", marks)), "1.0", "2.0",
                     crash_at="switched")
    assert proc.returncode == -signal.SIGKILL
    os.replace(install_dir / APP / "current", tmp_path / "old-link")
    os.symlink("releases/2.0", install_dir / APP / "current")
    check_release(install_dir / APP / "current", "2.0")
    outcome = installer.recover()
    assert outcome is not None and (outcome.outcome, outcome.error_code) == (
        "rolled_back", "interrupted")
    assert current_of(install_dir) == "1.0"
    assert marks.read_text() == "rollback 1.0->2.0\n"
    assert read_installed(state_dir) == {APP: "1.0"}


def test_recover_removes_partial_extraction(installer: Installer, dirs: tuple[Path, Path],
                                            make_artifact: Callable[..., Path]) -> None:
    state_dir, install_dir = dirs
    installer.install(make_artifact("1.0"), APP, None, "1.0")
    proc = run_child(dirs, make_artifact("2.0"), "1.0", "2.0", crash_at="extracted")
    assert proc.returncode == -signal.SIGKILL
    partial = install_dir / APP / "releases" / ".2.0.partial-abc123"
    (partial / "bin").mkdir(parents=True)
    (partial / "bin" / "half-written").write_bytes(b"\0" * 10)
    outcome = installer.recover()
    assert outcome is not None and outcome.error_code == "interrupted"
    assert os.listdir(install_dir / APP / "releases") == ["1.0"]
