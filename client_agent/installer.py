"""Installing, rolling back and recovering component releases.

On-disk layout for a component ``C`` under the install directory::

    <install_dir>/C/releases/<version>/   one directory per extracted release
    <install_dir>/C/current               symlink -> releases/<version>

An installation runs the steps ``downloaded -> extracted -> pre_install ->
switched -> post_install -> health_check -> committed``. Before each step the
journal (see ``journal.py``) is rewritten, so after a crash ``recover`` knows
whether to discard the new release (crash before the switch), undo the switch
(crash after the switch but before the commit) or just finish the commit.
A failure after the switch points ``current`` back at the previous release and
runs the new release's ``rollback`` hook. The rollback hook always sees the
update being undone: UPDATE_FROM_VERSION is the release returned to and
UPDATE_TO_VERSION the release being left.

The state directory also holds ``installed.json`` ({component: version}) and
``history.json`` ({component: [versions, oldest first]}), the order in which
releases were committed, used to find the "previous" release and to prune.

Callers must hold the agent's ``InstanceLock`` while using an ``Installer``.

Fault injection: if the environment variable ``CLIENT_AGENT_CRASH_AT`` names a
step, the installer kills itself with SIGKILL right after writing the journal
for that step. It exists only for crash-safety tests; never set it otherwise.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import time
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal, Sequence

from client_agent.errors import (
    AgentError,
    ArchiveError,
    HookFailedError,
    HookTimeoutError,
    InstallConflictError,
    InvalidNameError,
    ManifestError,
    NoPreviousReleaseError,
    StateError,
    UnsafeArchiveError,
)
from client_agent.fsutil import (
    atomic_symlink_switch,
    atomic_write_json,
    fsync_dir,
    make_private_dir,
    read_json,
    read_link,
)
from client_agent.hooks import HOOK_LOG_NAME, OUTPUT_TAIL_BYTES, HookContext, OutputTail, run_hook
from client_agent.journal import (
    SWITCHED_STEPS,
    Journal,
    Step,
    clear_journal,
    read_journal,
    write_journal,
)
from client_agent.outbox import Outbox
from client_agent.package import (
    DEFAULT_MAX_MEMBERS,
    DEFAULT_MAX_TOTAL_BYTES,
    Manifest,
    extract_archive,
    load_manifest,
)

CRASH_ENV = "CLIENT_AGENT_CRASH_AT"
INSTALLED_NAME = "installed.json"
HISTORY_NAME = "history.json"
INTERRUPTED = "interrupted"

Outcome = Literal["success", "rolled_back", "failed", "operator_rollback"]

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")


def check_name(kind: str, value: str) -> str:
    """Component names and versions become directory names: allow a safe subset only."""
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value) or value in (".", ".."):
        raise InvalidNameError(kind, str(value))
    return value


# --------------------------------------------------------------------------- state files


def read_installed(state_dir: Path | str) -> dict[str, str]:
    """The committed version of each component."""
    data = read_json(Path(state_dir) / INSTALLED_NAME, default={})
    if not isinstance(data, dict):
        raise StateError(Path(state_dir) / INSTALLED_NAME, "expected a JSON object")
    return {str(k): str(v) for k, v in data.items()}


def set_installed(state_dir: Path | str, component: str, version: str | None) -> None:
    """Record ``version`` as the committed version of ``component`` (None forgets it)."""
    installed = read_installed(state_dir)
    if version is None:
        installed.pop(component, None)
    else:
        installed[component] = version
    atomic_write_json(Path(state_dir) / INSTALLED_NAME, installed)


def read_history(state_dir: Path | str) -> dict[str, list[str]]:
    """Committed releases of each component, oldest first."""
    data = read_json(Path(state_dir) / HISTORY_NAME, default={})
    if not isinstance(data, dict):
        raise StateError(Path(state_dir) / HISTORY_NAME, "expected a JSON object")
    return {str(k): [str(v) for v in vs] for k, vs in data.items() if isinstance(vs, list)}


def _write_history(state_dir: Path, component: str, versions: list[str]) -> None:
    history = read_history(state_dir)
    history[component] = versions
    atomic_write_json(state_dir / HISTORY_NAME, history)


# --------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class ComponentLayout:
    """Paths of one component's releases and ``current`` link."""

    install_dir: Path
    component: str

    @property
    def root(self) -> Path:
        return self.install_dir / self.component

    @property
    def releases(self) -> Path:
        return self.root / "releases"

    @property
    def current_link(self) -> Path:
        return self.root / "current"

    def release_dir(self, version: str) -> Path:
        return self.releases / check_name("version", version)

    @staticmethod
    def link_target(version: str) -> str:
        return f"releases/{version}"

    def current_version(self) -> str | None:
        """Version the ``current`` link points at, or None if there is no link."""
        target = read_link(self.current_link)
        return None if target is None else PurePosixPath(target).name

    def release_versions(self) -> list[str]:
        """Names of the complete release directories (hidden temporaries excluded)."""
        try:
            entries = list(os.scandir(self.releases))
        except FileNotFoundError:
            return []
        return sorted(e.name for e in entries
                      if _NAME_RE.fullmatch(e.name) and e.is_dir(follow_symlinks=False))


# --------------------------------------------------------------------------- results


@dataclass
class InstallerConfig:
    """Settings of the installer.

    state_dir:        private agent state directory (journal, installed versions, hook log).
    install_dir:      where components are installed (``<install_dir>/<component>/...``).
    keep_releases:    releases kept on disk per component (current and previous always kept).
    max_total_bytes:  largest total size an artifact may expand to.
    max_members:      largest number of entries an artifact may contain.
    log_tail_bytes:   how much hook output is kept for the report.
    hook_kill_grace:  seconds between SIGTERM and SIGKILL when a hook times out.
    """

    state_dir: Path
    install_dir: Path
    keep_releases: int = 3
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES
    max_members: int = DEFAULT_MAX_MEMBERS
    log_tail_bytes: int = OUTPUT_TAIL_BYTES
    hook_kill_grace: float = 3.0


@dataclass(frozen=True)
class InstallOutcome:
    """Result of an installation, recovery or rollback, ready to be reported.

    outcome: "success"; "rolled_back" (the update did not happen, the previous
    release is running); or "failed" (nothing is left running properly: there
    was no previous release, or undoing the update failed).
    """

    report_id: str
    component: str
    from_version: str | None
    to_version: str
    outcome: Outcome
    failed_stage: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    duration: float = 0.0
    log_tail: str = ""

    def to_report(self) -> dict[str, Any]:
        return {
            "id": self.report_id,
            "component": self.component,
            "from_version": self.from_version,
            "to_version": self.to_version,
            "outcome": self.outcome,
            "failed_stage": self.failed_stage,
            "error_code": self.error_code,
            "error_message": self.error_message,
            "duration": round(self.duration, 3),
            "log_tail": self.log_tail,
        }


# --------------------------------------------------------------------------- pure decisions


def error_code_for(exc: BaseException, stage: str) -> str:
    """Short, stable error code for a failure of ``stage``."""
    if isinstance(exc, UnsafeArchiveError):
        return "unsafe_archive"
    if isinstance(exc, ArchiveError):
        return "extract_failed"
    if isinstance(exc, ManifestError):
        return "invalid_manifest"
    if isinstance(exc, HookTimeoutError):
        return "hook_timeout"
    if isinstance(exc, HookFailedError):
        return "health_check_failed" if exc.hook == "health_check" else "hook_failed"
    if stage == "extracted":
        return "extract_failed"
    if stage == "switched":
        return "switch_failed"
    return "io_error"


@dataclass(frozen=True)
class RecoveryPlan:
    """What to do about an interrupted installation, in the order of the fields."""

    finish_commit: bool = False        # commit was recorded: finish it (state, pruning)
    switch_back: bool = False          # point `current` at the old release again
    remove_current: bool = False       # no old release to return to: drop `current`
    run_rollback_hook: bool = False    # run the new release's rollback hook
    discard_new_release: bool = False  # delete the new release and partial extractions
    outcome: Outcome = "rolled_back"   # what is reported if every action succeeds


def plan_recovery(journal: Journal, *, current_version: str | None,
                  old_release_exists: bool) -> RecoveryPlan:
    """Decide how to recover from a journal left at ``journal.step``.

    Before the switch the new release is discarded and the old one stays.
    From the switch up to the commit the update is undone: back to the old
    release (or no release on a first install) and the rollback hook runs.
    Once the commit is recorded, the commit is simply finished.
    """
    if journal.step == "committed":
        return RecoveryPlan(finish_commit=True, outcome="success")
    if journal.step in SWITCHED_STEPS or current_version == journal.to_version:
        if old_release_exists:
            return RecoveryPlan(switch_back=current_version != journal.from_version,
                                run_rollback_hook=True, discard_new_release=True,
                                outcome="rolled_back")
        return RecoveryPlan(remove_current=current_version == journal.to_version,
                            run_rollback_hook=True, discard_new_release=True, outcome="failed")
    return RecoveryPlan(discard_new_release=True,
                        outcome="rolled_back" if current_version is not None else "failed")


def select_releases_to_prune(oldest_first: Sequence[str], *, current: str | None,
                             previous: str | None, keep: int) -> list[str]:
    """Releases to delete: all but the newest ``keep``, never ``current`` or ``previous``."""
    kept = set(oldest_first[-keep:]) if keep > 0 else set()
    kept |= {v for v in (current, previous) if v is not None}
    return [v for v in oldest_first if v not in kept]


def previous_release(committed: Sequence[str], oldest_first: Sequence[str],
                     current: str | None) -> str | None:
    """The release to go back to from ``current``.

    ``committed`` is the commit history (oldest first) of releases still on
    disk, ``oldest_first`` every release on disk. When ``current`` is in the
    history, the previous release is the newest other committed one, so
    releases that were rolled back from are never returned to. Otherwise
    (history unknown) it is the newest other release on disk.
    """
    candidates = committed if current in committed else oldest_first
    for version in reversed(candidates):
        if version != current:
            return version
    return None


# --------------------------------------------------------------------------- installer


class _Run:
    """Bookkeeping of one installation / recovery: journal, hook output, timing."""

    def __init__(self, installer: Installer, journal: Journal) -> None:
        self.installer = installer
        self.journal = journal
        self.tail = OutputTail(installer.config.log_tail_bytes)

    def enter(self, step: Step) -> None:
        self.journal = self.journal.at(step)
        write_journal(self.installer.config.state_dir, self.journal)
        if os.environ.get(CRASH_ENV) == step:  # fault-injection point, see module docstring
            os.kill(os.getpid(), signal.SIGKILL)

    def hook(self, manifest: Manifest, name: str, ctx: HookContext) -> None:
        spec = manifest.hook(name)
        if spec is None:
            return
        config = self.installer.config
        result = run_hook(spec, ctx, log_path=config.state_dir / HOOK_LOG_NAME,
                          tail_bytes=config.log_tail_bytes, kill_grace=config.hook_kill_grace)
        status = "timed out" if result.timed_out else f"exit code {result.exit_code}"
        self.tail.write(f"--- hook {name} ({status}) ---\n{result.output_tail}".encode())
        result.raise_for_failure()

    def finish(self, outcome: Outcome, *, stage: str | None = None, code: str | None = None,
               message: str | None = None, keep_journal: bool = False) -> InstallOutcome:
        """Build the outcome, queue its report, then drop the journal.

        ``keep_journal`` leaves the journal in place when an undo could not be
        completed, so that ``recover`` tries again at the next start.
        """
        j = self.journal
        result = InstallOutcome(
            report_id=j.report_id, component=j.component, from_version=j.from_version,
            to_version=j.to_version, outcome=outcome, failed_stage=stage, error_code=code,
            error_message=message, duration=max(0.0, time.time() - j.started_at),
            log_tail=self.tail.text(),
        )
        if self.installer.outbox is not None:
            self.installer.outbox.add(result.to_report())
        if not keep_journal:
            clear_journal(self.installer.config.state_dir)
        return result


class Installer:
    """Installs verified artifacts, rolls back, and recovers after crashes.

    If an ``outbox`` is given, every outcome's report is queued in it before
    the journal is removed, so no outcome can be lost to a crash.
    """

    def __init__(self, config: InstallerConfig, outbox: Outbox | None = None) -> None:
        self.config = config
        self.outbox = outbox

    def layout(self, component: str) -> ComponentLayout:
        return ComponentLayout(self.config.install_dir, check_name("component", component))

    def install(self, artifact: Path | str, component: str, from_version: str | None,
                to_version: str, *, report_id: str | None = None) -> InstallOutcome:
        """Install ``artifact`` (downloaded and verified) as ``to_version`` of ``component``.

        ``from_version`` must be the version ``current`` points at (None if
        none). Raises ``InstallConflictError`` before touching anything if that
        is not so, or if an interrupted installation still awaits ``recover``.
        """
        layout = self.layout(component)
        check_name("version", to_version)
        state_dir = make_private_dir(self.config.state_dir)
        if read_journal(state_dir) is not None:
            raise InstallConflictError(component, "an interrupted installation must be recovered first")
        actual = layout.current_version()
        if actual != from_version:
            raise InstallConflictError(component, f"current version is {actual!r}, not {from_version!r}")
        if actual == to_version:
            raise InstallConflictError(component, f"version {to_version!r} is already current")

        run = _Run(self, Journal.start(component, from_version, to_version, report_id))
        run.enter("downloaded")
        new_dir = layout.release_dir(to_version)
        ctx = HookContext(component, from_version, to_version, new_dir, self.config.install_dir)
        try:
            run.enter("extracted")
            _remove_release(new_dir)  # a stale copy left by an earlier attempt
            extract_archive(artifact, new_dir, max_total_bytes=self.config.max_total_bytes,
                            max_members=self.config.max_members)
            manifest = load_manifest(new_dir)
            run.enter("pre_install")
            run.hook(manifest, "pre_install", ctx)
        except (AgentError, OSError) as exc:
            self._discard(layout, to_version)
            return run.finish("rolled_back" if actual is not None else "failed",
                              stage=run.journal.step, code=error_code_for(exc, run.journal.step),
                              message=str(exc))
        try:
            run.enter("switched")
            atomic_symlink_switch(layout.current_link, layout.link_target(to_version))
            run.enter("post_install")
            run.hook(manifest, "post_install", ctx)
            run.enter("health_check")
            run.hook(manifest, "health_check", ctx)
        except (AgentError, OSError) as exc:
            stage = run.journal.step
            old_exists = from_version is not None and layout.release_dir(from_version).is_dir()
            plan = plan_recovery(run.journal, current_version=layout.current_version(),
                                 old_release_exists=old_exists)
            undo_error, undone = self._execute_undo(run, layout, plan, manifest)
            message = str(exc) if undo_error is None else f"{exc}; undo failed: {undo_error}"
            return run.finish(plan.outcome if undo_error is None else "failed", stage=stage,
                              code=error_code_for(exc, stage), message=message,
                              keep_journal=not undone)
        run.enter("committed")
        self._commit(layout, from_version, to_version)
        return run.finish("success")

    def recover(self) -> InstallOutcome | None:
        """Finish or undo an installation interrupted by a crash; None if there was none.

        The outcome carries error_code "interrupted" unless the commit had
        already been recorded, in which case the installation is completed.
        """
        journal = read_journal(self.config.state_dir)
        if journal is None:
            return None
        layout = self.layout(journal.component)
        run = _Run(self, journal)
        old_exists = (journal.from_version is not None
                      and layout.release_dir(journal.from_version).is_dir())
        plan = plan_recovery(journal, current_version=layout.current_version(),
                             old_release_exists=old_exists)
        if plan.finish_commit:
            self._commit(layout, journal.from_version, journal.to_version)
            return run.finish("success")
        manifest = Manifest()
        if plan.run_rollback_hook:
            try:
                manifest = load_manifest(layout.release_dir(journal.to_version))
            except (ManifestError, OSError):
                pass  # the release never became runnable far enough to need undoing
        undo_error, undone = self._execute_undo(run, layout, plan, manifest)
        message = f"installation interrupted at step {journal.step!r}"
        if undo_error is not None:
            message += f"; undo failed: {undo_error}"
        return run.finish(plan.outcome if undo_error is None else "failed",
                          stage=journal.step, code=INTERRUPTED, message=message,
                          keep_journal=not undone)

    def rollback_to_previous(self, component: str) -> InstallOutcome:
        """Operator rollback: switch ``current`` to the previous release on disk.

        The rollback hook of the release being left is run afterwards. The
        outcome reports from_version = release left, to_version = release now current.
        """
        layout = self.layout(component)
        state_dir = make_private_dir(self.config.state_dir)
        if read_journal(state_dir) is not None:
            raise InstallConflictError(component, "an interrupted installation must be recovered first")
        current = layout.current_version()
        previous = self._previous(layout, self._ordered_releases(layout), current)
        if current is None or previous is None:
            raise NoPreviousReleaseError(component)
        run = _Run(self, Journal.start(component, current, previous))
        atomic_symlink_switch(layout.current_link, layout.link_target(previous))
        set_installed(state_dir, component, previous)
        history = [v for v in read_history(state_dir).get(component, []) if v != current]
        _write_history(state_dir, component, history)
        left_dir = layout.release_dir(current)
        ctx = HookContext(component, previous, current, left_dir, self.config.install_dir)
        outcome: Outcome = "operator_rollback"  # on purpose: not a failed update
        stage = code = message = None
        try:
            run.hook(load_manifest(left_dir), "rollback", ctx)
        except (AgentError, OSError) as exc:
            outcome, stage, code, message = "failed", "rollback", error_code_for(exc, "rollback"), str(exc)
        result = InstallOutcome(run.journal.report_id, component, current, previous, outcome,
                                stage, code, message, time.time() - run.journal.started_at,
                                run.tail.text())
        if self.outbox is not None:
            self.outbox.add(result.to_report())
        return result

    def prune(self, component: str) -> list[str]:
        """Delete old releases beyond ``keep_releases`` and leftover temporaries; return deleted versions."""
        layout = self.layout(component)
        ordered = self._ordered_releases(layout)
        current = layout.current_version()
        doomed = select_releases_to_prune(ordered, current=current,
                                          previous=self._previous(layout, ordered, current),
                                          keep=self.config.keep_releases)
        for version in doomed:
            _remove_release(layout.release_dir(version))
        for leftover in (_hidden_entries(layout.releases)
                         + _hidden_entries(layout.root, prefix=".current.")):
            _remove_path(leftover)
        history = read_history(self.config.state_dir).get(component, [])
        on_disk = set(layout.release_versions())
        _write_history(self.config.state_dir, component, [v for v in history if v in on_disk])
        return doomed

    # ---------------------------------------------------------------- internals

    def _ordered_releases(self, layout: ComponentLayout) -> list[str]:
        """Releases on disk, oldest first: unknown to the history (by mtime), then by history."""
        on_disk = layout.release_versions()
        history = [v for v in read_history(self.config.state_dir).get(layout.component, [])
                   if v in on_disk]
        unknown = sorted((v for v in on_disk if v not in history),
                         key=lambda v: (layout.release_dir(v).stat().st_mtime, v))
        return unknown + history

    def _previous(self, layout: ComponentLayout, ordered: list[str],
                  current: str | None) -> str | None:
        committed = [v for v in read_history(self.config.state_dir).get(layout.component, [])
                     if v in ordered]
        return previous_release(committed, ordered, current)

    def _commit(self, layout: ComponentLayout, from_version: str | None, to_version: str) -> None:
        state_dir = self.config.state_dir
        set_installed(state_dir, layout.component, to_version)
        history = [v for v in read_history(state_dir).get(layout.component, [])
                   if v not in (from_version, to_version)]
        if from_version is not None:
            history.append(from_version)
        _write_history(state_dir, layout.component, history + [to_version])
        self.prune(layout.component)

    def _execute_undo(self, run: _Run, layout: ComponentLayout, plan: RecoveryPlan,
                      manifest: Manifest) -> tuple[str | None, bool]:
        """Carry out the undo part of ``plan``.

        Returns (error message or None, whether the undo ran to its end). A
        failing rollback hook is an error, but the undo still completes; an
        I/O error leaves it unfinished.
        """
        j = run.journal
        try:
            if plan.switch_back and j.from_version is not None:
                atomic_symlink_switch(layout.current_link, layout.link_target(j.from_version))
            if plan.remove_current and layout.current_version() == j.to_version:
                os.unlink(layout.current_link)
                fsync_dir(layout.root)
            error = None
            if plan.run_rollback_hook and layout.release_dir(j.to_version).is_dir():
                ctx = HookContext(j.component, j.from_version, j.to_version,
                                  layout.release_dir(j.to_version), self.config.install_dir)
                try:
                    run.hook(manifest, "rollback", ctx)
                except AgentError as exc:
                    error = str(exc)
            if plan.discard_new_release:
                self._discard(layout, j.to_version)
            return error, True
        except OSError as exc:
            return str(exc), False

    @staticmethod
    def _discard(layout: ComponentLayout, version: str) -> None:
        """Delete a release that never became (or no longer is) current, and partial extractions."""
        if layout.current_version() != version:
            _remove_release(layout.release_dir(version))
        for leftover in _hidden_entries(layout.releases, prefix=f".{version}."):
            _remove_path(leftover)


def recover(state_dir: Path | str, install_dir: Path | str,
            outbox: Outbox | None = None) -> InstallOutcome | None:
    """Convenience wrapper around ``Installer.recover`` with default settings."""
    return Installer(InstallerConfig(Path(state_dir), Path(install_dir)), outbox).recover()


def _hidden_entries(directory: Path, prefix: str = ".") -> list[Path]:
    try:
        return [directory / n for n in os.listdir(directory) if n.startswith(prefix)]
    except FileNotFoundError:
        return []


def _remove_release(path: Path) -> None:
    """Delete a release directory; it is first renamed to a hidden name so a
    half-deleted tree is never mistaken for a release."""
    if not path.exists() and not path.is_symlink():
        return
    trash = path.with_name(f".{path.name}.trash-{uuid.uuid4().hex}")
    os.rename(path, trash)
    fsync_dir(path.parent)
    _remove_path(trash)


def _remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
