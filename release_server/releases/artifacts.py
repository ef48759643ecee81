"""Publish-time check of an artifact: refuse what no installation's agent could install.

The agent installs a gzip-compressed tar or a zip whose members stay inside the
release folder and whose ``update.toml``, if any, is valid. :func:`check_artifact`
reads the spooled upload once (streamed: memory stays bounded whatever the size) and
applies the agent's own rules from ``client_agent.package_rules`` (no agent I/O is
imported): archive format by magic bytes, member names, member types (no devices or
fifos), links resolved against the links before them, hard links to earlier files,
member count and expanded size, and the manifest. Tar extended headers (pax, GNU long
names) are bounded before ``tarfile`` reads them, since it holds each one in memory: the
check is made by the header objects themselves (:class:`_BoundedTarInfo`) as ``tarfile``
meets them, so a ``.tar.gz`` is decompressed once, in the same pass as the listing.

A refusal is :class:`InvalidArtifactError` (400, field ``artifact``) naming the member.

A ``.tar.gz`` can also be checked while it is being received (:func:`check_artifact_blocks`),
from the same blocks that are hashed and written, so the publish path does not read
the file back and inflate it a second time. Its gzip stream is decompressed exactly as
``tarfile``'s stream reader (``r|gz``) does it and the same rules are applied to the
members; only a pass counts: anything else (a zip, whose directory is at its end, an
unusual gzip header, a refusal) leaves the verdict to :func:`check_artifact` on the
stored file, which words the refusal.
"""
from __future__ import annotations

import gzip
import io
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from client_agent.errors import ManifestError, UnsafeArchiveError
from client_agent.package_rules import (DEFAULT_MAX_MEMBERS, DEFAULT_MAX_TOTAL_BYTES, MANIFEST_NAME,
                                        MAX_MANIFEST_BYTES, MAX_SYMLINK_TARGET, LinkTracker, format_from_magic,
                                        normalize_member_name, parse_manifest_bytes, zip_directory_entries)

from ..errors import ValidationError

#: Largest tar extended header (pax record set, GNU long name or link) accepted.
MAX_EXTENDED_HEADER = 64 * 1024
_CHUNK = 1024 * 1024
_EXTENDED_TYPES = {tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE, tarfile.GNUTYPE_LONGNAME,
                   tarfile.GNUTYPE_LONGLINK}


class InvalidArtifactError(ValidationError):
    """The artifact is not something the agent can install."""

    code = "invalid_artifact"

    def __init__(self, reason: str, member: str | None = None) -> None:
        where = f"member {member!r}: " if member is not None else ""
        super().__init__(f"the artifact cannot be installed: {where}{reason}", field="artifact")
        self.member, self.reason = member, reason


@dataclass(frozen=True)
class ArtifactSummary:
    format: str
    members: int
    expanded_bytes: int
    has_manifest: bool


@dataclass
class _Listing:
    """Rules applied member by member, in archive order."""

    max_members: int
    max_total_bytes: int

    def __post_init__(self) -> None:
        self.count = 0
        self.total = 0
        self.kinds: dict[str, str] = {}
        self.links = LinkTracker()
        self.manifest = False

    def member(self, raw_name: str, kind: str, size: int, link: str | None = None) -> str | None:
        self.count += 1
        if self.count > self.max_members:
            raise InvalidArtifactError(f"the archive has more than {self.max_members} members", raw_name)
        if kind == "device":
            raise InvalidArtifactError("device or fifo files are not allowed", raw_name)
        if kind == "other":
            raise InvalidArtifactError("unsupported member type", raw_name)
        name = normalize_member_name(raw_name)
        if kind == "file":
            self.total += size
            if self.total > self.max_total_bytes:
                raise InvalidArtifactError(f"the archive expands beyond {self.max_total_bytes} bytes", raw_name)
        if name is None:
            return None
        through = self.links.passes_through_link(name)
        if through is not None:
            raise InvalidArtifactError(f"the path passes through the symlink {through!r}", raw_name)
        earlier = self.kinds.get(name)
        if earlier == "dir" and kind != "dir":
            raise InvalidArtifactError("conflicts with an earlier directory", raw_name)
        if earlier not in (None, "dir") and kind == "dir":
            raise InvalidArtifactError("directory conflicts with an earlier member", raw_name)
        if kind == "symlink":
            self.links.add(name, link or "")
        elif kind == "hardlink":
            try:
                target = normalize_member_name(link or "") if link else None
            except UnsafeArchiveError:
                target = None
            if target is None or self.kinds.get(target) != "file":
                raise InvalidArtifactError(f"hard link target {link!r} is not an earlier file of the archive",
                                           raw_name)
        else:
            self.links.links.pop(name, None)
        self.kinds[name] = "file" if kind == "hardlink" else kind
        if name == MANIFEST_NAME and kind != "file":
            raise InvalidArtifactError("the manifest must be a regular file", raw_name)
        return name

    def read_manifest(self, raw_name: str, src: BinaryIO) -> None:
        data = src.read(MAX_MANIFEST_BYTES + 1)
        if len(data) > MAX_MANIFEST_BYTES:
            raise InvalidArtifactError(f"the manifest is larger than {MAX_MANIFEST_BYTES} bytes", raw_name)
        try:
            parse_manifest_bytes(data)
        except ManifestError as e:
            raise InvalidArtifactError(f"invalid field {e.field!r}: {e.reason}", raw_name) from None
        self.manifest = True


def check_artifact(path: str | Path, *, max_members: int = DEFAULT_MAX_MEMBERS,
                   max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES) -> ArtifactSummary:
    """Refuse (``InvalidArtifactError``) an artifact the agent would not install."""
    with open(path, "rb") as fh:
        fmt = format_from_magic(fh.read(4))
    if fmt is None:
        raise InvalidArtifactError("not a gzip-compressed tar (.tar.gz) or a zip archive")
    listing = _Listing(max_members, max_total_bytes)
    try:
        if fmt == "zip":
            _check_zip(Path(path), listing)
        else:
            _check_tar(Path(path), listing)
    except UnsafeArchiveError as e:
        raise InvalidArtifactError(e.reason, e.member) from None
    except (tarfile.TarError, zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, gzip.BadGzipFile, EOFError,
            NotImplementedError, UnicodeDecodeError) as e:
        raise InvalidArtifactError(f"corrupt or unsupported archive: {e}") from None
    return ArtifactSummary(fmt, listing.count, listing.total, listing.manifest)


class _BoundedTarInfo(tarfile.TarInfo):
    """A tar header that refuses an extended header larger than ``MAX_EXTENDED_HEADER`` before it is read."""

    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        if self.size < 0:
            raise tarfile.HeaderError("negative member size")
        if self.type in _EXTENDED_TYPES and self.size > MAX_EXTENDED_HEADER:
            raise InvalidArtifactError(f"extended tar header of {self.size} bytes (at most {MAX_EXTENDED_HEADER})",
                                       self.name)
        return super()._proc_member(tarfile_)


def _check_tar(path: Path, listing: _Listing) -> None:
    with tarfile.open(path, mode="r|gz", tarinfo=_BoundedTarInfo, bufsize=_CHUNK) as tar:
        _list_tar(tar, listing)


def _list_tar(tar: tarfile.TarFile, listing: _Listing) -> None:
    for m in tar:
        if m.ischr() or m.isblk() or m.isfifo():
            kind = "device"
        elif m.isdir():
            kind = "dir"
        elif m.issym():
            kind = "symlink"
        elif m.islnk():
            kind = "hardlink"
        elif m.isreg():
            kind = "file"
        else:
            kind = "other"
        name = listing.member(m.name, kind, m.size, m.linkname if kind in ("symlink", "hardlink") else None)
        if name == MANIFEST_NAME:
            src = tar.extractfile(m)
            listing.read_manifest(m.name, src if src is not None else io.BytesIO())


#: Compressed bytes handed to zlib at a time, and the most it may give back for them: output
#: stays small (it is read or skipped at once) whatever the compression ratio.
_INFLATE_IN = 256 * 1024
_INFLATE_OUT = 1024 * 1024


def check_artifact_blocks(blocks: Iterator[memoryview], *, max_members: int = DEFAULT_MAX_MEMBERS,
                          max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES) -> bool:
    """True when ``blocks`` (the artifact's bytes, in order) are a ``.tar.gz`` that :func:`check_artifact` passes.

    Reads ``blocks`` only up to the end of the tar archive (the caller reads the rest) and
    keeps no view past the next block. False means "not decided here": a zip, a gzip
    header with an extra field, or an archive the rules refuse; :func:`check_artifact`
    of the stored file then gives the verdict and its wording.
    """
    stream = _GzipBlocks(blocks)
    try:
        if not stream.start():
            return False
        listing = _Listing(max_members, max_total_bytes)
        with tarfile.TarFile(fileobj=stream, mode="r", tarinfo=_BoundedTarInfo) as tar:  # type: ignore[arg-type]
            _list_tar(tar, listing)
    except (InvalidArtifactError, UnsafeArchiveError, tarfile.TarError, zlib.error, EOFError, NotImplementedError,
            UnicodeDecodeError):
        return False
    return True


class _GzipBlocks:
    """A gzip stream arriving as blocks, decompressed as ``tarfile``'s ``r|gz`` reader does it.

    That reader parses the gzip header, then inflates the raw deflate data that follows
    and serves it with ``read``, forward-only ``seek`` and ``tell``; it checks no trailer
    and stops where the deflate data ends. This does the same from views of the
    caller's blocks, skipping by inflating into small pieces that are dropped, so the
    bytes ``tarfile`` sees are the ones it would see reading the file.
    """

    def __init__(self, blocks: Iterator[memoryview]) -> None:
        self._blocks = blocks
        self._raw = memoryview(b"")  # what is left of the current block
        self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
        self._out = b""  # inflated, not yet read
        self._at = 0
        self.pos = 0

    def _next_block(self) -> bool:
        while not self._raw:
            block = next(self._blocks, None)
            if block is None:
                return False
            self._raw = block
        return True

    def _raw_bytes(self, n: int) -> bytes:
        out = b""
        while len(out) < n and self._next_block():
            take = self._raw[:n - len(out)]
            out += take
            self._raw = self._raw[len(take):]
        return out

    def _raw_through_nul(self) -> None:
        """Skip a zero-terminated header field (to the end of the blocks, when it never ends)."""
        while self._next_block():
            chunk = bytes(self._raw[:64 * 1024])
            i = chunk.find(b"\0")
            if i >= 0:
                self._raw = self._raw[i + 1:]
                return
            self._raw = self._raw[len(chunk):]

    def start(self) -> bool:
        """Read the gzip header; False when it is not one this reader takes as tarfile's does."""
        head = self._raw_bytes(10)
        if len(head) < 10 or head[:3] != b"\037\213\010":
            return False
        flag = head[3]
        if flag & 4:
            return False  # tarfile's reader mistakes the extra field for deflate data: leave it to check_artifact
        if flag & 8:
            self._raw_through_nul()
        if flag & 16:
            self._raw_through_nul()
        if flag & 2:
            self._raw_bytes(2)
        return True

    def _inflate(self) -> bool:
        """The next piece of output into ``_out``; False at the end of the deflate data or of the blocks."""
        while True:
            tail = self._zlib.unconsumed_tail
            if tail:
                out = self._zlib.decompress(tail, _INFLATE_OUT)
            elif self._zlib.eof or not self._next_block():
                return False
            else:
                piece = self._raw[:_INFLATE_IN]
                self._raw = self._raw[len(piece):]
                out = self._zlib.decompress(piece, _INFLATE_OUT)
            if out:
                self._out, self._at = out, 0
                return True

    def read(self, size: int) -> bytes:
        parts = []
        need = size
        while need > 0:
            avail = len(self._out) - self._at
            if not avail:
                if not self._inflate():
                    break
                continue
            take = min(avail, need)
            parts.append(self._out[self._at:self._at + take])
            self._at += take
            need -= take
        data = b"".join(parts)
        self.pos += len(data)
        return data

    def seek(self, pos: int) -> int:
        if pos < self.pos:
            raise tarfile.StreamError("seeking backwards is not allowed")
        skip = pos - self.pos
        while skip > 0:
            avail = len(self._out) - self._at
            if not avail:
                if not self._inflate():
                    break
                continue
            take = min(avail, skip)
            self._at += take
            skip -= take
            self.pos += take
        return self.pos

    def tell(self) -> int:
        return self.pos

    def close(self) -> None:
        pass


def _check_zip(path: Path, listing: _Listing) -> None:
    _check_zip_directory_size(path, listing.max_members)
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            mode = (info.external_attr >> 16) if info.create_system == 3 else 0
            ftype = stat.S_IFMT(mode)
            if info.flag_bits & 0x1:
                raise InvalidArtifactError("the member is encrypted", info.filename)
            link = None
            if ftype in (stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO, stat.S_IFSOCK):
                kind = "device"
            elif info.is_dir() or ftype == stat.S_IFDIR:
                kind = "dir"
            elif ftype == stat.S_IFLNK:
                kind = "symlink"
                with zf.open(info) as src:
                    raw = src.read(MAX_SYMLINK_TARGET + 1)
                if len(raw) > MAX_SYMLINK_TARGET:
                    raise InvalidArtifactError("symlink target too long", info.filename)
                link = raw.decode("utf-8")
            elif ftype in (0, stat.S_IFREG):
                kind = "file"
            else:
                kind = "other"
            name = listing.member(info.filename, kind, info.file_size, link)
            if name == MANIFEST_NAME:
                with zf.open(info) as src:
                    listing.read_manifest(info.filename, src)


def _check_zip_directory_size(path: Path, max_members: int) -> None:
    """Refuse a zip whose central directory lists too many entries, before zipfile loads it."""
    with open(path, "rb") as fh:
        try:
            entries = zip_directory_entries(fh)
        except UnsafeArchiveError as e:
            raise zipfile.BadZipFile(e.reason) from None
    if entries > max_members:
        raise InvalidArtifactError(f"the archive has more than {max_members} members")