"""Files of the server are private to the server's user: folders 0700, files 0600.

The instance folder holds the database (with SQLite's WAL and shared-memory files), the
session secret, the online signing keys, blobs and uploads in progress; nothing there is
for other local users. Folders are created 0700 level by level (``os.makedirs`` applies
its mode to the last level only) and files are created 0600; ``secure_instance`` also
mends the modes of an instance created before.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

DIR_MODE = 0o700
FILE_MODE = 0o600


def _own(path: Path) -> bool:
    try:
        return path.stat().st_uid == os.geteuid()
    except FileNotFoundError:
        return False


def private_dirs(path: str | os.PathLike) -> Path:
    """Create ``path`` and its missing parents with mode 0700; an existing ``path`` of ours is set to 0700."""
    target = Path(path)
    missing: list[Path] = []
    current = target
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, DIR_MODE)
        except FileExistsError:
            pass
    if _own(target) and stat.S_IMODE(target.stat().st_mode) != DIR_MODE:
        os.chmod(target, DIR_MODE)
    return target


def private_file(path: str | os.PathLike, *, create: bool = False) -> Path:
    """Set an existing file of ours to 0600; with ``create``, create it empty (0600) when missing."""
    target = Path(path)
    if create:
        try:
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE))
        except FileExistsError:
            pass
    if _own(target) and not target.is_symlink() and stat.S_IMODE(target.stat().st_mode) != FILE_MODE:
        os.chmod(target, FILE_MODE)
    return target


def sqlite_path(url: str) -> Path | None:
    """The database file of a ``sqlite:///`` URL (None for other databases and in-memory ones)."""
    if not url.startswith("sqlite:///"):
        return None
    raw = url[len("sqlite:///"):].split("?", 1)[0]
    if not raw or raw == ":memory:":
        return None
    return Path(raw)


def secure_instance(config: dict[str, Any], instance: str | os.PathLike) -> None:
    """Make the instance folder and the server's files in it private, before anything is written there.

    The SQLite database file is created 0600 before the first connection: SQLite gives the
    WAL and shared-memory files the database file's mode.
    """
    folder = private_dirs(instance)
    for name in ("secret_key", "config.toml"):
        if (folder / name).exists():
            private_file(folder / name)
    db_file = sqlite_path(str(config.get("DATABASE_URL") or ""))
    if db_file is not None:
        if not db_file.parent.exists():
            private_dirs(db_file.parent)
        private_file(db_file, create=True)
        for suffix in ("-wal", "-shm", "-journal"):
            side = db_file.with_name(db_file.name + suffix)
            if side.exists():
                private_file(side)
    if config.get("STORAGE_BACKEND") == "local" and config.get("STORAGE_PATH"):
        private_dirs(config["STORAGE_PATH"])
    if config.get("UPLOAD_TMP_DIR"):
        private_dirs(config["UPLOAD_TMP_DIR"])
    keys = Path(config.get("TUF_KEY_DIR") or folder / "keys")
    if keys.exists():
        private_dirs(keys)
        for entry in keys.iterdir():
            if entry.is_file():
                private_file(entry)
