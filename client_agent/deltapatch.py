"""The delta patch format: build a patch between two tar streams, apply it.

Compressed tarballs defeat byte-level diffs (one changed byte early in a gzip stream
changes everything after it), so a patch works on the *uncompressed* tar streams and
per member, as Velopack does per file:

* a member whose content also exists in the base tar (same bytes, under any name) is a
  ``COPY`` of that byte range of the base, and so is a tar header that is the same as
  the base's header of the same name;
* a changed member that has a same-named predecessor is a Zstandard frame compressed
  with the predecessor's bytes as a raw-content dictionary (what ``zstd --patch-from``
  does for a whole file), so only the changed parts cost bytes;
* everything else (tar headers, padding, new files) is a literal.

The op stream is itself Zstandard-compressed (long-distance matching, 128 MiB window).
Memory is bounded by the largest member diffed against its predecessor
(``member_limit``; larger changed members go as literals) and the window, never by the
size of the artifact: both tars are read from disk with seeks.

The result of applying a patch is the new release's tar stream, not its ``.tar.gz``:
recompressing to the very bytes that were published is possible only when the artifact
was made by zlib at a known level, and even then costs more time than the download it
saves (measured by ``scripts/bench/delta.py``). So the server signs the SHA-256 and
length of the uncompressed tar stream of the release (in the patch target's custom
field, next to the full artifact's path and hash), and the agent installs the rebuilt
tar only once it matches them.

Patch layout: ``MAGIC``, then one Zstandard stream of ops, each a tag byte and
little-endian unsigned 64-bit fields:

* ``L n`` + n bytes: literal;
* ``C offset n``: copy n bytes of the base from offset;
* ``D offset n out_len frame_len`` + frame: decompress the frame with the dictionary
  ``base[offset:offset+n]``, giving out_len bytes;
* ``E``: end of patch.

This module is shared by the server (which builds patches) and the agent (which applies
them); it has no state and no network access.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import struct
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import zstandard

from client_agent.errors import AgentError

MAGIC = b"RSDPATCH1\n"
FORMAT = "rsdpatch/1"
EXTENSION = "rsdpatch"
CHUNK = 1024 * 1024
DEFAULT_MEMBER_LIMIT = 64 * 1024 * 1024
_U64 = struct.Struct("<Q")


class PatchFormatError(AgentError):
    """A patch, base or artifact cannot be used: not the format, truncated, or inconsistent."""


# --------------------------------------------------------------------------- containers


@dataclass(frozen=True)
class Digest:
    """SHA-256 and length of a file."""

    sha256: str
    length: int

    def to_json(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "length": self.length}


def file_digest(path: Path) -> Digest:
    h = hashlib.sha256()
    n = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            n += len(chunk)
    return Digest(h.hexdigest(), n)


def is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def to_tar(artifact: Path, dest: Path, *, max_bytes: int | None = None) -> Digest:
    """Write the tar stream of ``artifact`` (gunzipped when it is gzip) to ``dest``; its digest.

    Raises PatchFormatError when the result is not a tar archive or grows past ``max_bytes``.
    """
    h = hashlib.sha256()
    n = 0
    try:
        src: BinaryIO = gzip.open(artifact, "rb") if is_gzip(artifact) else open(artifact, "rb")  # noqa: SIM115
        with src, open(dest, "wb") as out:
            while chunk := src.read(CHUNK):
                n += len(chunk)
                if max_bytes is not None and n > max_bytes:
                    raise PatchFormatError(f"{artifact.name} expands past {max_bytes} bytes")
                h.update(chunk)
                out.write(chunk)
    except (OSError, EOFError, zlib.error) as exc:
        raise PatchFormatError(f"cannot decompress {artifact.name}: {exc}") from exc
    if not tarfile.is_tarfile(dest):
        raise PatchFormatError(f"{artifact.name} is not a tar archive")
    return Digest(h.hexdigest(), n)


# --------------------------------------------------------------------------- building


@dataclass(frozen=True)
class _Member:
    offset: int       # header start (extended headers included)
    data_offset: int
    size: int
    regular: bool
    name: str


def _members(tar_path: Path) -> list[_Member]:
    out = []
    try:
        with tarfile.open(tar_path, mode="r:") as tar:
            while (info := tar.next()) is not None:
                out.append(_Member(info.offset, info.offset_data, info.size, info.isreg(), info.name))
                tar.members.clear()  # keep memory flat on archives with many members
    except tarfile.TarError as exc:
        raise PatchFormatError(f"cannot read tar {tar_path.name}: {exc}") from exc
    return out


def _range_sha256(f: BinaryIO, offset: int, length: int) -> str:
    f.seek(offset)
    h = hashlib.sha256()
    while length:
        chunk = f.read(min(CHUNK, length))
        if not chunk:
            raise PatchFormatError("tar is truncated")
        h.update(chunk)
        length -= len(chunk)
    return h.hexdigest()


def _read_range(f: BinaryIO, offset: int, length: int) -> bytes:
    f.seek(offset)
    data = f.read(length)
    if len(data) != length:
        raise PatchFormatError("base is shorter than the patch expects")
    return data


@dataclass
class BuildStats:
    """What a patch is made of (bytes of the new tar by kind of op)."""

    copied: int = 0
    diffed: int = 0
    literal: int = 0
    members: int = 0


def build_patch(base_tar: Path, new_tar: Path, dest: Path, *, member_limit: int = DEFAULT_MEMBER_LIMIT,
                level: int = 19, outer_level: int = 12) -> BuildStats:
    """Write a patch that turns ``base_tar`` into ``new_tar``; returns what it consists of."""
    stats = BuildStats()
    all_base = _members(base_tar)
    headers: dict[str, _Member] = {m.name: m for m in all_base}
    base_members = [m for m in all_base if m.regular and m.size > 0]
    by_name: dict[str, _Member] = {m.name: m for m in base_members}
    by_hash: dict[tuple[str, int], _Member] = {}
    with open(base_tar, "rb") as bf:
        for m in base_members:
            by_hash.setdefault((_range_sha256(bf, m.data_offset, m.size), m.size), m)
    new_members = _members(new_tar)
    new_size = new_tar.stat().st_size
    params = zstandard.ZstdCompressionParameters.from_level(outer_level, enable_ldm=True, window_log=27,
                                                            threads=0)
    outer = zstandard.ZstdCompressor(compression_params=params)
    with open(base_tar, "rb") as bf, open(new_tar, "rb") as nf, open(dest, "wb") as raw_out:
        raw_out.write(MAGIC)
        with outer.stream_writer(raw_out, closefd=False) as out:
            pos = 0

            def literal(upto: int) -> None:
                nonlocal pos
                if upto <= pos:
                    return
                out.write(b"L" + _U64.pack(upto - pos))
                nf.seek(pos)
                left = upto - pos
                while left:
                    chunk = nf.read(min(CHUNK, left))
                    if not chunk:
                        raise PatchFormatError("new tar is truncated")
                    out.write(chunk)
                    left -= len(chunk)
                stats.literal += upto - pos
                pos = upto

            for m in new_members:
                stats.members += 1
                literal(m.offset)  # padding of the previous member
                same_header = headers.get(m.name)
                header_len = m.data_offset - m.offset
                if same_header is not None and same_header.data_offset - same_header.offset == header_len and \
                        _read_range(bf, same_header.offset, header_len) == _read_range(nf, m.offset, header_len):
                    out.write(b"C" + _U64.pack(same_header.offset) + _U64.pack(header_len))
                    stats.copied += header_len
                    pos = m.data_offset
                else:
                    literal(m.data_offset)  # this member's header
                if not m.regular or m.size == 0:
                    continue
                end = m.data_offset + m.size
                if m.size > member_limit:  # too large to diff in bounded memory: a copy, or a literal
                    same = by_hash.get((_range_sha256(nf, m.data_offset, m.size), m.size))
                    if same is not None:
                        out.write(b"C" + _U64.pack(same.data_offset) + _U64.pack(m.size))
                        stats.copied += m.size
                        pos = end
                        continue
                else:
                    data = _read_range(nf, m.data_offset, m.size)
                    same = by_hash.get((hashlib.sha256(data).hexdigest(), m.size))
                    if same is not None:
                        out.write(b"C" + _U64.pack(same.data_offset) + _U64.pack(m.size))
                        stats.copied += m.size
                        pos = end
                        continue
                    old = by_name.get(m.name)
                    if old is not None and old.size <= member_limit:
                        dictionary = zstandard.ZstdCompressionDict(_read_range(bf, old.data_offset, old.size),
                                                                   dict_type=zstandard.DICT_TYPE_RAWCONTENT)
                        cparams = zstandard.ZstdCompressionParameters.from_level(
                            level if m.size <= 8 * CHUNK else min(level, 15), source_size=m.size,
                            dict_size=old.size, enable_ldm=m.size > 8 * CHUNK)
                        frame = zstandard.ZstdCompressor(dict_data=dictionary,
                                                         compression_params=cparams).compress(data)
                        if len(frame) < m.size:
                            out.write(b"D" + _U64.pack(old.data_offset) + _U64.pack(old.size)
                                      + _U64.pack(m.size) + _U64.pack(len(frame)))
                            out.write(frame)
                            stats.diffed += m.size
                            pos = end
                            continue
                literal(end)
            literal(new_size)
            out.write(b"E")
    return stats


# --------------------------------------------------------------------------- applying


class _Reader:
    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream

    def exact(self, n: int) -> bytes:
        data = bytearray()
        while len(data) < n:
            chunk = self.stream.read(min(CHUNK, n - len(data)))
            if not chunk:
                raise PatchFormatError("patch is truncated")
            data += chunk
        return bytes(data)

    def u64(self) -> int:
        return _U64.unpack(self.exact(8))[0]


def apply_patch(base_tar: Path, patch: Path, dest: Path, *, max_output: int,
                member_limit: int = DEFAULT_MEMBER_LIMIT,
                progress: Callable[[int], Any] | None = None) -> Digest:
    """Rebuild the new tar at ``dest`` from ``base_tar`` and ``patch``; its digest.

    ``max_output`` (the signed length of the new tar) bounds what is written, and
    ``member_limit`` the size of any dictionary read from the base.
    """
    h = hashlib.sha256()
    written = 0

    def emit(out: BinaryIO, data: bytes) -> None:
        nonlocal written
        written += len(data)
        if written > max_output:
            raise PatchFormatError(f"patch output exceeds the signed {max_output} bytes")
        h.update(data)
        out.write(data)
        if progress:
            progress(written)

    base_size = base_tar.stat().st_size
    with open(patch, "rb") as pf, open(base_tar, "rb") as bf, open(dest, "wb") as out:
        if pf.read(len(MAGIC)) != MAGIC:
            raise PatchFormatError("not a delta patch")
        try:
            reader = _Reader(zstandard.ZstdDecompressor(max_window_size=1 << 27).stream_reader(pf))
            while True:
                tag = reader.exact(1)
                if tag == b"E":
                    break
                if tag == b"L":
                    left = reader.u64()
                    while left:
                        chunk = reader.exact(min(CHUNK, left))
                        emit(out, chunk)
                        left -= len(chunk)
                elif tag == b"C":
                    offset, left = reader.u64(), reader.u64()
                    if offset + left > base_size:
                        raise PatchFormatError("copy beyond the end of the base")
                    bf.seek(offset)
                    while left:
                        chunk = bf.read(min(CHUNK, left))
                        emit(out, chunk)
                        left -= len(chunk)
                elif tag == b"D":
                    offset, n, out_len, frame_len = reader.u64(), reader.u64(), reader.u64(), reader.u64()
                    if n > member_limit or out_len > member_limit or offset + n > base_size:
                        raise PatchFormatError("diffed member beyond the limits")
                    dictionary = zstandard.ZstdCompressionDict(_read_range(bf, offset, n),
                                                               dict_type=zstandard.DICT_TYPE_RAWCONTENT)
                    frame = reader.exact(frame_len)
                    data = zstandard.ZstdDecompressor(dict_data=dictionary).decompress(
                        frame, max_output_size=out_len)
                    if len(data) != out_len:
                        raise PatchFormatError("diffed member has the wrong length")
                    emit(out, data)
                else:
                    raise PatchFormatError(f"unknown op {tag!r} in patch")
        except zstandard.ZstdError as exc:
            raise PatchFormatError(f"patch does not decompress: {exc}") from exc
        out.flush()
        os.fsync(out.fileno())
    return Digest(h.hexdigest(), written)
