"""Receiving uploads: hash while the request body is being written to disk.

Two ways in. Forms with attachments go through Werkzeug's parser, as below. Publishing
a release reads its body itself with :class:`MultipartReader`: part by part, in
4 MiB blocks taken straight from the connection (:class:`RequestBody`), so the metadata
part can be checked before the artifact is read and the artifact costs little more
than its SHA-256: each block is hashed, written and handed to an inspector (the
archive check) while it is in memory, and the file is written around the page cache
when storage adopts it as it is (see :class:`HashingSpoolFile`), never read back.

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

import collections
import errno
import hashlib
import io
import mmap
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from typing import IO, Any

from flask import Request, current_app
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.http import parse_options_header

from .errors import ValidationError

from .storage import InsufficientStorageError, is_no_space


#: Without ``O_DIRECT``, a spool file written around the page cache hands it back every this many bytes.
CACHE_WINDOW = 8 * 1024 * 1024
#: With ``O_DIRECT``: what file offsets, lengths and memory are aligned to (a multiple of any logical block size).
DIRECT_ALIGN = 4096
#: With ``O_DIRECT``: the staging buffer for bytes that cannot be written from where they are.
DIRECT_CHUNK = 1024 * 1024


class _DirectWriter:
    """Appends to a file with ``O_DIRECT`` (no page cache).

    ``O_DIRECT`` wants the memory, the file offset and the length aligned. The aligned
    middle of a block is written from the caller's memory when that memory sits at the
    same offset modulo :data:`DIRECT_ALIGN` as its place in the file (as
    :class:`MultipartReader` keeps a part's content); the edges, and blocks whose memory
    is not aligned (the kernel says ``EINVAL``; from then on every block), are copied
    into an aligned staging buffer and written from there. The last, partial chunk is
    written through the file's ordinary descriptor by :meth:`close`. If the file system
    writes a direct chunk short, that chunk and the rest go through the ordinary one.

    After :meth:`in_background`, the writes are made by a thread of the writer's own, in
    the order they were given, while the caller goes on receiving: a direct write waits
    for the device, and the next block can be received and hashed meanwhile. The caller
    then keeps each block's memory as it is until the writer's :class:`WriteFence` says
    the block was written; a failed write is raised by the next :meth:`write`, by
    :meth:`settle` or by :meth:`close`.
    """

    def __init__(self, path: str, plain_fd: int) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_DIRECT | os.O_CLOEXEC)
        self._plain = plain_fd
        self._buf = mmap.mmap(-1, DIRECT_CHUNK)  # page-aligned, as O_DIRECT wants its memory
        self._view = memoryview(self._buf)
        self._staged = 0
        self._offset = 0  # where the staged bytes go in the file (aligned while writing directly)
        self._in_place = True  # the caller's memory is aligned as its file offsets are
        self._queue: WriteFence | None = None

    def in_background(self) -> WriteFence:
        """Write from now on in a thread of the writer's own; the fence tells when what was given is written."""
        if self._queue is None:
            self._queue = WriteFence(self._run_job)
        return self._queue

    def write(self, data: memoryview) -> None:
        if self._queue is not None:
            self._queue.raise_error()
        if self._staged and self._in_place and self._fd >= 0:
            n = min(len(data), -self._staged % DIRECT_ALIGN)  # up to the next aligned file offset
            self._stage(data[:n])
            data = data[n:]
            if self._staged % DIRECT_ALIGN == 0:
                self._write_staged()
        if not self._staged and self._in_place and self._fd >= 0:
            whole = len(data) - len(data) % DIRECT_ALIGN
            if whole:
                done = self._write_in_place(data[:whole])
                data = data[done:]
        while data:
            n = min(len(data), DIRECT_CHUNK - self._staged)
            self._stage(data[:n])
            data = data[n:]
            if self._staged == DIRECT_CHUNK:
                self._write_staged()

    def _stage(self, data: memoryview) -> None:
        self._view[self._staged:self._staged + len(data)] = data
        self._staged += len(data)

    def _write_in_place(self, data: memoryview) -> int:
        """Write ``data`` (aligned length, at an aligned offset) from where it is; how much was written."""
        if self._queue is not None:
            self._queue.submit((data, self._offset, None))
            self._offset += len(data)
            return len(data)
        try:
            n = os.pwrite(self._fd, data, self._offset)
        except OSError as e:
            if e.errno != errno.EINVAL:
                raise
            self._in_place = False  # memory the kernel will not take: stage from now on
            return 0
        if n != len(data):  # short: the ordinary descriptor takes the rest of it and of the file
            self._close_direct()
            self._write_plain(data[n:], self._offset + n)
        self._offset += len(data)
        return len(data)

    def _write_staged(self) -> None:
        if self._queue is not None and self._staged % DIRECT_ALIGN == 0:
            # the staging buffer goes with the job; the next bytes are staged in a fresh one
            buf, view = self._buf, self._view
            self._queue.submit((view[:self._staged], self._offset, (view, buf)))
            self._buf = mmap.mmap(-1, DIRECT_CHUNK)
            self._view = memoryview(self._buf)
        else:
            if self._queue is not None:
                self._queue.settle()  # the ordinary descriptor writes last: after what is queued
            self._put(self._view[:self._staged], self._offset)
        self._offset += self._staged
        self._staged = 0

    def _put(self, data: memoryview, offset: int) -> None:
        """Write ``data`` at ``offset``: directly when it is aligned and the file takes it, else the ordinary way."""
        done = 0
        if self._fd >= 0 and len(data) % DIRECT_ALIGN == 0:
            try:
                done = os.pwrite(self._fd, data, offset)
            except OSError as e:
                if e.errno != errno.EINVAL:
                    raise
            if done != len(data):
                self._close_direct()
        self._write_plain(data[done:], offset + done)

    def _run_job(self, job: tuple[memoryview, int, tuple[memoryview, mmap.mmap] | None]) -> None:
        """One queued write (in the writer's thread); a staging buffer that came with it is let go."""
        data, offset, owned = job
        try:
            self._put(data, offset)
        finally:
            data.release()
            if owned is not None:
                owned[0].release()
                owned[1].close()

    def _write_plain(self, data: memoryview, offset: int) -> None:
        while data:
            n = os.pwrite(self._plain, data, offset)
            data, offset = data[n:], offset + n

    def _close_direct(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)

    def settle(self) -> None:
        """Wait until every write given so far is made; raise the first that failed."""
        if self._queue is not None:
            self._queue.settle()

    def close(self, *, flush: bool) -> None:
        """Write what is staged (when ``flush``) and let go of the descriptor and the buffer.

        Without ``flush`` (the file is being thrown away) queued writes not yet begun are dropped.
        """
        try:
            if self._queue is not None:
                queue, self._queue = self._queue, None
                queue.stop(drop=not flush)
                if flush:
                    queue.raise_error()
            if flush and self._staged:
                self._write_staged()
        finally:
            self._close_direct()
            try:
                self._view.release()
                self._buf.close()
            except BufferError:
                pass  # a slice is still held (by a traceback): the memory goes with it


class WriteFence:
    """Writes made in order by a thread of their own, and how far they have got.

    :meth:`mark` numbers what has been given so far; :meth:`wait` returns once that much
    is written (or has failed), so the giver knows when it may reuse the memory it gave.
    The first failure is kept and raised to the giver by :meth:`raise_error` (and by
    :meth:`settle`); the writes after it are skipped.
    """

    def __init__(self, run: Callable[[Any], None]) -> None:
        self._run = run
        self._jobs: collections.deque[Any] = collections.deque()
        self._cond = threading.Condition()
        self._given = 0
        self._done = 0
        self._stopping = False
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="upload-writer", daemon=True)
        self._thread.start()

    def submit(self, job: Any) -> None:
        with self._cond:
            self._jobs.append(job)
            self._given += 1
            self._cond.notify_all()

    def mark(self) -> int:
        return self._given

    def wait(self, mark: int | None) -> None:
        """Until the writes given before ``mark`` are made (None: nothing to wait for)."""
        if mark is None:
            return
        with self._cond:
            while self._done < mark:
                self._cond.wait()

    def settle(self) -> None:
        self.wait(self.mark())
        self.raise_error()

    def raise_error(self) -> None:
        if self.error is not None:
            error, self.error = self.error, None
            raise error

    def stop(self, *, drop: bool) -> None:
        """Make (or, with ``drop``, skip) what is queued, then end the thread."""
        with self._cond:
            self._stopping = True
            if drop:
                self._done += len(self._jobs)
                self._jobs.clear()
            self._cond.notify_all()
        self._thread.join()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._jobs and not self._stopping:
                    self._cond.wait()
                if not self._jobs:
                    return
                job = self._jobs.popleft()
                failed = self.error is not None
            try:
                if not failed:  # after a failure the rest is not written (the file is thrown away)
                    self._run(job)
            except BaseException as e:  # kept for the giver, who handles it as if it had written
                self.error = e
            finally:
                job = None
                with self._cond:
                    self._done += 1
                    self._cond.notify_all()



class HashingSpoolFile:
    """A temporary file that hashes what is written to it.

    With ``bypass_cache`` (for a file that storage adopts as it is, by a rename, and that is
    not read again at once) the bytes given to :meth:`write_view` do not go through the
    page cache: they are written with ``O_DIRECT`` in aligned chunks (:class:`_DirectWriter`),
    which spares the CPU the copy into the cache and the work of filling fresh pages. On a
    file system that does not open files that way, the cache is handed back as the file is
    written instead: every :data:`CACHE_WINDOW` bytes the kernel is told to write back what
    came before and to drop what it has written back (``posix_fadvise(DONTNEED)``), so the
    upload keeps reusing the same few megabytes of memory. Either way :meth:`finish`'s
    ``fsync`` makes the file durable, as without.
    """

    def __init__(self, directory: str, max_size: int, *, bypass_cache: bool = False) -> None:
        self._hash = hashlib.sha256()
        self.size = 0
        self.max_size = max_size
        self.claimed = False
        self._direct: _DirectWriter | None = None
        self._release_cache = False
        self._released_to = 0  # bytes before this offset were last advised at that offset
        #: set when the file system filled up: the part is being discarded
        self.out_of_space: OSError | None = None
        try:
            if not os.path.isdir(directory):
                from .private_files import private_dirs

                private_dirs(directory)
            fd, self.name = tempfile.mkstemp(dir=directory, prefix="upload-")
        except OSError as e:
            if not is_no_space(e):
                raise
            self.name = ""
            self._fh: IO[bytes] = open(os.devnull, "w+b")
            self.out_of_space = e
            return
        self._fh = os.fdopen(fd, "w+b")
        if bypass_cache:
            if hasattr(os, "O_DIRECT"):
                try:
                    self._direct = _DirectWriter(self.name, fd)
                except OSError:
                    pass  # not on this file system
            self._release_cache = self._direct is None and hasattr(os, "posix_fadvise")

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
        self._close_direct(flush=False)
        try:
            self._fh.close()
        except OSError:
            pass  # the buffered bytes that did not fit cannot be flushed either
        self._unlink()
        self._fh = open(os.devnull, "w+b")

    def write_view(self, view: memoryview) -> None:
        """Hash and write a block from the caller's buffer (unbuffered; with ``bypass_cache``, in aligned chunks)."""
        self.size += len(view)
        if self.size > self.max_size:
            raise RequestEntityTooLarge(f"artifact larger than the limit of {self.max_size} bytes")
        if self.out_of_space is not None:
            return
        self._hash.update(view)
        try:
            if self._direct is not None:
                self._direct.write(view)
                return
            self._fh.flush()
            fd = self._fh.fileno()
            while view:
                view = view[os.write(fd, view):]
        except OSError as e:
            if not is_no_space(e):
                raise
            self._discard(e)
            return
        if self._release_cache and self.size - self._released_to >= CACHE_WINDOW:
            # Two windows back: the first advice starts the write-back of a window, a later
            # one drops its pages once they are written (dirty or in-flight pages are kept).
            start = max(0, self._released_to - 2 * CACHE_WINDOW)
            self._advise_dontneed(start, self.size - start)
            self._released_to = self.size

    def overlap_writes(self) -> WriteFence | None:
        """Let :meth:`write_view` return before the bytes are written, when they go around the page cache.

        The caller then keeps each view's memory as it is until the fence returned says its
        bytes are written, and calls :meth:`settle` when it has given the last one. None
        (writes stay made before :meth:`write_view` returns) when the file is written through
        the page cache, where a write costs no wait for the device.
        """
        if self._direct is None or self.out_of_space is not None:
            return None
        return self._direct.in_background()

    def settle(self, *, raise_errors: bool = True) -> None:
        """Wait for the writes :meth:`overlap_writes` let go on; a full disk is handled as in :meth:`write_view`."""
        if self._direct is None:
            return
        try:
            self._direct.settle()
        except OSError as e:
            if not raise_errors:
                return
            if not is_no_space(e):
                raise
            self._discard(e)

    def _advise_dontneed(self, offset: int, length: int) -> None:
        try:
            os.posix_fadvise(self._fh.fileno(), offset, length, os.POSIX_FADV_DONTNEED)
        except OSError:
            self._release_cache = False  # only advice: a file system that does not take it keeps its cache

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def finish(self) -> None:
        """Flush to disk before the file is adopted by storage; 507 when the disk filled up."""
        if self.out_of_space is None:
            try:
                self._close_direct(flush=True)
                self._fh.flush()
                os.fsync(self._fh.fileno())
            except OSError as e:
                if not is_no_space(e):
                    raise
                self._discard(e)
            else:
                if self._release_cache:
                    self._advise_dontneed(0, 0)  # all written back now: 0 length is "to the end"
        if self.out_of_space is not None:
            raise InsufficientStorageError("the uploaded file") from self.out_of_space

    def _close_direct(self, *, flush: bool) -> None:
        if self._direct is not None:
            direct, self._direct = self._direct, None
            direct.close(flush=flush)
            if flush:
                self._fh.seek(0, os.SEEK_END)  # the ordinary descriptor was not moved by positioned writes

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
        try:
            self._close_direct(flush=False)
        except OSError:
            pass
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


# ---------------------------------------------------------------- streaming multipart

#: What a part is read in: large blocks cost few system calls and few (direct) disk writes per megabyte.
BLOCK = 4 * 1024 * 1024
MAX_PART_HEADERS = 16 * 1024


class MultipartError(ValidationError):
    """The request body is not the multipart form it says it is (or it ended early)."""

    code = "bad_multipart"

    def __init__(self, message: str) -> None:
        super().__init__(message, field="body")


class RequestBody:
    """The request body, read in large blocks with ``readinto``.

    Under gunicorn the body is read straight from the connection's socket with
    ``recv_into`` (after taking what gunicorn had already buffered), so every byte is
    copied once, by the kernel, into a buffer that is then hashed and written as it
    is. Gunicorn's own reader re-copies its buffer on every read; other servers (and
    the test client) are read through ``wsgi.input``.
    """

    def __init__(self, environ: dict[str, Any]) -> None:
        self._input = environ["wsgi.input"]
        try:
            self.length: int | None = int(environ.get("CONTENT_LENGTH") or "")
        except ValueError:
            self.length = None
        self._pending = b""
        self._sock = None
        self._reader = None
        self._raw_socket(environ)

    def _raw_socket(self, environ: dict[str, Any]) -> None:
        sock = environ.get("gunicorn.socket")
        body = self._input
        reader = getattr(body, "reader", None)
        unreader = getattr(reader, "unreader", None)
        if (sock is None or type(body).__module__ != "gunicorn.http.body" or type(reader).__name__ != "LengthReader"
                or getattr(unreader, "sock", None) is not sock or not hasattr(unreader, "take_buffered")
                or not isinstance(getattr(body, "buf", None), io.BytesIO)):
            return
        pending = body.buf.getvalue()
        body.buf = io.BytesIO()
        held = unreader.take_buffered()
        take = min(len(held), reader.length)
        if take < len(held):
            unreader.unread(held[take:])  # a pipelined next request, not ours
        reader.length -= take
        self._pending = pending + held[:take]
        self._sock, self._reader = sock, reader

    def readinto(self, view: memoryview) -> int:
        """Fill ``view`` with the next bytes of the body (fewer at its end or when the client pauses); 0 at the end."""
        if self._pending:
            n = min(len(view), len(self._pending))
            view[:n] = self._pending[:n]
            self._pending = self._pending[n:]
            return n
        if self._sock is not None:
            want = min(len(view), self._reader.length)
            if want <= 0:
                return 0
            try:
                n = self._sock.recv_into(view[:want])
            except OSError as e:
                self._input.failed = True  # the connection cannot carry another request
                raise MultipartError(f"the request body could not be read: {e}") from e
            if n == 0:
                self._input.failed = True
                return 0
            self._reader.length -= n
            return n
        data = self._input.read(len(view)) if self.length is None else self._input.read(min(len(view), self.length))
        if self.length is not None:
            self.length -= len(data)
        view[:len(data)] = data
        return len(data)

    def abandon(self) -> None:
        """The answer goes out before the body was read: the connection must close, not drain it."""
        if self._reader is not None and self._reader.length > 0:
            self._input.failed = True


class Part:
    """One part of a multipart body, positioned at the start of its content."""

    def __init__(self, reader: MultipartReader, name: str, filename: str | None, content_type: str) -> None:
        self._reader = reader
        self.name = name
        self.filename = filename
        self.content_type = content_type

    def read(self, limit: int) -> bytes:
        """The whole content; a ValidationError naming the part when it is over ``limit`` bytes."""
        out = bytearray()

        def add(view: memoryview) -> None:
            if len(out) + len(view) > limit:
                raise ValidationError(f"the {self.name!r} part is too large", field=self.name)
            out.extend(view)

        self._reader.copy_part(add, greedy=False)
        return bytes(out)

    def save(self, spool: HashingSpoolFile, inspect: Callable[[Iterator[memoryview]], bool] | None = None,
             length: int | None = None) -> bool:
        """Stream the content into ``spool`` (hashed and written block by block).

        ``inspect``, when given, is called once with an iterator over the same blocks, each
        handed over once it has been hashed and written, and may stop early: the rest is
        written after it returns. Its answer is returned (False without it). A failure to
        receive or to keep a block (the body ends early, the size limit) is raised as it
        is, whatever ``inspect`` made of it. ``length``: the size the client declared (see
        :meth:`MultipartReader.iter_part`).
        """
        self._reader.overlap(spool.overlap_writes())
        try:
            verdict = self._save(spool, inspect, length)
        except BaseException:
            self._reader.overlap(None)
            spool.settle(raise_errors=False)
            raise
        self._reader.overlap(None)
        spool.settle()
        return verdict

    def _save(self, spool: HashingSpoolFile, inspect: Callable[[Iterator[memoryview]], bool] | None,
              length: int | None) -> bool:
        blocks = self._reader.iter_part(length=length)
        if inspect is None:
            for view in blocks:
                spool.write_view(view)
            return False
        written = _Written(blocks, spool)
        try:
            verdict = inspect(written)
        except BaseException:
            if written.error is None:
                raise
            verdict = False
        if written.error is not None:
            raise written.error
        for _ in written:
            pass
        return verdict


class _Written:
    """The blocks of a part, each hashed and written to the spool before it is handed on."""

    def __init__(self, blocks: Iterator[memoryview], spool: HashingSpoolFile) -> None:
        self._blocks = blocks
        self._spool = spool
        #: what went wrong receiving or writing (raised again by :meth:`Part.save`)
        self.error: BaseException | None = None

    def __iter__(self) -> _Written:
        return self

    def __next__(self) -> memoryview:
        if self.error is not None:
            raise self.error
        try:
            view = next(self._blocks)
            self._spool.write_view(view)
        except StopIteration:
            raise
        except BaseException as e:
            self.error = e
            raise
        return view


class MultipartReader:
    """Reads ``multipart/form-data`` part by part from a :class:`RequestBody`.

    Nothing is read ahead of what the caller asks for: the headers of a part and its
    content are read when the caller gets there, so a caller can refuse a request on
    its first (metadata) part while the client has not yet sent the rest. Content is
    handed out as views of one block-sized buffer (no copies), page-aligned memory in
    which a part's content sits at the offsets of its place in the part modulo
    :data:`DIRECT_ALIGN`, so a spool file can write it with ``O_DIRECT`` as it is.
    """

    def __init__(self, body: RequestBody, boundary: str, block: int = BLOCK) -> None:
        if not boundary or len(boundary) > 200:
            raise MultipartError("the multipart boundary is missing or too long")
        self._body = body
        self._delim = b"\r\n--" + boundary.encode("latin-1")
        # page-aligned memory, and room to keep each byte at its offset modulo DIRECT_ALIGN
        self._buf = mmap.mmap(-1, block + len(self._delim) + MAX_PART_HEADERS + DIRECT_ALIGN)
        self._view = memoryview(self._buf)
        self._fence: WriteFence | None = None
        self._spare: tuple[mmap.mmap, memoryview] | None = None  # the other buffer, while writes overlap
        self._spare_mark: int | None = None  # what the fence must have written before the spare is refilled
        self._buf[:2] = b"\r\n"  # the first delimiter has no line break before it: pretend it has
        self._start, self._end = 0, 2
        self._in_part = False
        self._done = False

    def abandon(self) -> None:
        """An answer goes out before the whole body was read: the connection closes instead of draining it."""
        self._body.abandon()

    def overlap(self, fence: WriteFence | None) -> None:
        """Views handed out from now on may still be being written when the next is asked for, until
        ``fence`` says they are; the reader then fills two buffers in turn (None: one buffer again,
        once the caller has waited for the fence).

        A buffer is refilled only after the fence has written every view given out of it, so
        the body is received into one buffer while the other is still being written.
        """
        self._fence, self._spare_mark = fence, None

    def _fill(self, greedy: bool) -> bool:
        """Read more of the body behind what is buffered; False at its end."""
        if self._start >= DIRECT_ALIGN:
            # what is kept moves to the front, to the same offset modulo DIRECT_ALIGN: a part's
            # content stays at the memory offsets (mod DIRECT_ALIGN) of its offsets in the part
            keep = self._end - self._start
            dest = self._start % DIRECT_ALIGN
            if self._fence is None:
                self._buf.move(dest, self._start, keep)
            else:
                self._turn(dest, keep)
            self._start, self._end = dest, dest + keep
        got = False
        while self._end < len(self._buf):
            n = self._body.readinto(self._view[self._end:])
            if n == 0:
                break
            self._end += n
            got = True
            if not greedy:
                break
        return got

    def _turn(self, dest: int, keep: int) -> None:
        """Go on in the other buffer, what is kept moved to ``dest`` in it, once the fence has written its views."""
        assert self._fence is not None
        if self._spare is None:
            buf = mmap.mmap(-1, len(self._buf))
            self._spare = (buf, memoryview(buf))
        self._fence.wait(self._spare_mark)
        buf, view = self._spare
        view[dest:dest + keep] = self._view[self._start:self._start + keep]
        self._spare, self._spare_mark = (self._buf, self._view), self._fence.mark()
        self._buf, self._view = buf, view

    def copy_part(self, sink: Any, greedy: bool) -> None:
        """Pass the current part's content to ``sink(view)`` up to the next delimiter."""
        for view in self.iter_part(greedy):
            sink(view)

    def iter_part(self, greedy: bool = True, length: int | None = None) -> Iterator[memoryview]:
        """The current part's content up to the next delimiter, as views valid until the next one is asked for.

        With ``length`` (the client declared the part's size) the content is taken as that many
        bytes without searching them for the delimiter, which must then follow at once: a
        search costs about half as much as hashing the same bytes. A part of another length is
        a :class:`~release_server.errors.ValidationError` on ``size``.
        """
        if not self._in_part:
            raise MultipartError("no part to read")
        if length is not None:
            yield from self._iter_length(greedy, length)
            return
        delim, dl = self._delim, len(self._delim)
        while True:
            i = self._buf.find(delim, self._start, self._end)
            if i >= 0:
                if i > self._start:
                    yield self._view[self._start:i]
                self._start = i
                self._in_part = False
                return
            safe = self._end - dl + 1
            if safe > self._start:
                yield self._view[self._start:safe]
                self._start = safe
            if not self._fill(greedy):
                raise MultipartError("the request body ended inside a part")

    def _iter_length(self, greedy: bool, length: int) -> Iterator[memoryview]:
        left = length
        while left:
            if self._end == self._start and not self._fill(greedy):
                raise MultipartError("the request body ended inside a part")
            take = min(self._end - self._start, left)
            yield self._view[self._start:self._start + take]
            self._start += take
            left -= take
        delim, dl = self._delim, len(self._delim)
        while self._end - self._start < dl and self._fill(False):
            pass
        if self._buf[self._start:self._start + dl] != delim:
            raise ValidationError(f"the artifact does not end after the {length} bytes the metadata declares",
                                  field="size")
        self._in_part = False

    def next_part(self) -> Part | None:
        """The next part (its headers read), or None after the closing delimiter."""
        if self._done:
            return None
        if self._in_part:
            self.copy_part(lambda view: None, greedy=True)  # skip what the caller did not read
        delim, dl = self._delim, len(self._delim)
        while True:  # the delimiter (the preamble, if any, is skipped)
            i = self._buf.find(delim, self._start, self._end)
            if i >= 0 and self._end - i >= dl + 2:
                break
            # what comes before the delimiter (or before what may be its start) is not kept
            self._start = i if i >= 0 else max(self._start, self._end - dl + 1)
            if not self._fill(False):
                raise MultipartError("the request body ended before its closing boundary")
        pos = i + dl
        if self._buf[pos:pos + 2] == b"--":
            self._done = True
            self._start = self._end
            return None
        while True:
            head_end = self._buf.find(b"\r\n\r\n", pos, self._end)
            if head_end >= 0:
                break
            if self._end - pos > MAX_PART_HEADERS:
                raise MultipartError("a part's headers are too long")
            self._start = i
            if not self._fill(False):
                raise MultipartError("the request body ended inside a part's headers")
            i = self._start
            pos = i + dl
        headers = bytes(self._view[pos:head_end]).decode("utf-8", "replace").split("\r\n")
        # An empty part may be sent with the blank line's CRLF doubling as the delimiter's (as
        # Werkzeug's test client does): then the content is empty, not "--boundary...".
        self._start = head_end
        while self._end - self._start < 2 + dl and self._fill(False):
            pass
        head_end = self._start
        empty = self._buf[head_end + 2:head_end + 2 + dl] == delim
        self._start = head_end + 2 if empty else head_end + 4
        if self._start % DIRECT_ALIGN:  # the content starts at an aligned offset (see _fill)
            keep = self._end - self._start
            self._buf.move(0, self._start, keep)
            self._start, self._end = 0, keep
        self._in_part = True
        disposition, ctype = "", "text/plain"
        for line in headers:
            key, sep, value = line.partition(":")
            if not sep:
                continue
            key = key.strip().lower()
            if key == "content-disposition":
                disposition = value.strip()
            elif key == "content-type":
                ctype = value.strip()
        kind, opts = parse_options_header(disposition)
        if kind != "form-data" or "name" not in opts:
            raise MultipartError("a part has no Content-Disposition form-data name")
        return Part(self, opts["name"], opts.get("filename"), ctype)


def multipart_reader(request: Request) -> MultipartReader:
    """A :class:`MultipartReader` over this request's body (which must not have been read yet)."""
    boundary = request.mimetype_params.get("boundary", "")
    return MultipartReader(RequestBody(request.environ), boundary)
