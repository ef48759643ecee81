"""Crash-safe file system primitives used for all persistent agent state.

Every persistent write goes through a temporary file in the same directory,
is fsync'ed, and is moved into place with ``os.replace`` so readers (and a
restarted agent after a crash) only ever see the old or the new content.
This module also provides the atomic ``current`` symlink switch, the
single-instance lock, and creation of private (0700) directories.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import tempfile
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any

from client_agent.errors import AlreadyRunningError, StateError

_MISSING: Any = object()


def fsync_dir(path: Path | str) -> None:
    """Flush a directory entry table to disk so renames inside it are durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path | str, data: bytes, *, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` atomically and durably, with permissions ``mode``."""
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(data)
            tmp.flush()
            os.fchmod(tmp.fileno(), mode)
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(path.parent)


def atomic_write_json(path: Path | str, obj: Any, *, mode: int = 0o600) -> None:
    """Serialise ``obj`` as JSON and write it with :func:`atomic_write_bytes`."""
    data = json.dumps(obj, indent=2, sort_keys=True).encode("utf-8") + b"\n"
    atomic_write_bytes(path, data, mode=mode)


def read_json(path: Path | str, default: Any = _MISSING) -> Any:
    """Load a JSON file; return ``default`` if it does not exist (else raise FileNotFoundError).

    Raises ``StateError`` when the file exists but is not valid JSON.
    """
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        if default is _MISSING:
            raise
        return default
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StateError(path, f"not valid JSON: {exc}") from exc


def atomic_symlink_switch(link_path: Path | str, target: Path | str) -> None:
    """Point the symlink ``link_path`` at ``target`` in one atomic step.

    A temporary symlink is created beside ``link_path`` and renamed over it, so
    at every instant ``link_path`` resolves to either the old or the new target.
    """
    link_path = Path(link_path)
    tmp = link_path.parent / f".{link_path.name}.{uuid.uuid4().hex}.tmp"
    os.symlink(os.fspath(target), tmp)
    try:
        os.replace(tmp, link_path)
    except BaseException:
        os.unlink(tmp)
        raise
    fsync_dir(link_path.parent)


def read_link(link_path: Path | str) -> str | None:
    """Return the target of a symlink, or None if ``link_path`` does not exist."""
    try:
        return os.readlink(link_path)
    except FileNotFoundError:
        return None


def make_private_dir(path: Path | str) -> Path:
    """Create ``path`` (and parents) if needed and make sure it is mode 0700."""
    path = Path(path)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


class InstanceLock:
    """Exclusive, non-blocking ``flock`` on a lock file, usable as a context manager.

    The lock file holds the pid of the owner; it is never deleted (deleting a
    lock file while another process waits on it would let two owners in).
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise ``AlreadyRunningError`` naming the current holder."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_pid(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise AlreadyRunningError(self.path, holder) from exc
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Release the lock if held."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> InstanceLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
