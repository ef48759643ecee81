"""Release artifact format: the ``update.toml`` manifest and safe archive extraction.

An artifact is a gzip-compressed tar (``.tar.gz``/``.tgz``) or a zip archive
holding the component's files, optionally with a manifest ``update.toml`` at
the archive root declaring lifecycle hooks::

    [hooks.pre_install]
    command = ["sh", "-c", "./migrate.sh"]   # or a string, split with shlex
    timeout = 60                             # seconds, optional

Extraction never trusts the archive: paths escaping the release directory,
links pointing outside it, device files and archives that expand beyond the
configured limits are refused with ``UnsafeArchiveError``. A symlink's target is
resolved against the links already extracted (so ``l -> ..`` followed by
``l2 -> l/..`` is caught), and every link is checked again against the final
tree. Extended tar headers (pax, GNU long names) are bounded before ``tarfile``
reads them into memory, so a small archive cannot declare a huge header. Files are written
into a hidden temporary directory beside the destination, which is renamed
into place only once everything has been written and fsync'ed. The rules that
need no I/O (manifest, member names) live in ``client_agent.package_rules``, where
the server's publish check reads them too.
"""

from __future__ import annotations

import gzip
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from client_agent.errors import ArchiveError, UnsafeArchiveError
from client_agent.fsutil import fsync_dir
from client_agent.package_rules import (  # noqa: F401 - the format's rules, re-exported
    DEFAULT_HOOK_TIMEOUT, DEFAULT_MAX_MEMBERS, DEFAULT_MAX_TOTAL_BYTES, HOOK_NAMES, MANIFEST_NAME, ArchiveFormat,
    HookSpec, LinkTracker, Manifest, normalize_member_name, parse_manifest, parse_manifest_bytes,
    zip_directory_entries)

_MAX_SYMLINK_TARGET = 4096
#: Largest pax or GNU long-name header accepted; ``tarfile`` reads such a header whole into memory.
MAX_EXTENDED_HEADER = 64 * 1024
_CHUNK = 1024 * 1024

def load_manifest(release_dir: Path | str) -> Manifest:
    """Read ``update.toml`` from an extracted release; a missing manifest means no hooks."""
    path = Path(release_dir) / MANIFEST_NAME
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return Manifest()
    return parse_manifest_bytes(raw)


# --------------------------------------------------------------------------- extraction


@dataclass(frozen=True)
class ExtractStats:
    """What an extraction produced."""

    members: int
    total_bytes: int


def detect_format(path: Path | str) -> ArchiveFormat:
    """Identify the archive type from its magic bytes (the file name is not trusted)."""
    with open(path, "rb") as fh:
        head = fh.read(512)
    if head[:2] == b"\x1f\x8b":
        return "tar.gz"
    if head[257:262] == b"ustar":  # an uncompressed tar (rebuilt from a delta patch)
        return "tar"
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    raise ArchiveError(path, "unrecognised format (expected a gzip-compressed tar or a zip)")


def check_symlink_target(member: str, target: str) -> None:
    """Refuse a symlink at ``member`` whose ``target`` would resolve outside the release."""
    if not target or "\x00" in target:
        raise UnsafeArchiveError(member, "empty or invalid symlink target")
    if target.startswith("/"):
        raise UnsafeArchiveError(member, f"symlink target {target!r} is absolute")
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(member), target))
    if resolved == ".." or resolved.startswith("../"):
        raise UnsafeArchiveError(member, f"symlink target {target!r} leaves the release directory")


class _BoundedTarInfo(tarfile.TarInfo):
    """``tarfile``'s header parsing with a bound on extended headers and no sparse members.

    ``_proc_member`` is the step where tarfile, having read a 512-byte header, reads the
    extended header's data (``size`` bytes) into memory; the size is checked here first.
    """

    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:  # type: ignore[override]
        if self.type in (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE, tarfile.GNUTYPE_LONGNAME,
                         tarfile.GNUTYPE_LONGLINK) and self.size > MAX_EXTENDED_HEADER:
            raise UnsafeArchiveError(self.name, f"extended header of {self.size} bytes (the limit is "
                                                f"{MAX_EXTENDED_HEADER})")
        if self.type == tarfile.GNUTYPE_SPARSE:
            raise UnsafeArchiveError(self.name, "sparse files are not supported")
        return super()._proc_member(tarfile_)  # type: ignore[misc]


def extract_archive(
    path: Path | str,
    dest_dir: Path | str,
    *,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
    max_members: int = DEFAULT_MAX_MEMBERS,
) -> ExtractStats:
    """Safely extract the archive at ``path`` so that it becomes ``dest_dir``.

    ``dest_dir`` must not exist. Nothing appears at ``dest_dir`` unless the
    whole archive was extracted successfully.
    """
    path, dest = Path(path), Path(dest_dir)
    if dest.exists() or dest.is_symlink():
        raise ArchiveError(path, f"destination {str(dest)!r} already exists")
    fmt = detect_format(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    try:
        writer = _TreeWriter(tmp, max_total_bytes)
        try:
            if fmt == "zip":
                members = _extract_zip(path, writer, max_members)
            else:
                members = _extract_tar(path, writer, max_members, "r:" if fmt == "tar" else "r:gz")
        except (tarfile.TarError, zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error,
                gzip.BadGzipFile, EOFError, NotImplementedError) as exc:
            raise ArchiveError(path, f"corrupt or unsupported archive: {exc}") from exc
        writer.check_links()
        writer.sync_dirs()
        os.chmod(tmp, 0o755)
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(dest.parent)
    return ExtractStats(members=members, total_bytes=writer.total_bytes)


def _extract_tar(path: Path, writer: _TreeWriter, max_members: int, mode: str = "r:gz") -> int:
    count = 0
    declared = 0
    with tarfile.open(path, mode=mode, tarinfo=_BoundedTarInfo) as tar:
        for member in tar:
            count += 1
            if count > max_members:
                raise UnsafeArchiveError(member.name, f"archive has more than {max_members} members")
            if member.ischr() or member.isblk() or member.isfifo():
                raise UnsafeArchiveError(member.name, "device or fifo files are not allowed")
            if member.sparse is not None:
                raise UnsafeArchiveError(member.name, "sparse files are not supported")
            name = normalize_member_name(member.name)
            if member.isreg():
                declared += member.size
                if declared > writer.max_total_bytes:
                    raise UnsafeArchiveError(member.name, "declared expanded size exceeds the limit")
            if name is None:
                continue
            if member.isdir():
                writer.directory(name)
            elif member.issym():
                writer.symlink(name, member.linkname)
            elif member.islnk():
                writer.hardlink(name, member.linkname)
            elif member.isreg():
                src = tar.extractfile(member)
                assert src is not None  # regular members always have data
                with src:
                    writer.file(name, src, executable=bool(member.mode & 0o111))
            else:
                raise UnsafeArchiveError(member.name, "unsupported member type")
    return count


def _extract_zip(path: Path, writer: _TreeWriter, max_members: int) -> int:
    with open(path, "rb") as fh:
        if zip_directory_entries(fh) > max_members:
            raise UnsafeArchiveError("", f"archive has more than {max_members} members")
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        if len(infos) > max_members:
            raise UnsafeArchiveError(infos[max_members].filename,
                                     f"archive has more than {max_members} members")
        declared = 0
        for info in infos:
            declared += info.file_size
            if declared > writer.max_total_bytes:
                raise UnsafeArchiveError(info.filename, "declared expanded size exceeds the limit")
        for info in infos:
            mode = (info.external_attr >> 16) if info.create_system == 3 else 0
            kind = stat.S_IFMT(mode)
            name = normalize_member_name(info.filename)
            if kind in (stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO, stat.S_IFSOCK):
                raise UnsafeArchiveError(info.filename, "device or fifo files are not allowed")
            if info.flag_bits & 0x1:
                raise ArchiveError(path, f"member {info.filename!r} is encrypted")
            if name is None:
                continue
            if info.is_dir() or kind == stat.S_IFDIR:
                writer.directory(name)
            elif kind == stat.S_IFLNK:
                with zf.open(info) as src:
                    raw = src.read(_MAX_SYMLINK_TARGET + 1)
                if len(raw) > _MAX_SYMLINK_TARGET:
                    raise UnsafeArchiveError(info.filename, "symlink target too long")
                try:
                    target = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise UnsafeArchiveError(info.filename, "symlink target is not UTF-8") from exc
                writer.symlink(name, target)
            elif kind in (0, stat.S_IFREG):
                with zf.open(info) as src:
                    writer.file(name, src, executable=bool(mode & 0o111))
            else:
                raise UnsafeArchiveError(info.filename, "unsupported member type")
    return len(infos)


class _TreeWriter:
    """Creates members under ``root`` without ever following a symlink out of it."""

    def __init__(self, root: Path, max_total_bytes: int) -> None:
        self.root = root
        self.max_total_bytes = max_total_bytes
        self.total_bytes = 0
        self._dirs: set[str] = set()
        self._links = LinkTracker()  # symlinks written so far, resolved as the OS would follow them

    def directory(self, name: str) -> None:
        path = self._prepare(name)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            os.mkdir(path, 0o755)
        else:
            if not stat.S_ISDIR(st.st_mode):
                raise UnsafeArchiveError(name, "directory conflicts with an earlier member")
        self._dirs.add(name)

    def file(self, name: str, src: IO[bytes], *, executable: bool) -> None:
        path = self._prepare(name)
        self._clear(name, path)
        self._links.links.pop(name, None)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        with os.fdopen(os.open(path, flags, 0o600), "wb") as out:
            while chunk := src.read(_CHUNK):
                self.total_bytes += len(chunk)
                if self.total_bytes > self.max_total_bytes:
                    raise UnsafeArchiveError(name, "expanded size exceeds the limit")
                out.write(chunk)
            out.flush()
            os.fchmod(out.fileno(), 0o755 if executable else 0o644)
            os.fsync(out.fileno())

    def symlink(self, name: str, target: str) -> None:
        check_symlink_target(name, target)
        self._links.resolve(name, target)
        path = self._prepare(name)
        self._clear(name, path)
        self._links.links.pop(name, None)
        os.symlink(target, path)
        self._links.links[name] = target

    def check_links(self) -> None:
        """Check every symlink again against the finished tree (a later link can change where an earlier leads)."""
        root = os.path.realpath(self.root)
        for name, target in self._links.links.items():
            self._links.resolve(name, target)
            real = os.path.realpath(self.root / name)
            if real != root and not real.startswith(root + os.sep):
                raise UnsafeArchiveError(name, f"symlink target {target!r} leaves the release directory")

    def hardlink(self, name: str, target: str) -> None:
        try:
            clean = normalize_member_name(target)
        except UnsafeArchiveError:
            clean = None
        if clean is None:
            raise UnsafeArchiveError(name, f"hard link target {target!r} leaves the release directory")
        source = self._prepare(clean, create=False)
        try:
            st = os.lstat(source)
        except FileNotFoundError:
            raise UnsafeArchiveError(name, f"hard link target {target!r} is not in the archive") from None
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeArchiveError(name, f"hard link target {target!r} is not a regular file")
        path = self._prepare(name)
        self._clear(name, path)
        self._links.links.pop(name, None)
        os.link(source, path, follow_symlinks=False)

    def sync_dirs(self) -> None:
        for name in sorted(self._dirs, key=len, reverse=True):
            fsync_dir(self.root / name)
        fsync_dir(self.root)

    def _prepare(self, name: str, *, create: bool = True) -> Path:
        """Return root/name after making sure no parent component is a symlink."""
        current = self.root
        parts = name.split("/")
        for index, part in enumerate(parts[:-1]):
            current = current / part
            try:
                st = os.lstat(current)
            except FileNotFoundError:
                if not create:
                    break
                os.mkdir(current, 0o755)
                self._dirs.add("/".join(parts[: index + 1]))
                continue
            if stat.S_ISLNK(st.st_mode):
                raise UnsafeArchiveError(name, "path passes through a symlink")
            if not stat.S_ISDIR(st.st_mode):
                raise UnsafeArchiveError(name, "parent path is not a directory")
        return self.root / name

    @staticmethod
    def _clear(name: str, path: Path) -> None:
        """Remove an earlier member at ``path`` (later duplicates win, as in tar)."""
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            raise UnsafeArchiveError(name, "member conflicts with an earlier directory")
        os.unlink(path)
