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
from pathlib import Path
from typing import BinaryIO

from ..errors import StorageError
from ..private_files import private_dirs
from .base import CHUNK, BlobNotFoundError, BlobStorage, HashingReader, StoredBlob, blob_key_for, check_key


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
        except BaseException:
            _unlink_quietly(tmp_path)
            raise
        return StoredBlob(key, digest, reader.size)

    def put_file(self, path: Path, *, sha256: str, size: int, move: bool = False) -> StoredBlob:
        key = blob_key_for(sha256)
        if self._path(key).exists():
            if move:
                _unlink_quietly(str(path))
            return StoredBlob(key, sha256, size)
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
                if move:
                    _unlink_quietly(str(path))
        except OSError as e:
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
        except BaseException:
            _unlink_quietly(tmp_path)
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

    def local_path(self, key: str) -> Path | None:
        path = self._path(key)
        return path if path.is_file() else None


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
