"""Receiving uploads: hash while the request body is being written to disk.

Werkzeug's multipart parser asks the request for a file to write each uploaded part
into. :class:`UploadRequest` hands it a :class:`HashingSpoolFile`: a temporary file in
the upload folder (on the same filesystem as local blob storage) that updates a
SHA-256 and a byte count on every write and refuses to grow past the artifact limit.
Once parsed, the file's hash and size are known without reading it again, and local
storage can adopt it with a rename. Files not adopted are removed when the request ends.

When the disk fills up while a part is being received, the spool file is removed at
once and the rest of the part is read and discarded, so the client gets its answer
(507, from :meth:`HashingSpoolFile.finish`) instead of a dropped connection, and
nothing is left behind.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from typing import IO, Any

from flask import Request, current_app
from werkzeug.exceptions import RequestEntityTooLarge

from .storage import InsufficientStorageError, is_no_space


class HashingSpoolFile:
    """A temporary file that hashes what is written to it."""

    def __init__(self, directory: str, max_size: int) -> None:
        self._hash = hashlib.sha256()
        self.size = 0
        self.max_size = max_size
        self.claimed = False
        #: set when the file system filled up: the part is being discarded
        self.out_of_space: OSError | None = None
        try:
            os.makedirs(directory, exist_ok=True)
            fd, self.name = tempfile.mkstemp(dir=directory, prefix="upload-")
        except OSError as e:
            if not is_no_space(e):
                raise
            self.name = ""
            self._fh: IO[bytes] = open(os.devnull, "w+b")
            self.out_of_space = e
            return
        self._fh = os.fdopen(fd, "w+b")

    def write(self, data: bytes) -> int:
        self.size += len(data)
        if self.size > self.max_size:
            raise RequestEntityTooLarge(f"artifact larger than the limit of {self.max_size} bytes")
        if self.out_of_space is not None:
            return len(data)
        self._hash.update(data)
        try:
            return self._fh.write(data)
        except OSError as e:
            if not is_no_space(e):
                raise
            self._discard(e)
            return len(data)

    def _discard(self, error: OSError) -> None:
        """The disk is full: free what was written and swallow the rest of the part."""
        self.out_of_space = error
        try:
            self._fh.close()
        except OSError:
            pass  # the buffered bytes that did not fit cannot be flushed either
        self._unlink()
        self._fh = open(os.devnull, "w+b")

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def finish(self) -> None:
        """Flush to disk before the file is adopted by storage; 507 when the disk filled up."""
        if self.out_of_space is None:
            try:
                self._fh.flush()
                os.fsync(self._fh.fileno())
            except OSError as e:
                if not is_no_space(e):
                    raise
                self._discard(e)
        if self.out_of_space is not None:
            raise InsufficientStorageError("the uploaded file") from self.out_of_space

    def read(self, n: int = -1) -> bytes:
        return self._fh.read(n)

    def seek(self, offset: int, whence: int = 0) -> int:
        try:
            return self._fh.seek(offset, whence)  # flushes what is buffered
        except OSError as e:
            if not is_no_space(e):
                raise
            self._discard(e)
            return self._fh.seek(offset, whence)

    def tell(self) -> int:
        return self._fh.tell()

    def flush(self) -> None:
        try:
            self._fh.flush()
        except OSError as e:
            if not is_no_space(e):
                raise
            self._discard(e)

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
            try:
                self._fh.close()
            except OSError:
                pass  # a full disk refusing the last buffered bytes; the file goes anyway
        if not self.claimed:
            self._unlink()

    def _unlink(self) -> None:
        if self.name:
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
