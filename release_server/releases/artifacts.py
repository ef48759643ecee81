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
"""
from __future__ import annotations

import gzip
import io
import stat
import struct
import tarfile
import zipfile
import zlib
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