"""Receiving a publish body: parts split anywhere, blocks hashed and written once, a spool file written
around the page cache that keeps exactly what was sent."""
from __future__ import annotations

import errno
import hashlib
import io
import os
import random
import threading
import time
from pathlib import Path

import pytest
from werkzeug.exceptions import RequestEntityTooLarge

from release_server import uploads
from release_server.uploads import HashingSpoolFile, MultipartError, MultipartReader, RequestBody

BOUNDARY = "b0undary-for-the-test"


class TricklingBody(RequestBody):
    """A body served in chunks of random sizes, as a socket might (never more than asked)."""

    def __init__(self, data: bytes, seed: int) -> None:
        self._src = io.BytesIO(data)
        self._rng = random.Random(seed)

    def readinto(self, view: memoryview) -> int:
        want = min(len(view), self._rng.choice([1, 2, 3, 17, 512, 4096, 70_000, 1 << 20]))
        data = self._src.read(want)
        view[:len(data)] = data
        return len(data)

    def abandon(self) -> None:
        pass


def body_of(artifact: bytes, *, tail: bool = True) -> bytes:
    return (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"metadata\"\r\n\r\n{{}}\r\n"
            f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"artifact\"; filename=\"a.tar.gz\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + artifact + (
        f"\r\n--{BOUNDARY}--\r\n".encode() if tail else b"")


def artifact_part(data: bytes, block: int, seed: int = 0):
    reader = MultipartReader(TricklingBody(body_of(data), seed), BOUNDARY, block=block)
    meta = reader.next_part()
    assert meta is not None and meta.name == "metadata" and meta.read(100) == b"{}"
    part = reader.next_part()
    assert part is not None and part.name == "artifact"
    return reader, part


# Content that looks like the delimiter's start, at every distance from the block edges.
TRICKY = (b"\r\n--" + BOUNDARY[:-1].encode() + b"X") * 50 + b"\r\n-" + os.urandom(300_000) + b"\r\n"


@pytest.mark.parametrize("block", [64, 1000, 4096, 65536])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_part_split_anywhere_reaches_the_spool_and_the_inspector_whole(tmp_path: Path, block: int, seed: int):
    reader, part = artifact_part(TRICKY, block, seed)
    spool = HashingSpoolFile(str(tmp_path), 10 << 20, bypass_cache=True)
    seen = bytearray()

    def inspect(blocks):
        for view in blocks:
            seen.extend(view)
            if len(seen) > 100_000:
                return True  # stops early: the rest is written all the same
        return False

    assert part.save(spool, inspect=inspect) is True
    assert reader.next_part() is None
    spool.finish()
    assert Path(spool.name).read_bytes() == TRICKY
    assert spool.size == len(TRICKY) and spool.sha256 == hashlib.sha256(TRICKY).hexdigest()
    assert bytes(seen) == TRICKY[:len(seen)] and len(seen) > 100_000
    spool.close()
    assert not Path(spool.name).exists()  # not claimed: removed


def test_an_inspector_sees_only_blocks_already_hashed_and_written(tmp_path: Path):
    _, part = artifact_part(TRICKY, 4096)
    spool = HashingSpoolFile(str(tmp_path), 10 << 20)

    def inspect(blocks):
        for view in blocks:
            assert spool.size >= len(view)  # counted (and hashed, written) before it was handed over
        return True

    assert part.save(spool, inspect=inspect) is True
    spool.finish()
    assert Path(spool.name).read_bytes() == TRICKY
    spool.close()


def test_receive_failures_are_raised_whatever_the_inspector_makes_of_them(tmp_path: Path):
    def swallow(blocks):
        try:
            for _ in blocks:
                pass
        except Exception:  # noqa: BLE001 - an inspector that hides every error
            return True
        return True

    reader = MultipartReader(TricklingBody(body_of(TRICKY, tail=False), 5), BOUNDARY, block=4096)
    reader.next_part().read(100)
    spool = HashingSpoolFile(str(tmp_path), 10 << 20)
    with pytest.raises(MultipartError, match="ended inside a part"):
        reader.next_part().save(spool, inspect=swallow)
    spool.close()

    _, part = artifact_part(TRICKY, 4096)
    small = HashingSpoolFile(str(tmp_path), 50_000)
    with pytest.raises(RequestEntityTooLarge):
        part.save(small, inspect=swallow)
    small.close()
    assert list(tmp_path.iterdir()) == []


def _sizes(total: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    out = []
    while total > 0:
        n = min(total, rng.choice([1, 511, 4096, 100_003, uploads.DIRECT_CHUNK, uploads.DIRECT_CHUNK + 1]))
        out.append(n)
        total -= n
    return out


def write_in_pieces(spool: HashingSpoolFile, data: bytes, seed: int = 7) -> None:
    at = 0
    for n in _sizes(len(data), seed):
        spool.write_view(memoryview(data)[at:at + n])
        at += n


@pytest.mark.parametrize("size", [0, 1, uploads.DIRECT_CHUNK, 3 * uploads.DIRECT_CHUNK + 12345])
def test_a_spool_file_written_around_the_page_cache_holds_what_was_sent(tmp_path: Path, size: int):
    data = os.urandom(size)
    spool = HashingSpoolFile(str(tmp_path), 1 << 30, bypass_cache=True)
    assert spool._direct is not None  # this file system takes O_DIRECT: the direct path is the one tested
    write_in_pieces(spool, data)
    spool.finish()
    assert spool._direct is None
    assert Path(spool.name).read_bytes() == data and os.path.getsize(spool.name) == size
    assert spool.sha256 == hashlib.sha256(data).hexdigest() and spool.size == size
    spool.close()


def test_without_o_direct_the_page_cache_is_handed_back_and_the_file_is_whole(tmp_path: Path, monkeypatch):
    def refuse(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise OSError(errno.EINVAL, "O_DIRECT not supported")

    monkeypatch.setattr(uploads, "_DirectWriter", refuse)
    advised = []
    real = os.posix_fadvise

    def record(fd, offset, length, advice):  # noqa: ANN001, ANN202
        advised.append((offset, length, advice))
        return real(fd, offset, length, advice)

    monkeypatch.setattr(os, "posix_fadvise", record)
    data = os.urandom(3 * uploads.CACHE_WINDOW + 777)
    spool = HashingSpoolFile(str(tmp_path), 1 << 30, bypass_cache=True)
    assert spool._direct is None
    write_in_pieces(spool, data)
    spool.finish()
    assert Path(spool.name).read_bytes() == data and spool.sha256 == hashlib.sha256(data).hexdigest()
    assert len(advised) >= 3 and all(a == os.POSIX_FADV_DONTNEED for _, _, a in advised)
    assert advised[-1] == (0, 0, os.POSIX_FADV_DONTNEED)  # after the fsync: the whole file
    spool.close()

    advised.clear()
    plain = HashingSpoolFile(str(tmp_path), 1 << 30)  # without bypass_cache: nothing of the kind
    write_in_pieces(plain, data[:2 * uploads.CACHE_WINDOW])
    plain.finish()
    assert advised == []
    plain.close()


def test_a_direct_write_the_file_system_refuses_goes_through_the_ordinary_descriptor(tmp_path: Path, monkeypatch):
    spool = HashingSpoolFile(str(tmp_path), 1 << 30, bypass_cache=True)
    direct_fd = spool._direct._fd
    real = os.pwrite
    refused = []

    def pwrite(fd, data, offset):  # noqa: ANN001, ANN202
        if fd == direct_fd:
            refused.append(offset)
            raise OSError(errno.EINVAL, "alignment not taken")
        return real(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", pwrite)
    data = os.urandom(2 * uploads.DIRECT_CHUNK + 99)
    write_in_pieces(spool, data)
    spool.finish()
    # refused from the caller's memory, then from the staging buffer; then the rest went the ordinary way
    assert set(refused) == {0} and 1 <= len(refused) <= 2
    assert Path(spool.name).read_bytes() == data and spool.sha256 == hashlib.sha256(data).hexdigest()
    spool.close()


def test_a_full_disk_during_a_direct_write_is_507_and_leaves_nothing(tmp_path: Path, monkeypatch):
    from release_server.storage import InsufficientStorageError

    spool = HashingSpoolFile(str(tmp_path), 1 << 30, bypass_cache=True)
    direct_fd = spool._direct._fd
    real = os.pwrite

    def pwrite(fd, data, offset):  # noqa: ANN001, ANN202
        if fd == direct_fd and offset >= uploads.DIRECT_CHUNK:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", pwrite)
    write_in_pieces(spool, os.urandom(3 * uploads.DIRECT_CHUNK))
    assert spool.out_of_space is not None and not Path(spool.name).exists()
    with pytest.raises(InsufficientStorageError):
        spool.finish()
    spool.close()
    assert list(tmp_path.iterdir()) == []


def test_a_spool_file_adopted_by_local_storage_is_renamed_with_its_content_and_hash(tmp_path: Path):
    from release_server.storage.local import LocalStorage, sha256_file

    storage = LocalStorage(tmp_path / "blobs")
    incoming = tmp_path / "blobs" / "incoming"
    assert storage.adopts_files_from(incoming)  # not made yet: judged by the folder it will be made in
    data = os.urandom(uploads.DIRECT_CHUNK + 5)
    spool = HashingSpoolFile(str(incoming), 1 << 30, bypass_cache=True)
    write_in_pieces(spool, data)
    spool.finish()
    inode = os.stat(spool.name).st_ino
    blob = storage.put_file(Path(spool.name), sha256=spool.sha256, size=spool.size, move=True)
    spool.claimed = True
    spool.close()
    stored = storage.local_path(blob.key)
    assert stored is not None and os.stat(stored).st_ino == inode  # the same file, not a copy
    assert stored.read_bytes() == data and sha256_file(stored) == blob.sha256 == hashlib.sha256(data).hexdigest()
    assert list(incoming.iterdir()) == []


@pytest.mark.parametrize("seed", [1, 2])
def test_a_parts_content_is_written_with_o_direct_from_where_it_was_received(tmp_path: Path, monkeypatch, seed: int):
    data = os.urandom(3 * uploads.DIRECT_CHUNK + 1234)
    reader, part = artifact_part(data, 1 << 20, seed)
    spool = HashingSpoolFile(str(tmp_path), 1 << 30, bypass_cache=True)
    direct_fd = spool._direct._fd
    real = os.pwrite
    written = []

    def pwrite(fd, buf, offset):  # noqa: ANN001, ANN202
        if fd == direct_fd and isinstance(buf, memoryview):
            written.append((buf.obj, len(buf), offset, threading.current_thread()))
        return real(fd, buf, offset)

    monkeypatch.setattr(os, "pwrite", pwrite)
    part.save(spool)
    spool.finish()
    assert Path(spool.name).read_bytes() == data and spool.sha256 == hashlib.sha256(data).hexdigest()
    received_into = {id(reader._buf), id(reader._spare[0])}  # the reader's two buffers, filled in turn
    in_place = [(n, offset) for obj, n, offset, _ in written if id(obj) in received_into]
    assert all(n % uploads.DIRECT_ALIGN == 0 and offset % uploads.DIRECT_ALIGN == 0 for n, offset in in_place)
    assert sum(n for n, _ in in_place) > 0.9 * len(data)  # not copied again: only the edges of blocks are staged
    # the writes were made behind the reading, by the spool's writer thread, not the receiving one
    assert {t for *_, t in written} and threading.current_thread() not in {t for *_, t in written}
    spool.close()


def slow_direct_writes(monkeypatch, spool: HashingSpoolFile, fail_at: int | None = None, errno_: int = errno.ENOSPC):
    """Direct writes that take a while (so the reading runs ahead of them), failing from ``fail_at`` on."""
    direct_fd = spool._direct._fd
    real = os.pwrite

    def pwrite(fd, buf, offset):  # noqa: ANN001, ANN202
        if fd == direct_fd:
            time.sleep(0.003)
            if fail_at is not None and offset >= fail_at:
                raise OSError(errno_, os.strerror(errno_))
        return real(fd, buf, offset)

    monkeypatch.setattr(os, "pwrite", pwrite)


@pytest.mark.parametrize("block", [4096, 65536, 1 << 20])
def test_a_buffer_is_received_into_again_only_after_the_writer_has_written_it(tmp_path: Path, monkeypatch,
                                                                               block: int):
    data = os.urandom(2 * uploads.DIRECT_CHUNK + 4321)
    reader, part = artifact_part(data, block, seed=5)
    spool = HashingSpoolFile(str(tmp_path), 1 << 30, bypass_cache=True)
    slow_direct_writes(monkeypatch, spool)
    seen = bytearray()
    assert part.save(spool, inspect=lambda blocks: [seen.extend(b) for b in blocks] and True) is True
    assert reader.next_part() is None  # the reader goes on in one buffer once the part is written
    spool.finish()
    assert bytes(seen) == data
    assert Path(spool.name).read_bytes() == data and spool.sha256 == hashlib.sha256(data).hexdigest()
    spool.close()


def test_a_full_disk_behind_the_reading_is_507_and_leaves_nothing(tmp_path: Path, monkeypatch):
    from release_server.storage import InsufficientStorageError

    data = os.urandom(3 * uploads.DIRECT_CHUNK)
    reader, part = artifact_part(data, 1 << 20, seed=3)
    spool = HashingSpoolFile(str(tmp_path), 1 << 30, bypass_cache=True)
    slow_direct_writes(monkeypatch, spool, fail_at=uploads.DIRECT_CHUNK)
    part.save(spool)  # the rest of the part is read and dropped: the client gets its answer
    assert reader.next_part() is None
    assert spool.out_of_space is not None and not Path(spool.name).exists()
    with pytest.raises(InsufficientStorageError):
        spool.finish()
    spool.close()
    assert list(tmp_path.iterdir()) == []


def test_a_write_error_behind_the_reading_reaches_the_caller(tmp_path: Path, monkeypatch):
    _, part = artifact_part(os.urandom(3 * uploads.DIRECT_CHUNK), 1 << 20, seed=4)
    spool = HashingSpoolFile(str(tmp_path), 1 << 30, bypass_cache=True)
    slow_direct_writes(monkeypatch, spool, fail_at=0, errno_=errno.EIO)
    with pytest.raises(OSError) as caught:
        part.save(spool)
    assert caught.value.errno == errno.EIO
    spool.close()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_part_of_declared_length_is_taken_whole_without_searching_it(tmp_path: Path, seed: int):
    # the delimiter itself inside the content: a search would end the part there
    data = TRICKY + os.urandom(uploads.DIRECT_CHUNK + 77) + f"\r\n--{BOUNDARY}\r\n".encode() + TRICKY
    reader, part = artifact_part(data, 65536, seed)
    spool = HashingSpoolFile(str(tmp_path), 1 << 30, bypass_cache=True)
    part.save(spool, length=len(data))
    assert reader.next_part() is None
    spool.finish()
    assert Path(spool.name).read_bytes() == data and spool.sha256 == hashlib.sha256(data).hexdigest()
    spool.close()


@pytest.mark.parametrize("declared", [-1, +1, -100_000, +5])
def test_a_part_longer_or_shorter_than_declared_is_refused_on_size(tmp_path: Path, declared: int):
    from release_server.errors import ValidationError

    data = os.urandom(200_000)
    _, part = artifact_part(data, 65536, seed=9)
    spool = HashingSpoolFile(str(tmp_path), 1 << 30)
    with pytest.raises(ValidationError) as caught:
        part.save(spool, length=len(data) + declared)
    assert caught.value.field == "size"
    assert f"after the {len(data) + declared} bytes the metadata declares" in caught.value.message
    spool.close()
    assert list(tmp_path.iterdir()) == []
