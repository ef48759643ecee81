"""Running release lifecycle hooks (pre_install, post_install, health_check, rollback).

A hook runs in its own process group with the release directory as working
directory and ``UPDATE_*`` variables describing the update in its environment.
Its combined stdout/stderr is streamed: only the last ``tail_bytes`` are kept
in memory (for the report) while the full output is appended to a hook log
file in the state directory. When the timeout passes, the whole process group
is sent SIGTERM and, after a short grace period, SIGKILL.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import time
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO, Callable, ContextManager, Mapping

from client_agent.errors import HookFailedError, HookTimeoutError
from client_agent.package import HookSpec

OUTPUT_TAIL_BYTES = 64 * 1024
HOOK_LOG_NAME = "hooks.log"
HOOK_LOG_ROTATE_BYTES = 8 * 1024 * 1024
# Exit code reported when the hook command cannot be started at all (as a shell does).
EXIT_NOT_STARTED = 127
# After the hook's main process exits, keep reading output for at most this long:
# a background child that inherited stdout must not hold the agent hostage.
_DRAIN_SECONDS = 0.5


@dataclass(frozen=True)
class HookContext:
    """Describes the update a hook runs for; exported to the hook as UPDATE_* variables."""

    component: str
    from_version: str | None
    to_version: str
    release_dir: Path
    install_dir: Path


@dataclass(frozen=True)
class HookResult:
    """Outcome of one hook run. ``exit_code`` is negative when killed by a signal."""

    hook: str
    exit_code: int
    duration: float
    output_tail: str
    timed_out: bool
    timeout: float

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    def raise_for_failure(self) -> None:
        """Raise ``HookTimeoutError`` or ``HookFailedError`` unless the hook succeeded."""
        if self.timed_out:
            raise HookTimeoutError(self.hook, self.timeout, self.output_tail)
        if self.exit_code != 0:
            raise HookFailedError(self.hook, self.exit_code, self.output_tail)


def hook_environment(ctx: HookContext, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for a hook: ``base`` (default: the agent's) plus the UPDATE_* variables."""
    env = dict(os.environ if base is None else base)
    env.update(
        UPDATE_COMPONENT=ctx.component,
        UPDATE_FROM_VERSION=ctx.from_version or "",
        UPDATE_TO_VERSION=ctx.to_version,
        UPDATE_RELEASE_DIR=str(ctx.release_dir),
        UPDATE_INSTALL_DIR=str(ctx.install_dir),
    )
    return env


class OutputTail:
    """Keeps the last ``limit`` bytes written to it."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._buf = bytearray()

    def write(self, data: bytes) -> None:
        self._buf += data[-self.limit:]
        if len(self._buf) > self.limit:
            del self._buf[: len(self._buf) - self.limit]

    def text(self) -> str:
        return self._buf.decode("utf-8", errors="replace")


def run_hook(
    spec: HookSpec,
    ctx: HookContext,
    *,
    log_path: Path | None = None,
    tail_bytes: int = OUTPUT_TAIL_BYTES,
    kill_grace: float = 3.0,
) -> HookResult:
    """Run ``spec`` for ``ctx`` and return its result (never raises for hook failures)."""
    tail = OutputTail(tail_bytes)
    started = time.monotonic()
    with _open_log(log_path, spec, ctx) as log:
        def sink(data: bytes) -> None:
            tail.write(data)
            if log is not None:
                log.write(data)

        try:
            proc = subprocess.Popen(
                list(spec.command),
                cwd=ctx.release_dir,
                env=hook_environment(ctx),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            sink(f"cannot start hook command {spec.command[0]!r}: {exc}\n".encode())
            return HookResult(spec.name, EXIT_NOT_STARTED, time.monotonic() - started,
                              tail.text(), False, spec.timeout)
        assert proc.stdout is not None
        deadline = started + spec.timeout
        with proc.stdout:
            timed_out = _pump(proc, proc.stdout.fileno(), deadline, sink)
            if not timed_out:
                # Output is closed, but the process itself may still be running.
                try:
                    proc.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    timed_out = True
            if timed_out:
                _kill_group(proc, kill_grace)
                _pump(proc, proc.stdout.fileno(), time.monotonic() + _DRAIN_SECONDS, sink)
                sink(f"\n[hook {spec.name} killed after {spec.timeout:g}s timeout]\n".encode())
        exit_code = proc.wait()
        if log is not None:
            log.write(f"[hook {spec.name} exit code {exit_code}]\n".encode())
    return HookResult(spec.name, exit_code, time.monotonic() - started, tail.text(),
                      timed_out, spec.timeout)


def _pump(proc: subprocess.Popen[bytes], fd: int, deadline: float,
          sink: Callable[[bytes], None]) -> bool:
    """Stream output to ``sink`` until EOF or the main process is gone; True on timeout."""
    exited_at: float | None = None
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while True:
            now = time.monotonic()
            if exited_at is None and proc.poll() is not None:
                exited_at = now
            if exited_at is not None and now - exited_at > _DRAIN_SECONDS:
                return False
            if now >= deadline:
                return exited_at is None
            for _key, _events in sel.select(min(deadline - now, 0.1)):
                chunk = os.read(fd, 65536)
                if not chunk:
                    return False
                sink(chunk)


def _kill_group(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the hook's process group, then SIGKILL whatever is left after ``grace``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        if sig == signal.SIGTERM:
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass


def _open_log(log_path: Path | None, spec: HookSpec,
              ctx: HookContext) -> ContextManager[BinaryIO | None]:
    if log_path is None:
        return nullcontext(None)
    try:
        if log_path.stat().st_size > HOOK_LOG_ROTATE_BYTES:
            os.replace(log_path, log_path.with_name(log_path.name + ".1"))
    except FileNotFoundError:
        pass
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    log: BinaryIO = os.fdopen(fd, "ab", buffering=0)
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    log.write(
        f"=== {stamp} {ctx.component} {ctx.from_version or '-'} -> {ctx.to_version} "
        f"hook {spec.name}: {' '.join(spec.command)}\n".encode()
    )
    return log
