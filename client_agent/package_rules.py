"""The artifact format's rules, free of I/O: shared by the agent and the server's publish check.

What an ``update.toml`` may say (:func:`parse_manifest`), which archive member names
are acceptable (:func:`normalize_member_name`), where a symbolic link may point once
the links before it are taken into account (:class:`LinkTracker`), and how an archive
is recognised from its first bytes (:func:`format_from_magic`). The agent applies them
while extracting (``client_agent.package``); the release server applies the same rules
when an artifact is published, so it refuses what no installation could install.
Importing this module opens no file and starts nothing.
"""

from __future__ import annotations

import posixpath
import shlex
import tomllib
from dataclasses import dataclass, field
from typing import Any, Literal

from client_agent.errors import ManifestError, UnsafeArchiveError

MANIFEST_NAME = "update.toml"
HOOK_NAMES = ("pre_install", "post_install", "health_check", "rollback")
DEFAULT_HOOK_TIMEOUT = 60.0
DEFAULT_MAX_TOTAL_BYTES = 2 * 1024**3
DEFAULT_MAX_MEMBERS = 100_000
MAX_SYMLINK_TARGET = 4096

ArchiveFormat = Literal["tar.gz", "tar", "zip"]


#: Largest manifest accepted (it names a few hooks).
MAX_MANIFEST_BYTES = 64 * 1024
#: Most symbolic links followed while resolving one link target.
MAX_LINK_HOPS = 40


def format_from_magic(head: bytes) -> ArchiveFormat | None:
    """The archive type told by the first four bytes, or None when neither."""
    if head[:2] == b"\x1f\x8b":
        return "tar.gz"
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    return None


# --------------------------------------------------------------------------- manifest


@dataclass(frozen=True)
class HookSpec:
    """One hook declared in the manifest: its name, argv and timeout in seconds."""

    name: str
    command: tuple[str, ...]
    timeout: float = DEFAULT_HOOK_TIMEOUT


@dataclass(frozen=True)
class Manifest:
    """Parsed ``update.toml``; ``hooks`` maps hook names to their specs."""

    hooks: dict[str, HookSpec] = field(default_factory=dict)

    def hook(self, name: str) -> HookSpec | None:
        return self.hooks.get(name)


def parse_manifest(text: str) -> Manifest:
    """Parse and validate manifest text; raise ``ManifestError`` naming the offending field."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(MANIFEST_NAME, f"not valid TOML: {exc}") from exc
    unknown = sorted(set(data) - {"hooks"})
    if unknown:
        raise ManifestError(unknown[0], "unknown top-level key")
    hooks_table = data.get("hooks", {})
    if not isinstance(hooks_table, dict):
        raise ManifestError("hooks", "must be a table")
    hooks: dict[str, HookSpec] = {}
    for name, table in hooks_table.items():
        hooks[name] = _parse_hook(name, table)
    return Manifest(hooks=hooks)


def parse_manifest_bytes(raw: bytes) -> Manifest:
    """Parse a manifest file's bytes (UTF-8)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestError(MANIFEST_NAME, "not valid UTF-8") from exc
    return parse_manifest(text)


def _parse_hook(name: str, table: Any) -> HookSpec:
    prefix = f"hooks.{name}"
    if name not in HOOK_NAMES:
        raise ManifestError(prefix, f"unknown hook (expected one of {', '.join(HOOK_NAMES)})")
    if not isinstance(table, dict):
        raise ManifestError(prefix, "must be a table")
    unknown = sorted(set(table) - {"command", "timeout"})
    if unknown:
        raise ManifestError(f"{prefix}.{unknown[0]}", "unknown key")
    if "command" not in table:
        raise ManifestError(f"{prefix}.command", "is required")
    raw_command = table["command"]
    if isinstance(raw_command, str):
        try:
            command = shlex.split(raw_command)
        except ValueError as exc:
            raise ManifestError(f"{prefix}.command", f"cannot be split: {exc}") from exc
    elif isinstance(raw_command, list) and all(isinstance(a, str) for a in raw_command):
        command = list(raw_command)
    else:
        raise ManifestError(f"{prefix}.command", "must be a string or a list of strings")
    if not command or not command[0]:
        raise ManifestError(f"{prefix}.command", "must not be empty")
    timeout = table.get("timeout", DEFAULT_HOOK_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ManifestError(f"{prefix}.timeout", "must be a positive number of seconds")
    return HookSpec(name=name, command=tuple(command), timeout=float(timeout))


# --------------------------------------------------------------------------- member names and links


def normalize_member_name(name: str) -> str | None:
    """Return the clean relative path of an archive member, or None for the root entry.

    Raises ``UnsafeArchiveError`` for absolute paths, ``..`` components,
    backslashes and NUL bytes.
    """
    if "\x00" in name:
        raise UnsafeArchiveError(name, "NUL byte in member name")
    if "\\" in name:
        raise UnsafeArchiveError(name, "backslash in member name")
    if name.startswith("/"):
        raise UnsafeArchiveError(name, "absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchiveError(name, "'..' path component")
    return "/".join(parts) if parts else None


class LinkTracker:
    """Resolves link targets against the links already seen in the same archive.

    A link is judged by where it finally leads, following every earlier link on the
    way (``sub/l -> ..`` then ``sub/l2 -> l/../..`` leaves the release although each
    target alone looks harmless). Feed members in archive order.
    """

    def __init__(self) -> None:
        self.links: dict[str, str] = {}

    def passes_through_link(self, name: str) -> str | None:
        """The first parent of ``name`` that is a recorded link, if any."""
        parts = name.split("/")
        for i in range(1, len(parts)):
            prefix = "/".join(parts[:i])
            if prefix in self.links:
                return prefix
        return None

    def resolve(self, member: str, target: str) -> list[str]:
        """The components of where ``target`` (a link at ``member``) leads; raises when outside."""
        if not target or "\x00" in target:
            raise UnsafeArchiveError(member, "empty or invalid symlink target")
        if len(target) > MAX_SYMLINK_TARGET:
            raise UnsafeArchiveError(member, "symlink target too long")
        if target.startswith("/"):
            raise UnsafeArchiveError(member, f"symlink target {target!r} is absolute")
        pending = target.split("/")[::-1]
        resolved = [p for p in posixpath.dirname(member).split("/") if p]
        hops = 0
        while pending:
            part = pending.pop()
            if part in ("", "."):
                continue
            if part == "..":
                if not resolved:
                    raise UnsafeArchiveError(member, f"symlink target {target!r} leaves the release directory")
                resolved.pop()
                continue
            resolved.append(part)
            here = "/".join(resolved)
            if here in self.links:
                hops += 1
                if hops > MAX_LINK_HOPS:
                    raise UnsafeArchiveError(member, f"symlink target {target!r} follows too many links")
                link_target = self.links[here]
                if link_target.startswith("/"):
                    raise UnsafeArchiveError(member, f"symlink target {target!r} leads to an absolute link")
                resolved.pop()
                pending.extend(link_target.split("/")[::-1])
        return resolved

    def add(self, member: str, target: str) -> None:
        """Check the link at ``member`` and remember it."""
        self.resolve(member, target)
        self.links[member] = target


def zip_directory_entries(fh: Any) -> int:
    """How many entries a zip's central directory declares, read from its end records alone.

    ``zipfile`` builds an object for every entry of the directory before anything can be
    counted, so the count is taken first, from the end of central directory record or,
    when that says 0xFFFF (a zip64 archive), from the zip64 record its locator points to.
    ``fh`` is a binary file open for reading. Raises ``UnsafeArchiveError`` when no end
    record is found or the zip64 records do not hold together.
    """
    import struct

    fh.seek(0, 2)
    end = fh.tell()
    start = max(0, end - 65536 - 22)  # the record is last, after a comment of at most 65,535 bytes
    fh.seek(start)
    tail = fh.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < 22:
        raise UnsafeArchiveError("", "no end of central directory record")
    entries = struct.unpack("<H", tail[at + 10:at + 12])[0]
    if entries != 0xFFFF:
        return entries
    locator_at = start + at - 20  # the zip64 end locator sits just before the end record
    if locator_at < 0:
        raise UnsafeArchiveError("", "zip64 end of central directory locator missing")
    fh.seek(locator_at)
    loc = fh.read(20)
    if len(loc) != 20 or loc[:4] != b"PK\x06\x07":
        raise UnsafeArchiveError("", "zip64 end of central directory locator missing")
    record_at = struct.unpack("<Q", loc[8:16])[0]
    if record_at > end - 56:
        raise UnsafeArchiveError("", "zip64 end of central directory record out of range")
    fh.seek(record_at)
    record = fh.read(56)
    if len(record) != 56 or record[:4] != b"PK\x06\x06":
        raise UnsafeArchiveError("", "zip64 end of central directory record missing")
    return struct.unpack("<Q", record[32:40])[0]
