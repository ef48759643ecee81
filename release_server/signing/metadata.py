"""Building TUF metadata: pure functions from plain values to signed-ready objects.

No database and no storage here: :mod:`.services` gathers the state under the lock and
calls these. Layout of the repository:

* ``root`` (offline keys), ``targets``, ``snapshot``, ``timestamp`` (online keys);
* ``targets`` lists no target itself; it delegates every path to ``2**bit_length``
  hash bins (``SuccinctRoles``, names ``bins-00`` ...), signed with the targets key, so
  a client downloads one small bin for a target whatever the repository's size;
* once a component is claimed (see :mod:`.claims`), ``targets`` is signed offline with
  the root keys and delegates, in order, ``<component>/*`` and ``<component>/*/*`` to a
  terminating role named for each claimed component (publisher keys and threshold),
  then every other path to the online role ``unclaimed``, which delegates to the hash
  bins (PEP 480's layout);
* consistent snapshots: ``<version>.<role>.json`` files and hash-prefixed target files.

Target paths: an artifact is ``<component>/<filename>``; its changelog is the target
``<component>/changelogs/<version>.md`` (file names cannot contain ``/``, so the two
never collide).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone  # noqa: F401 - re-exported for callers
from typing import Any

from securesystemslib.signer import Key, Signer
from tuf.api.metadata import (SPECIFICATION_VERSION, DelegatedRole, Delegations, MetaFile, Metadata, Root, Snapshot,
                              SuccinctRoles, TargetFile, Targets, Timestamp)
from tuf.api.serialization.json import JSONSerializer

BINS_PREFIX = "bins"
UNCLAIMED = "unclaimed"
#: role names a claimed component cannot take
RESERVED_ROLES = frozenset({"root", "targets", "snapshot", "timestamp", UNCLAIMED})
SPEC_VERSION = ".".join(SPECIFICATION_VERSION)
METADATA_PREFIX = "tuf/metadata/"
TARGETS_PREFIX = "tuf/targets/"

_SERIALIZER = JSONSerializer(compact=True)


def expiry(now: datetime, seconds: int) -> datetime:
    """An expiry date ``seconds`` after ``now``, whole seconds (TUF dates have no fraction)."""
    return (now + timedelta(seconds=seconds)).astimezone(timezone.utc).replace(microsecond=0)


def to_bytes(md: Metadata) -> bytes:
    return md.to_bytes(_SERIALIZER)


def metadata_key(role: str, version: int | None) -> str:
    """The storage key of a metadata file (timestamp has no version in its name)."""
    if role == "timestamp" or version is None:
        return f"{METADATA_PREFIX}{role}.json"
    return f"{METADATA_PREFIX}{version}.{role}.json"


def hash_prefixed(path: str, sha256: str) -> str:
    """``a/b/name`` -> ``a/b/<sha256>.name`` (the consistent-snapshot file name of a target)."""
    dirname, sep, base = path.rpartition("/")
    return f"{dirname}{sep}{sha256}.{base}"


def split_hash_prefixed(name: str) -> tuple[str, str] | None:
    """Inverse of :func:`hash_prefixed`: ``(path, sha256)`` or None if the name has no hash prefix."""
    dirname, sep, base = name.rpartition("/")
    digest, dot, rest = base.partition(".")
    if not dot or not rest or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        return None
    return f"{dirname}{sep}{rest}", digest


def succinct_roles(keyids: list[str], bit_length: int) -> SuccinctRoles:
    return SuccinctRoles(keyids, 1, bit_length, BINS_PREFIX)


def bin_for(path: str, bit_length: int) -> str:
    """The hash bin that lists a target path."""
    return succinct_roles([], bit_length).get_role_for_target(path)


def all_bins(bit_length: int) -> list[str]:
    return list(succinct_roles([], bit_length).get_roles())


def artifact_path(component: str, filename: str) -> str:
    return f"{component}/{filename}"


def changelog_path(component: str, version: str) -> str:
    return f"{component}/changelogs/{version}.md"


def delta_path(component: str, from_version: str, to_version: str, extension: str) -> str:
    """Target path of a delta patch: ``<component>/deltas/<from>-<to>.<ext>``."""
    return f"{component}/deltas/{from_version}-{to_version}.{extension}"


def delta_custom(*, component: str, from_version: str, to_version: str, patch_format: str,
                 from_target: Mapping[str, Any], to_target: Mapping[str, Any], base_tar: Mapping[str, Any],
                 tar: Mapping[str, Any]) -> dict[str, Any]:
    """The signed ``custom`` field of a delta patch target.

    ``from_target`` and ``to_target`` are the full artifacts' target paths, SHA-256 and
    lengths; ``base_tar`` is the uncompressed tar stream the patch applies to (that of
    ``from_target``) and ``tar`` the one it produces (that of ``to_target``), each by
    SHA-256 and length. A client trusts nothing about a patch beyond these fields of a
    target that TUF verified.
    """
    def entry(m: Mapping[str, Any], *keys: str) -> dict[str, Any]:
        return {k: m[k] for k in keys}

    return {
        "kind": "delta", "component": component, "from_version": from_version, "to_version": to_version,
        "format": patch_format, "from": entry(from_target, "path", "sha256", "length"),
        "to": entry(to_target, "path", "sha256", "length"), "base_tar": entry(base_tar, "sha256", "length"),
        "tar": entry(tar, "sha256", "length"),
    }


def changelog_bytes(text: str) -> bytes:
    return (text or "").encode("utf-8")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def artifact_custom(*, component: str, version: str, channels: Iterable[str], critical: bool, yanked: bool,
                    min_from_version: str | None, requires: Mapping[str, str], changelog_target: str,
                    changelog_sha256: str, changelog_length: int) -> dict[str, Any]:
    """The signed ``custom`` field of an artifact target: everything that changes an agent's decision."""
    return {
        "component": component, "version": version, "channels": sorted(channels), "critical": bool(critical),
        "yanked": bool(yanked), "min_from_version": min_from_version, "requires": dict(requires or {}),
        "changelog": {"path": changelog_target, "sha256": changelog_sha256, "length": changelog_length},
    }


def target_file(path: str, sha256: str, length: int, custom: dict[str, Any]) -> TargetFile:
    return TargetFile(length, {"sha256": sha256}, path, {"custom": custom})


# ---------------------------------------------------------------- roles


def new_root(*, root_keys: list[Key], threshold: int, online: Mapping[str, Key], expires: datetime,
             version: int = 1) -> Metadata[Root]:
    """An unsigned root naming the root keys (with their threshold) and one key per online role."""
    root = Root(version=version, spec_version=SPEC_VERSION, expires=expires, consistent_snapshot=True)
    for key in root_keys:
        root.add_key(key, "root")
    root.roles["root"].threshold = threshold
    for role, key in online.items():
        root.add_key(key, role)
        root.roles[role].threshold = 1
    return Metadata(root)


def build_targets(version: int, expires: datetime, bins_key: Key, bit_length: int) -> Metadata[Targets]:
    """Top-level targets: no targets of its own, every path delegated to the hash bins."""
    delegations = Delegations(keys={bins_key.keyid: bins_key}, roles=None,
                              succinct_roles=succinct_roles([bins_key.keyid], bit_length))
    return Metadata(Targets(version=version, spec_version=SPEC_VERSION, expires=expires, targets={},
                            delegations=delegations))


def claimed_paths(component: str) -> list[str]:
    """The path patterns of a claimed component's role (artifacts, then changelogs and deltas)."""
    return [f"{component}/*", f"{component}/*/*"]


@dataclass(frozen=True)
class ClaimSpec:
    """One claimed component's delegation: its publisher keys and threshold."""

    component: str
    keys: tuple[Key, ...]
    threshold: int


def build_offline_targets(version: int, expires: datetime, claims: Iterable[ClaimSpec],
                          unclaimed_key: Key) -> Metadata[Targets]:
    """Top-level targets of the claimed layout: claimed roles first (terminating), then ``unclaimed``."""
    keys: dict[str, Key] = {unclaimed_key.keyid: unclaimed_key}
    roles: dict[str, DelegatedRole] = {}
    for claim in sorted(claims, key=lambda c: c.component):
        for key in claim.keys:
            keys[key.keyid] = key
        roles[claim.component] = DelegatedRole(claim.component, sorted(k.keyid for k in claim.keys),
                                               claim.threshold, True, paths=claimed_paths(claim.component))
    roles[UNCLAIMED] = DelegatedRole(UNCLAIMED, [unclaimed_key.keyid], 1, False, paths=["*", "*/*", "*/*/*"])
    return Metadata(Targets(version=version, spec_version=SPEC_VERSION, expires=expires, targets={},
                            delegations=Delegations(keys=keys, roles=roles)))


def build_unclaimed(version: int, expires: datetime, bins_key: Key, bit_length: int) -> Metadata[Targets]:
    """The online role of the claimed layout: every unclaimed path delegated to the hash bins."""
    return build_targets(version, expires, bins_key, bit_length)


def build_bin(version: int, expires: datetime, targets: Iterable[TargetFile]) -> Metadata[Targets]:
    return Metadata(Targets(version=version, spec_version=SPEC_VERSION, expires=expires,
                            targets={t.path: t for t in targets}))


def build_snapshot(version: int, expires: datetime, role_versions: Mapping[str, int]) -> Metadata[Snapshot]:
    """Snapshot listing targets and every bin by version (no hashes: keeps it small)."""
    meta = {f"{name}.json": MetaFile(v) for name, v in sorted(role_versions.items())}
    return Metadata(Snapshot(version=version, spec_version=SPEC_VERSION, expires=expires, meta=meta))


def build_timestamp(version: int, expires: datetime, snapshot_version: int) -> Metadata[Timestamp]:
    return Metadata(Timestamp(version=version, spec_version=SPEC_VERSION, expires=expires,
                              snapshot_meta=MetaFile(snapshot_version)))


def sign(md: Metadata, signers: Iterable[Signer]) -> Metadata:
    md.signatures.clear()
    for signer in signers:
        md.sign(signer, append=True)
    return md
