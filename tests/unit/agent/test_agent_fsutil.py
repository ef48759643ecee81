"""Atomic writes, symlink switching, instance lock, private directories."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from client_agent.errors import AlreadyRunningError, StateError
from client_agent.fsutil import (
    InstanceLock,
    atomic_symlink_switch,
    atomic_write_bytes,
    atomic_write_json,
    make_private_dir,
    read_json,
    read_link,
)


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    atomic_write_bytes(path, b"one")
    atomic_write_bytes(path, b"two", mode=0o640)
    assert path.read_bytes() == b"two"
    assert (path.stat().st_mode & 0o777) == 0o640
    assert os.listdir(tmp_path) == ["f.bin"]


def test_json_round_trip_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    assert read_json(path, default={}) == {}
    with pytest.raises(FileNotFoundError):
        read_json(path)
    atomic_write_json(path, {"b": [1, 2], "a": None})
    assert read_json(path) == {"a": None, "b": [1, 2]}
    assert (path.stat().st_mode & 0o777) == 0o600
    path.write_text("{broken")
    with pytest.raises(StateError):
        read_json(path)


def test_symlink_switch(tmp_path: Path) -> None:
    for version in ("1", "2"):
        (tmp_path / "releases" / version).mkdir(parents=True)
        (tmp_path / "releases" / version / "v").write_text(version)
    link = tmp_path / "current"
    atomic_symlink_switch(link, "releases/1")
    assert (link / "v").read_text() == "1"
    inode_before = os.lstat(link).st_ino
    atomic_symlink_switch(link, "releases/2")
    assert read_link(link) == "releases/2" and (link / "v").read_text() == "2"
    assert os.lstat(link).st_ino != inode_before  # replaced, not rewritten in place
    assert sorted(os.listdir(tmp_path)) == ["current", "releases"]
    assert read_link(tmp_path / "missing") is None


def test_symlink_switch_never_leaves_link_missing(tmp_path: Path) -> None:
    """While the link is switched back and forth, a reader always sees a target."""
    for version in ("1", "2"):
        (tmp_path / "releases" / version).mkdir(parents=True)
    link = tmp_path / "current"
    atomic_symlink_switch(link, "releases/1")
    reader = subprocess.Popen(
        [sys.executable, "-c",
         "import os, sys\n"
         "for _ in range(20000):\n"
         "    if not os.path.exists(sys.argv[1]): sys.exit(1)\n",
         str(link)])
    while reader.poll() is None:
        atomic_symlink_switch(link, "releases/2")
        atomic_symlink_switch(link, "releases/1")
    assert reader.returncode == 0


def test_instance_lock(tmp_path: Path) -> None:
    lock_path = tmp_path / "agent.lock"
    with InstanceLock(lock_path) as lock:
        assert lock.held
        with pytest.raises(AlreadyRunningError) as info:
            InstanceLock(lock_path).acquire()
        assert info.value.pid == os.getpid()
        assert str(os.getpid()) in str(info.value)
    with InstanceLock(lock_path):
        pass


def test_instance_lock_across_processes(tmp_path: Path) -> None:
    lock_path = tmp_path / "agent.lock"
    code = ("import sys; from client_agent.fsutil import InstanceLock\n"
            "from client_agent.errors import AlreadyRunningError\n"
            "try:\n    InstanceLock(sys.argv[1]).acquire()\n"
            "except AlreadyRunningError as e:\n    print(e.pid); sys.exit(3)\n")
    with InstanceLock(lock_path):
        proc = subprocess.run([sys.executable, "-c", code, str(lock_path)],
                              capture_output=True, text=True, cwd=Path(__file__).parents[3])
    assert proc.returncode == 3 and proc.stdout.strip() == str(os.getpid())


def test_make_private_dir(tmp_path: Path) -> None:
    path = tmp_path / "a" / "state"
    make_private_dir(path)
    assert (path.stat().st_mode & 0o777) == 0o700
    os.chmod(path, 0o755)
    make_private_dir(path)
    assert (path.stat().st_mode & 0o777) == 0o700
