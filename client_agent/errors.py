"""Error hierarchy of the client agent.

Every error the agent raises on purpose derives from ``AgentError`` and carries
the data needed to describe it (member names, hook names, exit codes, ...), so
callers can report failures without parsing messages.
"""

from __future__ import annotations

from pathlib import Path


class AgentError(Exception):
    """Root of all errors raised deliberately by the client agent."""


class ManifestError(AgentError):
    """The release manifest (``update.toml``) is malformed."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"invalid manifest field {field!r}: {reason}")
        self.field = field
        self.reason = reason


class ArchiveError(AgentError):
    """The artifact cannot be read as a supported archive (corrupt, unknown format, ...)."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"cannot extract {str(path)!r}: {reason}")
        self.path = str(path)
        self.reason = reason


class UnsafeArchiveError(AgentError):
    """The archive contains a member that must not be extracted, or exceeds a limit."""

    def __init__(self, member: str, reason: str) -> None:
        super().__init__(f"unsafe archive member {member!r}: {reason}")
        self.member = member
        self.reason = reason


class HookFailedError(AgentError):
    """A hook command exited with a non-zero status (or could not be started)."""

    def __init__(self, hook: str, exit_code: int, output_tail: str) -> None:
        super().__init__(f"hook {hook!r} failed with exit code {exit_code}")
        self.hook = hook
        self.exit_code = exit_code
        self.output_tail = output_tail


class HookTimeoutError(AgentError):
    """A hook command ran longer than its timeout and was killed."""

    def __init__(self, hook: str, timeout: float, output_tail: str) -> None:
        super().__init__(f"hook {hook!r} timed out after {timeout:g}s")
        self.hook = hook
        self.timeout = timeout
        self.output_tail = output_tail


class AlreadyRunningError(AgentError):
    """Another agent process holds the instance lock."""

    def __init__(self, lock_path: Path | str, pid: int | None) -> None:
        holder = f"pid {pid}" if pid is not None else "an unknown process"
        super().__init__(f"another agent ({holder}) holds the lock {str(lock_path)!r}")
        self.lock_path = str(lock_path)
        self.pid = pid


class StateError(AgentError):
    """A file in the agent state directory is unreadable or malformed."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"bad state file {str(path)!r}: {reason}")
        self.path = str(path)
        self.reason = reason


class InvalidNameError(AgentError):
    """A component name or version is not usable as a directory name."""

    def __init__(self, kind: str, value: str) -> None:
        super().__init__(f"invalid {kind} {value!r}")
        self.kind = kind
        self.value = value


class InstallConflictError(AgentError):
    """An installation cannot start because the on-disk state is not what the caller expects."""

    def __init__(self, component: str, reason: str) -> None:
        super().__init__(f"cannot install {component!r}: {reason}")
        self.component = component
        self.reason = reason


class NoPreviousReleaseError(AgentError):
    """An operator rollback was requested but there is no release to go back to."""

    def __init__(self, component: str) -> None:
        super().__init__(f"component {component!r} has no previous release on disk")
        self.component = component
