"""Installer: success, failures and rollback, pruning, operator rollback, recovery planning."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import pytest

from client_agent.errors import InstallConflictError, InvalidNameError, NoPreviousReleaseError
from client_agent.installer import (
    ComponentLayout,
    Installer,
    InstallerConfig,
    RecoveryPlan,
    plan_recovery,
    previous_release,
    read_history,
    read_installed,
    select_releases_to_prune,
    set_installed,
)
from client_agent.journal import STEPS, Journal, read_journal, write_journal
from client_agent.outbox import Outbox

APP = "app"


def layout(install_dir: Path) -> ComponentLayout:
    return ComponentLayout(install_dir, APP)


def releases_on_disk(install_dir: Path) -> list[str]:
    return sorted(os.listdir(install_dir / APP / "releases"))


@pytest.fixture
def marks(tmp_path: Path) -> Path:
    """File the test hooks append to, outside any release."""
    return tmp_path / "marks.log"


def marker(marks: Path, label: str) -> str:
    return f'echo "{label} $UPDATE_FROM_VERSION->$UPDATE_TO_VERSION $(basename $PWD)" >> {marks}'


def read_marks(marks: Path) -> list[str]:
    return marks.read_text().splitlines() if marks.exists() else []


def test_install_and_upgrade_success(installer: Installer, make_artifact: Callable[..., Path],
                                     dirs: tuple[Path, Path], marks: Path,
                                     check_release: Callable[[Path, str], None]) -> None:
    state_dir, install_dir = dirs
    hooks = {name: marker(marks, name) for name in ("pre_install", "post_install", "health_check")}
    first = installer.install(make_artifact("1.0", hooks), APP, None, "1.0")
    assert first.outcome == "success" and first.error_code is None and first.failed_stage is None
    second = installer.install(make_artifact("2.0", hooks, fmt="zip"), APP, "1.0", "2.0")
    assert second.outcome == "success"
    assert os.readlink(install_dir / APP / "current") == "releases/2.0"
    check_release(install_dir / APP / "current", "2.0")
    check_release(install_dir / APP / "releases" / "1.0", "1.0")
    assert read_installed(state_dir) == {APP: "2.0"}
    assert read_history(state_dir) == {APP: ["1.0", "2.0"]}
    assert read_journal(state_dir) is None
    assert read_marks(marks) == [
        "pre_install ->1.0 1.0", "post_install ->1.0 1.0", "health_check ->1.0 1.0",
        "pre_install 1.0->2.0 2.0", "post_install 1.0->2.0 2.0", "health_check 1.0->2.0 2.0",
    ]
    assert "--- hook health_check (exit code 0) ---" in second.log_tail
    assert (state_dir.stat().st_mode & 0o777) == 0o700
    assert "hook pre_install" in (state_dir / "hooks.log").read_text()
    assert second.to_report()["id"] == second.report_id


def test_health_check_failure_rolls_back(installer: Installer, make_artifact: Callable[..., Path],
                                         dirs: tuple[Path, Path], marks: Path,
                                         check_release: Callable[[Path, str], None]) -> None:
    state_dir, install_dir = dirs
    installer.install(make_artifact("1.0"), APP, None, "1.0")
    bad = make_artifact("2.0", {"health_check": "echo unhealthy; exit 1",
                                "rollback": marker(marks, "rollback")})
    result = installer.install(bad, APP, "1.0", "2.0")
    assert result.outcome == "rolled_back"
    assert (result.failed_stage, result.error_code) == ("health_check", "health_check_failed")
    assert "unhealthy" in result.log_tail
    assert os.readlink(install_dir / APP / "current") == "releases/1.0"
    check_release(install_dir / APP / "current", "1.0")
    assert read_marks(marks) == ["rollback 1.0->2.0 2.0"]
    assert releases_on_disk(install_dir) == ["1.0"]
    assert read_installed(state_dir) == {APP: "1.0"}
    assert read_journal(state_dir) is None


def test_pre_install_failure_leaves_old_untouched(installer: Installer,
                                                  make_artifact: Callable[..., Path],
                                                  dirs: tuple[Path, Path], marks: Path,
                                                  check_release: Callable[[Path, str], None]) -> None:
    state_dir, install_dir = dirs
    installer.install(make_artifact("1.0"), APP, None, "1.0")
    bad = make_artifact("2.0", {"pre_install": "exit 7", "rollback": marker(marks, "rollback")})
    result = installer.install(bad, APP, "1.0", "2.0")
    assert (result.outcome, result.failed_stage, result.error_code) == (
        "rolled_back", "pre_install", "hook_failed")
    assert "exit code 7" in (result.error_message or "")
    assert os.readlink(install_dir / APP / "current") == "releases/1.0"
    check_release(install_dir / APP / "current", "1.0")
    assert releases_on_disk(install_dir) == ["1.0"]
    assert read_marks(marks) == []  # nothing was switched, so nothing to roll back
    assert read_installed(state_dir) == {APP: "1.0"}


def test_first_install_failing_health_check_is_failed(installer: Installer,
                                                      make_artifact: Callable[..., Path],
                                                      dirs: tuple[Path, Path], marks: Path) -> None:
    state_dir, install_dir = dirs
    bad = make_artifact("1.0", {"health_check": "exit 1", "rollback": marker(marks, "rollback")})
    result = installer.install(bad, APP, None, "1.0")
    assert (result.outcome, result.failed_stage, result.error_code) == (
        "failed", "health_check", "health_check_failed")
    assert not os.path.lexists(install_dir / APP / "current")
    assert releases_on_disk(install_dir) == []
    assert read_marks(marks) == ["rollback ->1.0 1.0"]
    assert read_installed(state_dir) == {}
    # A later attempt starts from a clean slate.
    assert installer.install(make_artifact("1.0"), APP, None, "1.0").outcome == "success"


def test_failing_rollback_hook_makes_outcome_failed(installer: Installer,
                                                    make_artifact: Callable[..., Path],
                                                    dirs: tuple[Path, Path]) -> None:
    _, install_dir = dirs
    installer.install(make_artifact("1.0"), APP, None, "1.0")
    bad = make_artifact("2.0", {"post_install": "exit 1", "rollback": "exit 2"})
    result = installer.install(bad, APP, "1.0", "2.0")
    assert (result.outcome, result.failed_stage, result.error_code) == (
        "failed", "post_install", "hook_failed")
    assert "undo failed" in (result.error_message or "")
    assert os.readlink(install_dir / APP / "current") == "releases/1.0"


def test_hook_timeout(installer: Installer, make_artifact: Callable[..., Path],
                      dirs: tuple[Path, Path]) -> None:
    installer.install(make_artifact("1.0"), APP, None, "1.0")
    slow = make_artifact("2.0", {"post_install": "sleep 30"}, timeout=0.3)
    result = installer.install(slow, APP, "1.0", "2.0")
    assert (result.outcome, result.failed_stage, result.error_code) == (
        "rolled_back", "post_install", "hook_timeout")


def test_unsafe_corrupt_and_bad_manifest_artifacts(installer: Installer, tmp_path: Path,
                                                   make_artifact: Callable[..., Path],
                                                   dirs: tuple[Path, Path]) -> None:
    import io
    import tarfile

    _, install_dir = dirs
    installer.install(make_artifact("1.0"), APP, None, "1.0")
    evil = tmp_path / "evil.tgz"
    with tarfile.open(evil, "w:gz") as tar:
        info = tarfile.TarInfo("../escape")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    junk = tmp_path / "junk.tgz"
    junk.write_bytes(b"\x1f\x8b" + b"garbage" * 100)
    manifest = tmp_path / "manifest.tgz"
    with tarfile.open(manifest, "w:gz") as tar:
        data = b"[hooks.pre_instal]\ncommand = 'true'\n"
        info = tarfile.TarInfo("update.toml")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    expected = {evil: "unsafe_archive", junk: "extract_failed", manifest: "invalid_manifest",
                tmp_path / "missing.tgz": "extract_failed"}
    for artifact, code in expected.items():
        result = installer.install(artifact, APP, "1.0", "2.0")
        assert (result.outcome, result.failed_stage, result.error_code) == (
            "rolled_back", "extracted", code), artifact
        assert releases_on_disk(install_dir) == ["1.0"]
        assert os.readlink(install_dir / APP / "current") == "releases/1.0"


def test_pruning_keeps_three_releases(installer: Installer, make_artifact: Callable[..., Path],
                                      dirs: tuple[Path, Path]) -> None:
    state_dir, install_dir = dirs
    previous = None
    for n in range(1, 6):
        version = f"{n}.0"
        assert installer.install(make_artifact(version), APP, previous, version).outcome == "success"
        previous = version
        assert releases_on_disk(install_dir) == [f"{m}.0" for m in range(max(1, n - 2), n + 1)]
    assert read_history(state_dir) == {APP: ["3.0", "4.0", "5.0"]}


def test_pruning_never_removes_current_or_previous(dirs: tuple[Path, Path],
                                                   make_artifact: Callable[..., Path]) -> None:
    state_dir, install_dir = dirs
    installer = Installer(InstallerConfig(state_dir, install_dir, keep_releases=0))
    installer.install(make_artifact("1.0"), APP, None, "1.0")
    installer.install(make_artifact("2.0"), APP, "1.0", "2.0")
    installer.install(make_artifact("3.0"), APP, "2.0", "3.0")
    assert releases_on_disk(install_dir) == ["2.0", "3.0"]


def test_operator_rollback_walks_back_history(installer: Installer, marks: Path,
                                              make_artifact: Callable[..., Path],
                                              dirs: tuple[Path, Path],
                                              check_release: Callable[[Path, str], None]) -> None:
    state_dir, install_dir = dirs
    previous = None
    for version in ("1.0", "2.0", "3.0"):
        installer.install(make_artifact(version, {"rollback": marker(marks, "rollback")}),
                          APP, previous, version)
        previous = version
    result = installer.rollback_to_previous(APP)
    assert (result.outcome, result.from_version, result.to_version) == ("operator_rollback", "3.0", "2.0")
    check_release(install_dir / APP / "current", "2.0")
    assert read_installed(state_dir) == {APP: "2.0"}
    assert installer.rollback_to_previous(APP).to_version == "1.0"
    assert read_marks(marks) == ["rollback 2.0->3.0 3.0", "rollback 1.0->2.0 2.0"]
    with pytest.raises(NoPreviousReleaseError):
        installer.rollback_to_previous(APP)
    # Installing again from the rolled-back state works and prunes abandoned releases first.
    installer.install(make_artifact("4.0"), APP, "1.0", "4.0")
    assert releases_on_disk(install_dir) == ["1.0", "3.0", "4.0"]
    assert installer.rollback_to_previous(APP).to_version == "1.0"


def test_outcomes_are_queued_in_outbox(dirs: tuple[Path, Path],
                                       make_artifact: Callable[..., Path]) -> None:
    state_dir, install_dir = dirs
    outbox = Outbox(state_dir / "outbox")
    installer = Installer(InstallerConfig(state_dir, install_dir), outbox)
    result = installer.install(make_artifact("1.0"), APP, None, "1.0", report_id=None)
    [entry] = outbox.pending()
    assert entry.id == result.report_id and entry.report["outcome"] == "success"
    assert entry.report["to_version"] == "1.0"


def test_install_conflicts(installer: Installer, make_artifact: Callable[..., Path],
                           dirs: tuple[Path, Path]) -> None:
    state_dir, _ = dirs
    artifact = make_artifact("1.0")
    with pytest.raises(InstallConflictError):
        installer.install(artifact, APP, "0.9", "1.0")
    installer.install(artifact, APP, None, "1.0")
    with pytest.raises(InstallConflictError):
        installer.install(artifact, APP, "1.0", "1.0")
    write_journal(state_dir, Journal.start(APP, "1.0", "2.0"))
    with pytest.raises(InstallConflictError):
        installer.install(make_artifact("2.0"), APP, "1.0", "2.0")
    for component, version in (("../etc", "1"), (APP, "../x"), (APP, ".hidden"), (APP, "")):
        with pytest.raises(InvalidNameError):
            installer.install(artifact, component, "1.0", version)


def test_installed_state_helpers(tmp_path: Path) -> None:
    assert read_installed(tmp_path) == {}
    set_installed(tmp_path, "a", "1")
    set_installed(tmp_path, "b", "2")
    set_installed(tmp_path, "a", None)
    assert read_installed(tmp_path) == {"b": "2"}
    assert json.loads((tmp_path / "installed.json").read_text()) == {"b": "2"}


# ---------------------------------------------------------------- pure decisions


def _journal(step: str, from_version: str | None = "1.0") -> Journal:
    return Journal.start(APP, from_version, "2.0").at(step)  # type: ignore[arg-type]


@pytest.mark.parametrize("step", ["downloaded", "extracted", "pre_install"])
def test_plan_before_switch_discards_new(step: str) -> None:
    assert plan_recovery(_journal(step), current_version="1.0", old_release_exists=True) == \
        RecoveryPlan(discard_new_release=True, outcome="rolled_back")
    assert plan_recovery(_journal(step, None), current_version=None,
                         old_release_exists=False).outcome == "failed"


@pytest.mark.parametrize("step", ["switched", "post_install", "health_check"])
def test_plan_after_switch_undoes(step: str) -> None:
    switched = plan_recovery(_journal(step), current_version="2.0", old_release_exists=True)
    assert switched == RecoveryPlan(switch_back=True, run_rollback_hook=True,
                                    discard_new_release=True, outcome="rolled_back")
    not_yet = plan_recovery(_journal(step), current_version="1.0", old_release_exists=True)
    assert not not_yet.switch_back and not_yet.run_rollback_hook
    first = plan_recovery(_journal(step, None), current_version="2.0", old_release_exists=False)
    assert first == RecoveryPlan(remove_current=True, run_rollback_hook=True,
                                 discard_new_release=True, outcome="failed")


def test_plan_after_commit_finishes() -> None:
    plan = plan_recovery(_journal("committed"), current_version="2.0", old_release_exists=True)
    assert plan == RecoveryPlan(finish_commit=True, outcome="success")


def test_plan_covers_every_step() -> None:
    for step in STEPS:
        plan_recovery(_journal(step), current_version="1.0", old_release_exists=True)


def test_prune_selection() -> None:
    releases = ["1", "2", "3", "4", "5"]
    assert select_releases_to_prune(releases, current="5", previous="4", keep=3) == ["1", "2"]
    assert select_releases_to_prune(releases, current="1", previous="2", keep=3) == []
    assert select_releases_to_prune(releases, current="2", previous="1", keep=1) == ["3", "4"]
    assert select_releases_to_prune(releases, current="5", previous=None, keep=0) == \
        ["1", "2", "3", "4"]


def test_previous_release() -> None:
    assert previous_release(["1", "2", "3"], ["x", "1", "2", "3"], "3") == "2"
    assert previous_release(["1"], ["3", "2", "1"], "1") is None
    assert previous_release(["1", "2"], ["1", "2", "9"], "9") == "2"
    assert previous_release([], [], None) is None


def test_unfinished_undo_keeps_journal_for_recovery(installer: Installer,
                                                    make_artifact: Callable[..., Path],
                                                    dirs: tuple[Path, Path], marks: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import client_agent.installer as installer_module

    state_dir, install_dir = dirs
    installer.install(make_artifact("1.0"), APP, None, "1.0")
    real_switch = installer_module.atomic_symlink_switch

    def switch(link: Path, target: str) -> None:
        if target == "releases/1.0":
            raise OSError(28, "No space left on device")
        real_switch(link, target)

    monkeypatch.setattr(installer_module, "atomic_symlink_switch", switch)
    bad = make_artifact("2.0", {"health_check": "exit 1", "rollback": marker(marks, "rollback")})
    result = installer.install(bad, APP, "1.0", "2.0")
    assert result.outcome == "failed" and "No space left" in (result.error_message or "")
    journal = read_journal(state_dir)
    assert journal is not None and journal.report_id == result.report_id

    monkeypatch.setattr(installer_module, "atomic_symlink_switch", real_switch)
    recovered = installer.recover()
    assert recovered is not None and recovered.outcome == "rolled_back"
    assert os.readlink(install_dir / APP / "current") == "releases/1.0"
    assert releases_on_disk(install_dir) == ["1.0"] and read_journal(state_dir) is None
    assert read_marks(marks) == ["rollback 1.0->2.0 2.0"]
