"""Local-disk blob storage: the embedded default.

Objects live under one root folder. Every write goes to a temporary file in
``<root>/.tmp`` (same filesystem), is flushed, and is renamed into place, so a reader
never sees half an object and a crash leaves at most a stray temporary file.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO

from ..errors import StorageError
from ..private_files import private_dirs
from .base import (CHUNK, BlobNotFoundError, BlobStorage, HashingReader, InsufficientStorageError, PartialWrite,
                   StoredBlob, StoredObject, blob_key_for, check_key, is_no_space)


class LocalStorage(BlobStorage):
    name = "local"

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.tmp = self.root / ".tmp"
        private_dirs(self.root)
        private_dirs(self.tmp)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _install(self, tmp_path: str, key: str) -> None:
        dest = self._path(key)
        if not dest.parent.is_dir():
            private_dirs(dest.parent)
        os.replace(tmp_path, dest)

    def put_stream(self, stream: BinaryIO, *, max_size: int | None = None) -> StoredBlob:
        reader = HashingReader(stream, max_size)
        fd, tmp_path = tempfile.mkstemp(dir=self.tmp)
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := reader.read(CHUNK):
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            digest = reader.hash.hexdigest()
            key = blob_key_for(digest)
            self._install(tmp_path, key)
        except BaseException as e:
            _unlink_quietly(tmp_path)
            if is_no_space(e):
                raise InsufficientStorageError("the object") from e
            raise
        return StoredBlob(key, digest, reader.size)

    def adopts_files_from(self, directory: str | Path) -> bool:
        """Same file system as the objects (a folder not made yet: the one it will be made in)."""
        path = Path(directory).absolute()
        while not path.exists() and path != path.parent:
            path = path.parent
        try:
            return os.stat(path).st_dev == os.stat(self.tmp).st_dev
        except OSError:
            return False

    def put_file(self, path: Path, *, sha256: str, size: int, move: bool = False) -> StoredBlob:
        key = blob_key_for(sha256)
        existing = self._path(key)
        if existing.exists():
            # fresh again: the sweep of unreferenced blobs keeps it through its grace period
            os.utime(existing)
            if move:
                _unlink_quietly(str(path))
            return StoredBlob(key, sha256, size)
        tmp_path = None
        try:
            if move and os.stat(path).st_dev == os.stat(self.tmp).st_dev:
                self._install(str(path), key)
            else:
                fd, tmp_path = tempfile.mkstemp(dir=self.tmp)
                with os.fdopen(fd, "wb") as out, open(path, "rb") as src:
                    shutil.copyfileobj(src, out, CHUNK)
                    out.flush()
                    os.fsync(out.fileno())
                self._install(tmp_path, key)
                tmp_path = None
                if move:
                    _unlink_quietly(str(path))
        except OSError as e:
            if tmp_path is not None:
                _unlink_quietly(tmp_path)
            if is_no_space(e):
                raise InsufficientStorageError("the object") from e
            raise StorageError(f"cannot store blob: {e}") from e
        return StoredBlob(key, sha256, size)

    def write(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> None:
        fd, tmp_path = tempfile.mkstemp(dir=self.tmp)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            self._install(tmp_path, key)
        except BaseException as e:
            _unlink_quietly(tmp_path)
            if is_no_space(e):
                raise InsufficientStorageError(f"object {key!r}") from e
            raise

    def read(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise BlobNotFoundError(key) from None

    def iter_chunks(self, key: str, chunk_size: int = CHUNK, start: int = 0) -> Iterator[bytes]:
        try:
            fh = open(self._path(key), "rb")
        except FileNotFoundError:
            raise BlobNotFoundError(key) from None

        def gen() -> Iterator[bytes]:
            with fh:
                fh.seek(start)
                while chunk := fh.read(chunk_size):
                    yield chunk

        return gen()

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def size(self, key: str) -> int:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            raise BlobNotFoundError(key) from None

    def delete(self, key: str) -> None:
        _unlink_quietly(str(self._path(key)))

    def list(self, prefix: str = "") -> Iterator[str]:
        keys = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            rel = os.path.relpath(dirpath, self.root)
            if rel == ".tmp" or rel.startswith(".tmp" + os.sep):
                dirnames[:] = []
                continue
            for name in filenames:
                key = name if rel == "." else f"{rel.replace(os.sep, '/')}/{name}"
                if key.startswith(prefix):
                    keys.append(key)
        return iter(sorted(keys))

    def scan(self, prefix: str = "") -> Iterator[StoredObject]:
        for dirpath, dirnames, filenames in os.walk(self.root):
            rel = os.path.relpath(dirpath, self.root)
            if rel == ".tmp" or rel.startswith(".tmp" + os.sep):
                dirnames[:] = []
                continue
            for name in filenames:
                key = name if rel == "." else f"{rel.replace(os.sep, '/')}/{name}"
                if not key.startswith(prefix):
                    continue
                try:
                    st = os.stat(os.path.join(dirpath, name))
                except FileNotFoundError:
                    continue
                yield StoredObject(key, st.st_size, _utc(st.st_mtime))

    def partial_writes(self, older_than: datetime) -> Iterator[PartialWrite]:
        cutoff = older_than.timestamp()
        try:
            entries = list(os.scandir(self.tmp))
        except FileNotFoundError:
            return
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if entry.is_file(follow_symlinks=False) and st.st_mtime < cutoff:
                yield PartialWrite(entry.name, st.st_size, _utc(st.st_mtime))

    def remove_partial(self, ref: str) -> None:
        if "/" in ref or ref in ("", ".", ".."):
            raise StorageError(f"not a partial write: {ref!r}")
        _unlink_quietly(str(self.tmp / ref))

    def local_path(self, key: str) -> Path | None:
        path = self._path(key)
        return path if path.is_file() else None


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=timezone.utc)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
