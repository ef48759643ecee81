"""Hook execution: environment, output tail, log file, timeouts."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from client_agent.errors import HookFailedError, HookTimeoutError
from client_agent.hooks import EXIT_NOT_STARTED, OUTPUT_TAIL_BYTES, HookContext, run_hook
from client_agent.package import HookSpec


@pytest.fixture
def ctx(tmp_path: Path) -> HookContext:
    release = tmp_path / "install" / "app" / "releases" / "2.0"
    release.mkdir(parents=True)
    return HookContext("app", "1.0", "2.0", release, tmp_path / "install")


def sh(name: str, script: str, timeout: float = 10) -> HookSpec:
    return HookSpec(name, ("sh", "-c", script), timeout)


def test_environment_and_cwd(ctx: HookContext, tmp_path: Path) -> None:
    script = ('echo "$UPDATE_COMPONENT|$UPDATE_FROM_VERSION|$UPDATE_TO_VERSION|'
              '$UPDATE_RELEASE_DIR|$UPDATE_INSTALL_DIR|$(pwd -P)"')
    result = run_hook(sh("post_install", script), ctx, log_path=tmp_path / "hooks.log")
    assert result.ok and result.exit_code == 0 and not result.timed_out
    release = str(ctx.release_dir)
    assert result.output_tail.strip() == (
        f"app|1.0|2.0|{release}|{ctx.install_dir}|{os.path.realpath(release)}"
    )
    result.raise_for_failure()


def test_first_install_has_empty_from_version(ctx: HookContext) -> None:
    first = HookContext("app", None, "2.0", ctx.release_dir, ctx.install_dir)
    result = run_hook(sh("pre_install", 'printf "[%s]" "$UPDATE_FROM_VERSION"'), first)
    assert result.output_tail == "[]"


def test_failure_captures_stderr_and_raises(ctx: HookContext) -> None:
    result = run_hook(sh("pre_install", "echo out; echo err >&2; exit 3"), ctx)
    assert result.exit_code == 3 and not result.ok
    assert "out" in result.output_tail and "err" in result.output_tail
    with pytest.raises(HookFailedError) as info:
        result.raise_for_failure()
    assert info.value.hook == "pre_install" and info.value.exit_code == 3
    assert "err" in info.value.output_tail


def test_command_that_cannot_start(ctx: HookContext) -> None:
    result = run_hook(HookSpec("pre_install", ("./does-not-exist",), 5), ctx)
    assert result.exit_code == EXIT_NOT_STARTED
    assert "does-not-exist" in result.output_tail


def test_output_tail_is_bounded_and_log_has_everything(ctx: HookContext, tmp_path: Path) -> None:
    log = tmp_path / "hooks.log"
    # ~300 KiB of numbered lines, then an end marker.
    script = 'i=0; while [ $i -lt 20000 ]; do echo "line $i ............"; i=$((i+1)); done; echo END'
    result = run_hook(sh("post_install", script), ctx, log_path=log)
    assert result.ok
    assert len(result.output_tail.encode()) == OUTPUT_TAIL_BYTES
    assert result.output_tail.endswith("END\n")
    assert "line 0 ." not in result.output_tail
    text = log.read_text()
    assert "line 0 ." in text and "line 19999 " in text and "END" in text
    assert "hook post_install" in text
    assert (log.stat().st_mode & 0o777) == 0o600


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_timeout_kills_whole_process_group(ctx: HookContext, tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    script = f"sleep 60 & echo $! > {pidfile}; echo started; wait"
    started = time.monotonic()
    result = run_hook(sh("health_check", script, timeout=0.5), ctx, kill_grace=0.5)
    assert time.monotonic() - started < 10
    assert result.timed_out and not result.ok
    assert "started" in result.output_tail
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child), "background child of the hook survived the timeout"
    with pytest.raises(HookTimeoutError) as info:
        result.raise_for_failure()
    assert info.value.hook == "health_check" and info.value.timeout == 0.5


def test_timeout_when_output_is_closed_early(ctx: HookContext) -> None:
    result = run_hook(sh("health_check", "exec >/dev/null 2>&1; sleep 60", timeout=0.5), ctx,
                      kill_grace=0.2)
    assert result.timed_out


def test_term_ignoring_hook_is_killed(ctx: HookContext) -> None:
    script = "trap '' TERM; echo ready; while :; do sleep 0.1; done"
    started = time.monotonic()
    result = run_hook(sh("health_check", script, timeout=0.5), ctx, kill_grace=0.3)
    assert result.timed_out and time.monotonic() - started < 5


def test_background_process_holding_output_does_not_block(ctx: HookContext,
                                                          tmp_path: Path) -> None:
    pidfile = tmp_path / "daemon.pid"
    started = time.monotonic()
    result = run_hook(sh("post_install", f"sleep 30 & echo $! > {pidfile}; echo done",
                         timeout=20), ctx)
    os.kill(int(pidfile.read_text()), 9)
    assert result.ok and "done" in result.output_tail
    assert time.monotonic() - started < 5
