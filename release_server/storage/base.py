"""The blob storage contract shared by every backend."""
from __future__ import annotations

import abc
import errno
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from ..errors import NotFoundError, PayloadTooLargeError, StorageError, ValidationError

CHUNK = 1024 * 1024

#: Errors that mean "the disk (or the user's quota) is full".
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


class BlobNotFoundError(NotFoundError):
    code = "blob_not_found"

    def __init__(self, key: str) -> None:
        super().__init__(f"no stored object {key!r}")
        self.key = key


class InsufficientStorageError(StorageError):
    """No space left for the object: the client may retry once space has been freed."""

    status = 507
    code = "insufficient_storage"

    def __init__(self, what: str = "the upload", *, field: str | None = None) -> None:
        super().__init__(f"not enough storage space for {what}; nothing was kept, try again later", field=field)


def is_no_space(exc: BaseException) -> bool:
    """True for an OSError that says the file system is full."""
    return isinstance(exc, OSError) and exc.errno in NO_SPACE_ERRNOS


@dataclass(frozen=True)
class StoredObject:
    """One named object as listed by :meth:`BlobStorage.scan`."""

    key: str
    size: int
    modified: datetime  # UTC


@dataclass(frozen=True)
class PartialWrite:
    """Bytes left by a write that never finished (a crash mid-upload), found by :meth:`BlobStorage.partial_writes`.

    ``ref`` identifies it to :meth:`BlobStorage.remove_partial`; ``size`` is what it occupies (0 when unknown).
    """

    ref: str
    size: int
    modified: datetime  # UTC


@dataclass(frozen=True)
class StoredBlob:
    key: str
    sha256: str
    size: int


def blob_key_for(sha256: str) -> str:
    """The content address of a blob with this SHA-256 (hex)."""
    return f"sha256/{sha256[:2]}/{sha256[2:4]}/{sha256}"


def check_key(key: str) -> str:
    if not key or key.startswith("/") or "\\" in key or any(p in ("", ".", "..") for p in key.split("/")):
        raise ValidationError(f"invalid storage key {key!r}", field="key")
    return key


class HashingReader:
    """Wraps a binary stream; hashes and counts what is read, enforcing a size limit."""

    def __init__(self, stream: BinaryIO, max_size: int | None = None) -> None:
        self._stream = stream
        self._max = max_size
        self.hash = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self._stream.read(n)
        self.size += len(data)
        if self._max is not None and self.size > self._max:
            raise PayloadTooLargeError(f"object larger than the limit of {self._max} bytes", field="artifact")
        self.hash.update(data)
        return data


class BlobStorage(abc.ABC):
    """What the rest of the server may ask of storage."""

    #: Human-readable backend name ("local", "s3").
    name: str = "abstract"

    # content-addressed objects
    @abc.abstractmethod
    def put_stream(self, stream: BinaryIO, *, max_size: int | None = None) -> StoredBlob:
        """Store a stream under its SHA-256, hashing while writing; memory stays bounded."""

    @abc.abstractmethod
    def put_file(self, path: Path, *, sha256: str, size: int, move: bool = False) -> StoredBlob:
        """Store a local file whose hash is already known (e.g. computed while receiving it)."""

    def adopts_files_from(self, directory: str | Path) -> bool:
        """True when ``put_file(move=True)`` of a file in ``directory`` keeps it as it is (a rename), never reading it."""
        return False

    # named objects
    @abc.abstractmethod
    def write(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> None:
        """Write (or replace) a small named object atomically."""

    @abc.abstractmethod
    def read(self, key: str) -> bytes:
        """The whole object; raises BlobNotFoundError."""

    @abc.abstractmethod
    def iter_chunks(self, key: str, chunk_size: int = CHUNK, start: int = 0) -> Iterator[bytes]:
        """Stream the object from byte ``start``; raises BlobNotFoundError before yielding."""

    @abc.abstractmethod
    def exists(self, key: str) -> bool: ...

    @abc.abstractmethod
    def size(self, key: str) -> int:
        """Size in bytes; raises BlobNotFoundError."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; removing a missing one is not an error."""

    @abc.abstractmethod
    def list(self, prefix: str = "") -> Iterator[str]:
        """Keys that start with ``prefix``, in lexical order."""

    @abc.abstractmethod
    def scan(self, prefix: str = "") -> Iterator[StoredObject]:
        """Objects whose key starts with ``prefix``, with size and last-modified time, streamed (any order).

        Writes in progress are not listed (see :meth:`partial_writes`).
        """

    @abc.abstractmethod
    def partial_writes(self, older_than: datetime) -> Iterator[PartialWrite]:
        """Leftovers of writes that started before ``older_than`` and never finished."""

    @abc.abstractmethod
    def remove_partial(self, ref: str) -> None:
        """Remove one leftover found by :meth:`partial_writes`; a missing one is not an error."""

    def presigned_url(self, key: str, *, ttl: int, filename: str | None = None) -> str | None:
        """A time-limited URL a client may download from directly, if the backend has one."""
        return None

    def local_path(self, key: str) -> Path | None:
        """The object's path on local disk, if the backend has one (lets the server use sendfile)."""
        return None
