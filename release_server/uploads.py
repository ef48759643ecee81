"""Receiving uploads: hash while the request body is being written to disk.

Werkzeug's multipart parser asks the request for a file to write each uploaded part
into. :class:`UploadRequest` hands it a :class:`HashingSpoolFile`: a temporary file in
the upload folder (on the same filesystem as local blob storage) that updates a
SHA-256 and a byte count on every write and refuses to grow past the artifact limit.
Once parsed, the file's hash and size are known without reading it again, and local
storage can adopt it with a rename. Files not adopted are removed when the request ends.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from typing import IO, Any

from flask import Request, current_app
from werkzeug.exceptions import RequestEntityTooLarge


class HashingSpoolFile:
    """A temporary file that hashes what is written to it."""

    def __init__(self, directory: str, max_size: int) -> None:
        if not os.path.isdir(directory):
            from .private_files import private_dirs

            private_dirs(directory)
        fd, self.name = tempfile.mkstemp(dir=directory, prefix="upload-")
        self._fh: IO[bytes] = os.fdopen(fd, "w+b")
        self._hash = hashlib.sha256()
        self.size = 0
        self.max_size = max_size
        self.claimed = False

    def write(self, data: bytes) -> int:
        self.size += len(data)
        if self.size > self.max_size:
            raise RequestEntityTooLarge(f"artifact larger than the limit of {self.max_size} bytes")
        self._hash.update(data)
        return self._fh.write(data)

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def finish(self) -> None:
        """Flush to disk before the file is adopted by storage."""
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def read(self, n: int = -1) -> bytes:
        return self._fh.read(n)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._fh.seek(offset, whence)

    def tell(self) -> int:
        return self._fh.tell()

    def flush(self) -> None:
        self._fh.flush()

    def fileno(self) -> int:
        return self._fh.fileno()

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()
        if not self.claimed:
            try:
                os.unlink(self.name)
            except FileNotFoundError:
                pass

    def __getattr__(self, item: str) -> Any:
        return getattr(self._fh, item)


class UploadRequest(Request):
    """Request whose file parts are written to :class:`HashingSpoolFile` objects.

    Every spool file it hands out is closed (and, unless adopted, removed) when the
    request ends, including ones abandoned by a parse that failed half-way (413).
    """

    def _get_file_stream(self, total_content_length: int | None, content_type: str | None,
                         filename: str | None = None, content_length: int | None = None) -> IO[bytes]:
        cfg = current_app.config
        spool = HashingSpoolFile(cfg["UPLOAD_TMP_DIR"], cfg["MAX_ARTIFACT_SIZE"])
        self.__dict__.setdefault("_spools", []).append(spool)
        return spool  # type: ignore[return-value]

    def close(self) -> None:
        try:
            super().close()
        finally:
            for spool in self.__dict__.pop("_spools", []):
                spool.close()
