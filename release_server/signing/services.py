"""The TUF repository's rules: bootstrap, metadata changes, refresh, rotation, export.

Every change to signed metadata runs inside the caller's transaction, under the
repository lock (:func:`release_server.db.lock_row` on the single ``tuf_lock`` row:
``SELECT ... FOR UPDATE`` on PostgreSQL, the ``BEGIN IMMEDIATE`` transaction on
SQLite). Under the lock the current versions are read from ``tuf_roles``, the changed
roles are rebuilt from the database (bins from ``tuf_targets`` and the releases they
point to), signed, and written to blob storage as ``tuf/metadata/<version>.<role>.json``;
snapshot follows, and ``tuf/metadata/timestamp.json`` is written last. The caller
commits once.

A release change touches only the bin(s) listing its targets, then snapshot and
timestamp; the top-level ``targets`` role (which only delegates to the bins) changes
when its key rotates or it nears expiry.

If the repository is not bootstrapped, release changes sign nothing (a warning is
logged) so a server can run before its key ceremony.

Should a transaction fail after its files were written (the commit itself failing),
storage holds metadata with versions the database does not know. The next change
notices (the stored timestamp is ahead of the database) and numbers its versions above
the orphaned ones, so no client ever sees two different files with one version.
"""
from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from flask import current_app
from securesystemslib.signer import Key, Signer, SSlibKey
from sqlalchemy import select
from sqlalchemy.orm import Session
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import Metadata, Root, Snapshot, TargetFile, Targets, Timestamp

from ..db import lock_row
from ..deltas.models import ReleaseDelta
from ..releases.models import Release
from ..storage import BlobNotFoundError, BlobStorage, get_storage
from ..storage.base import blob_key_for
from . import keys as keys_mod
from . import metadata as md
from .errors import (AlreadyBootstrappedError, DuplicateTargetPathError, InvalidRootError, MetadataNotFoundError,
                     NotBootstrappedError, SigningError, TargetNotFoundError, ThresholdNotMetError)
from .models import LOCK_ID, TufClaim, TufLock, TufRole, TufTarget

log = logging.getLogger(__name__)

DAY = 86400
#: ``Session.info`` flag: the transaction wrote a new timestamp (see :mod:`.serving`).
TIMESTAMP_CHANGED = "tuf_timestamp_changed"


def utcnow() -> datetime:
    """The clock of the signing package (tests move it to simulate time passing)."""
    return datetime.now(timezone.utc)


# ---------------------------------------------------------------- settings


def _cfg_number(config: Mapping[str, Any], key: str, default: float, cast: Callable[[Any], Any]) -> Any:
    raw = config.get(key, default)
    try:
        value = cast(str(raw).replace("_", "")) if isinstance(raw, str) else cast(raw)
    except (TypeError, ValueError):
        raise SigningError(f"{key}: expected a number, got {raw!r}", field=key, code="bad_config") from None
    if value <= 0:
        raise SigningError(f"{key}: must be positive, got {raw!r}", field=key, code="bad_config")
    return value


@dataclass(frozen=True)
class RepositorySettings:
    """Lifetimes (seconds) of each role, the refresh margin and the number of hash bins.

    Configuration keys: ``TUF_ROOT_EXPIRY`` (1 year), ``TUF_TARGETS_EXPIRY`` (90 days,
    also the bins), ``TUF_SNAPSHOT_EXPIRY`` (7 days), ``TUF_TIMESTAMP_EXPIRY`` (1 day),
    ``TUF_REFRESH_MARGIN`` (0.25: a role is re-signed once less than this fraction of
    its lifetime is left), ``TUF_BIN_BITS`` (8: 256 bins; read at bootstrap only).
    """

    root_expiry: int = 365 * DAY
    targets_expiry: int = 90 * DAY
    snapshot_expiry: int = 7 * DAY
    timestamp_expiry: int = 1 * DAY
    refresh_margin: float = 0.25
    bin_bits: int = 8

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> RepositorySettings:
        d = cls()
        margin = _cfg_number(config, "TUF_REFRESH_MARGIN", d.refresh_margin, float)
        if margin >= 1:
            raise SigningError("TUF_REFRESH_MARGIN must be a fraction below 1", field="TUF_REFRESH_MARGIN",
                               code="bad_config")
        bits = _cfg_number(config, "TUF_BIN_BITS", d.bin_bits, int)
        if not 1 <= bits <= 14:
            raise SigningError("TUF_BIN_BITS must be between 1 and 14", field="TUF_BIN_BITS", code="bad_config")
        return cls(root_expiry=_cfg_number(config, "TUF_ROOT_EXPIRY", d.root_expiry, int),
                   targets_expiry=_cfg_number(config, "TUF_TARGETS_EXPIRY", d.targets_expiry, int),
                   snapshot_expiry=_cfg_number(config, "TUF_SNAPSHOT_EXPIRY", d.snapshot_expiry, int),
                   timestamp_expiry=_cfg_number(config, "TUF_TIMESTAMP_EXPIRY", d.timestamp_expiry, int),
                   refresh_margin=margin, bin_bits=bits)

    def lifetime(self, role: str) -> int:
        if role == "root":
            return self.root_expiry
        if role == "snapshot":
            return self.snapshot_expiry
        if role == "timestamp":
            return self.timestamp_expiry
        return self.targets_expiry  # targets and every bin

    def due(self, role: str, expires: datetime, now: datetime) -> bool:
        """True when the role has less than the margin of its lifetime left (or has expired)."""
        return expires - now <= timedelta(seconds=self.lifetime(role) * self.refresh_margin)


def settings() -> RepositorySettings:
    return RepositorySettings.from_config(current_app.config)


# ---------------------------------------------------------------- reading


def repository_ready(session: Session) -> bool:
    """True once a root has been bootstrapped into the server."""
    return session.get(TufRole, "root") is not None


def root_version(session: Session) -> int:
    row = session.get(TufRole, "root")
    if row is None:
        raise NotBootstrappedError()
    return row.version


def trusted_root_json(session: Session) -> bytes:
    """The current root metadata, byte for byte (what an agent is given at enrollment)."""
    return get_storage().read(md.metadata_key("root", root_version(session)))


def current_root(session: Session) -> Metadata[Root]:
    return Metadata[Root].from_bytes(trusted_root_json(session))


def load_server_signers(session: Session) -> list[str]:
    """Load every online key this node signs with (``KeyLoadError`` names a missing one).

    Once a component is claimed, top-level targets is signed offline: the bins key is then
    the one the top-level targets names for ``unclaimed``. Returns the roles checked.
    """
    root = current_root(session).signed
    cfg, path = current_app.config, current_app.instance_path
    unclaimed = session.get(TufRole, md.UNCLAIMED)
    if unclaimed is None:
        keys_mod.load_online_signer(cfg, path, root, "targets")
    else:
        top = Metadata[Targets].from_bytes(get_storage().read(md.metadata_key("targets",
                                                                              session.get(TufRole, "targets").version)))
        dele = top.signed.delegations
        assert dele is not None and dele.roles is not None
        keys_mod.load_signer_for_keys(cfg, path, [dele.keys[k] for k in dele.roles[md.UNCLAIMED].keyids], "targets")
    for role in ("snapshot", "timestamp"):
        keys_mod.load_online_signer(cfg, path, root, role)
    return ["targets" if unclaimed is None else md.UNCLAIMED, "snapshot", "timestamp"]


def target_path_for(release: Release) -> str:
    """The TUF target path of a release's artifact: ``<component>/<filename>``."""
    return md.artifact_path(release.component.name, release.artifact_filename)


def changelog_target_for(release: Release) -> str:
    """The TUF target path of a release's changelog: ``<component>/changelogs/<version>.md``."""
    return md.changelog_path(release.component.name, release.version)


def artifact_target_path(component: str, filename: str) -> str:
    """The TUF target path an artifact with this file name would have."""
    return md.artifact_path(component, filename)


def ensure_target_path_free(session: Session, path: str) -> None:
    """DuplicateTargetPathError when a signed target already has this path (checked before an upload)."""
    if session.get(TufTarget, path) is not None:
        raise DuplicateTargetPathError(path)


def metadata_bytes(name: str) -> bytes:
    """A stored metadata file by its served name (``3.snapshot.json``...); MetadataNotFoundError if absent."""
    try:
        return get_storage().read(md.METADATA_PREFIX + name)
    except BlobNotFoundError:
        raise MetadataNotFoundError(name) from None


def timestamp_bytes(session: Session, write_session: Callable[[], Session] | None = None) -> bytes:
    """The current timestamp, re-signed on the spot when it is within its refresh margin.

    ``write_session`` opens a separate writing session for that re-signing (a request
    that only reads holds a read-only session); it is committed and closed here.
    """
    row = session.get(TufRole, "timestamp")
    if row is None:
        raise MetadataNotFoundError("timestamp.json")
    cfg = settings()
    if cfg.due("timestamp", row.expires, utcnow()) and write_session is not None:
        ws = write_session()
        try:
            refresh(ws)
            ws.commit()
        finally:
            ws.close()
    return metadata_bytes("timestamp.json")


@dataclass(frozen=True)
class TargetLocation:
    """Where the bytes of a hash-prefixed target file are."""

    storage_key: str
    sha256: str
    length: int
    filename: str


def locate_target(session: Session, name: str) -> TargetLocation:
    """Map a hash-prefixed target file name (``server/<sha256>.server-1.0.tar.gz``) to stored bytes.

    Artifacts are served straight from their content-addressed blob (no copy);
    changelogs are small files under ``tuf/targets/``.
    """
    parsed = md.split_hash_prefixed(name)
    if parsed is None:
        raise TargetNotFoundError(name)
    path, digest = parsed
    row = session.get(TufTarget, path)
    if row is None or row.sha256 != digest:
        raise TargetNotFoundError(name)
    return TargetLocation(_target_source(row, name), row.sha256, row.length, path.rsplit("/", 1)[-1])


def _target_source(row: TufTarget, served: str) -> str:
    """Storage key of a target's bytes: the release's blob, a delta's content-addressed blob, or a small file."""
    if row.kind == "artifact":
        return row.release.blob_key
    if row.kind == "delta":
        return blob_key_for(row.sha256)
    return md.TARGETS_PREFIX + served


# ---------------------------------------------------------------- the locked change


class _Change:
    """One metadata change under the repository lock: bump, sign, write; timestamp last."""

    def __init__(self, session: Session, *, now: datetime | None = None,
                 signer_overrides: Mapping[str, Signer] | None = None,
                 offline_signers: Iterable[Signer] = ()) -> None:
        self.session = session
        self.storage: BlobStorage = get_storage()
        self.settings = settings()
        self.now = now or utcnow()
        if lock_row(session, TufLock, LOCK_ID) is None:
            session.add(TufLock(id=LOCK_ID))
            session.flush()
            lock_row(session, TufLock, LOCK_ID)
        rows = session.scalars(select(TufRole).execution_options(populate_existing=True)).all()
        self.roles: dict[str, TufRole] = {r.name: r for r in rows}
        if "root" not in self.roles:
            raise NotBootstrappedError()
        self.root: Metadata[Root] = Metadata[Root].from_bytes(
            self.storage.read(md.metadata_key("root", self.roles["root"].version)))
        self.bins = sorted(n for n in self.roles if n.startswith(md.BINS_PREFIX + "-"))
        self.bit_length = int(math.log2(len(self.bins))) if self.bins else self.settings.bin_bits
        self.overrides = dict(signer_overrides or {})
        self.offline_signers = list(offline_signers)
        self._signers: dict[str, Signer] = {}
        self.claims: dict[str, TufClaim] = {c.component: c for c in session.scalars(
            select(TufClaim).execution_options(populate_existing=True))}
        self.bins_keys_override: list[Key] | None = None
        self.floors = self._orphan_floors()
        self.written: list[str] = []

    # versions

    def _orphan_floors(self) -> dict[str, int]:
        """Versions already used by files of a transaction that did not commit (see the module doc)."""
        ts_row = self.roles.get("timestamp")
        if ts_row is None:
            return {}
        try:
            ts = Metadata[Timestamp].from_bytes(self.storage.read(md.metadata_key("timestamp", None)))
        except BlobNotFoundError:
            return {}
        if ts.signed.version <= ts_row.version:
            return {}
        log.warning("stored timestamp v%d is ahead of the database (v%d): numbering above the orphaned files",
                    ts.signed.version, ts_row.version)
        floors = {"timestamp": ts.signed.version}
        snap_v = ts.signed.snapshot_meta.version
        floors["snapshot"] = snap_v
        try:
            snap = Metadata[Snapshot].from_bytes(self.storage.read(md.metadata_key("snapshot", snap_v)))
            for fname, meta in snap.signed.meta.items():
                floors[fname.removesuffix(".json")] = meta.version
        except BlobNotFoundError:
            pass
        return floors

    def _bump(self, name: str) -> tuple[int, datetime]:
        row = self.roles[name]
        row.version = max(row.version, self.floors.get(name, 0)) + 1
        lifetime = self.settings.root_expiry if name == "targets" and self.claimed_layout else \
            self.settings.lifetime(name)
        row.expires = md.expiry(self.now, lifetime)
        return row.version, row.expires

    # layout

    @property
    def claimed_layout(self) -> bool:
        """True once top-level targets is offline and delegates to claimed roles and ``unclaimed``."""
        return md.UNCLAIMED in self.roles

    def top_targets(self) -> Metadata[Targets]:
        return Metadata[Targets].from_bytes(self.storage.read(md.metadata_key("targets", self.roles["targets"].version)))

    def bins_keys(self) -> list[Key]:
        """The online key(s) of the hash bins, newest first."""
        if self.bins_keys_override is not None:
            return list(self.bins_keys_override)
        if not self.claimed_layout:
            return list(reversed(keys_mod.role_keys(self.root.signed, "targets")))
        dele = self.top_targets().signed.delegations
        assert dele is not None and dele.roles is not None
        return [dele.keys[k] for k in reversed(dele.roles[md.UNCLAIMED].keyids)]

    def role_of(self, path: str) -> str:
        """The role that lists a target path: its claimed component's role, or a hash bin."""
        component = path.split("/", 1)[0]
        return component if component in self.claims else md.bin_for(path, self.bit_length)

    # signing

    def signer(self, role: str) -> Signer:
        if role.startswith(md.BINS_PREFIX + "-") or role == md.UNCLAIMED:
            if "targets" in self.overrides:
                return self.overrides["targets"]
            if "bins" not in self._signers:
                self._signers["bins"] = keys_mod.load_signer_for_keys(
                    current_app.config, current_app.instance_path, self.bins_keys(), "targets")
            return self._signers["bins"]
        if role == "targets" and self.claimed_layout:
            raise SigningError("the top-level targets role is signed offline with the root keys", code="offline_role")
        if role in self.overrides:
            return self.overrides[role]
        if role not in self._signers:
            self._signers[role] = keys_mod.load_online_signer(current_app.config, current_app.instance_path,
                                                              self.root.signed, role)
        return self._signers[role]

    def _write(self, name: str, meta: Metadata) -> None:
        md.sign(meta, [self.signer(name)])
        self.write_signed(name, meta)

    def write_signed(self, name: str, meta: Metadata) -> None:
        """Store a role signed elsewhere (offline, or by its publishers)."""
        self.storage.write(md.metadata_key(name, meta.signed.version), md.to_bytes(meta),
                           content_type="application/json")
        self.written.append(name)

    # roles

    def resign_bins(self, names: Iterable[str]) -> None:
        names = sorted(set(names))
        if not names:
            return
        by_bin: dict[str, list[TargetFile]] = {n: [] for n in names}
        stmt = select(TufTarget).where(TufTarget.role.in_(names)).execution_options(populate_existing=True)
        for row in self.session.scalars(stmt).unique():
            by_bin[row.role].append(target_file_for(row))
        for name in names:
            version, expires = self._bump(name)
            self._write(name, md.build_bin(version, expires, by_bin[name]))

    def resign_targets(self) -> None:
        if self.claimed_layout:
            self.resign_offline_targets()
            return
        version, expires = self._bump("targets")
        bins_key = keys_mod.public_key_of(self.signer("targets"))
        self._write("targets", md.build_targets(version, expires, bins_key, self.bit_length))

    def claim_specs(self, claims: Iterable[TufClaim] | None = None) -> list[md.ClaimSpec]:
        return [md.ClaimSpec(c.component, tuple(SSlibKey.from_dict(k, dict(v)) for k, v in c.keys.items()),
                             c.threshold) for c in (self.claims.values() if claims is None else claims)]

    def offline_targets(self, claims: Iterable[TufClaim] | None = None) -> Metadata[Targets]:
        """The next top-level targets of the claimed layout, signed with the root keys given."""
        unclaimed_key = keys_mod.public_key_of(self.signer(md.UNCLAIMED))  # named by the current targets
        version, expires = self._bump("targets")
        meta = md.build_offline_targets(version, expires, self.claim_specs(claims), unclaimed_key)
        meta.signatures.clear()
        wanted = set(self.root.signed.roles["targets"].keyids)
        for signer in self.offline_signers:
            if signer.public_key.keyid in wanted and signer.public_key.keyid not in meta.signatures:
                meta.sign(signer, append=True)
        result = self.root.signed.get_verification_result("targets", meta.signed_bytes, meta.signatures)
        if not result.verified:
            raise ThresholdNotMetError("targets (root keys)", len(result.signed), result.threshold)
        return meta

    def resign_offline_targets(self) -> None:
        self.write_signed("targets", self.offline_targets())

    def resign_unclaimed(self) -> None:
        version, expires = self._bump(md.UNCLAIMED)
        key = keys_mod.public_key_of(self.signer(md.UNCLAIMED))
        self._write(md.UNCLAIMED, md.build_unclaimed(version, expires, key, self.bit_length))

    def finish(self, *, snapshot: bool = True) -> None:
        """Snapshot (unless only the timestamp is re-signed), then timestamp, written last.

        Roles that orphaned files numbered above the database are re-signed too, so the
        new snapshot never lists a version lower than one a client may have seen.
        """
        orphaned = {n for n, v in self.floors.items() if n in self.roles and v > self.roles[n].version}
        self.resign_bins(n for n in orphaned if n.startswith(md.BINS_PREFIX + "-") and n not in self.written)
        if "targets" in orphaned and "targets" not in self.written and not self.claimed_layout:
            self.resign_targets()
        if md.UNCLAIMED in orphaned and md.UNCLAIMED not in self.written:
            self.resign_unclaimed()
        if snapshot or orphaned - {"timestamp"}:
            versions = {n: r.version for n, r in self.roles.items() if n not in ("root", "snapshot", "timestamp")}
            version, expires = self._bump("snapshot")
            self._write("snapshot", md.build_snapshot(version, expires, versions))
        version, expires = self._bump("timestamp")
        self._write("timestamp", md.build_timestamp(version, expires, self.roles["snapshot"].version))
        self.session.info[TIMESTAMP_CHANGED] = True  # this process serves the new one once it commits
        self.session.flush()

    # targets

    def add_release(self, release: Release) -> set[str]:
        """Record a release's two targets (artifact, changelog); returns the bins they fall in."""
        bins = set()
        cl_bytes = md.changelog_bytes(release.changelog)
        cl_sha = md.sha256_hex(cl_bytes)
        cl_path = changelog_target_for(release)
        self.storage.write(md.TARGETS_PREFIX + md.hash_prefixed(cl_path, cl_sha), cl_bytes,
                           content_type="text/markdown; charset=utf-8")
        for path, kind, sha, length in ((target_path_for(release), "artifact", release.artifact_sha256,
                                         release.artifact_size),
                                        (cl_path, "changelog", cl_sha, len(cl_bytes))):
            existing = self.session.get(TufTarget, path, populate_existing=True)
            if existing is not None and existing.release_id != release.id:
                raise DuplicateTargetPathError(path)
            role = self.role_of(path)
            if existing is None:
                self.session.add(TufTarget(path=path, role=role, kind=kind, release_id=release.id, sha256=sha,
                                           length=length))
            if role not in self.claims:
                bins.add(role)
        self.session.flush()
        return bins

    def bins_of(self, release: Release) -> set[str]:
        rows = self.session.scalars(select(TufTarget.role).where(TufTarget.release_id == release.id,
                                                                 TufTarget.kind == "artifact")).all()
        return {r for r in rows if r not in self.claims} if rows else self.add_release(release)


def target_file_for(row: TufTarget) -> TargetFile:
    """The signed entry of one target, from its row and its release."""
    return _custom_overrides(row, None)


def _custom_overrides(row: TufTarget, overrides: Mapping[str, Any] | None) -> TargetFile:
    """The signed entry of one target; ``overrides`` (``yanked``, ``channels``) replace the
    release's values in an artifact's custom field (a change not made yet)."""
    rel = row.release
    ov = dict(overrides or {})
    if row.kind == "delta":
        return _delta_target_file(row)
    if row.kind == "changelog":
        custom: dict[str, Any] = {"component": rel.component.name, "version": rel.version, "kind": "changelog"}
        return md.target_file(row.path, row.sha256, row.length, custom)
    cl = md.changelog_bytes(rel.changelog)
    custom = md.artifact_custom(
        component=rel.component.name, version=rel.version, channels=ov.get("channels", rel.channel_names),
        critical=rel.critical, yanked=ov.get("yanked", rel.yanked), min_from_version=rel.min_from_version, requires=rel.requires or {},
        changelog_target=changelog_target_for(rel), changelog_sha256=md.sha256_hex(cl), changelog_length=len(cl))
    return md.target_file(row.path, row.sha256, row.length, custom)


def _delta_target_file(row: TufTarget) -> TargetFile:
    session = Session.object_session(row)
    delta = session.scalar(select(ReleaseDelta).where(ReleaseDelta.target_path == row.path)) if session else None
    if delta is None:
        raise SigningError(f"delta target {row.path} has no delta record", code="missing_delta")
    frm, to = delta.from_release, delta.to_release
    custom = md.delta_custom(
        component=to.component.name, from_version=frm.version, to_version=to.version, patch_format=delta.method,
        from_target={"path": target_path_for(frm), "sha256": frm.artifact_sha256, "length": frm.artifact_size},
        to_target={"path": target_path_for(to), "sha256": to.artifact_sha256, "length": to.artifact_size},
        base_tar={"sha256": delta.base_tar_sha256, "length": delta.base_tar_length},
        tar={"sha256": delta.tar_sha256, "length": delta.tar_length})
    return md.target_file(row.path, row.sha256, row.length, custom)


def add_delta_targets(session: Session, targets: Iterable[tuple[str, str, int, int]]) -> None:
    """Sign delta patches as targets, in one metadata change: (path, sha256, length, to-release id) each.

    The patch bytes must already be in storage under their content-addressed key, and
    each path must have its ``release_deltas`` row (its custom field is built from it).
    Does nothing (with a warning) before the repository is bootstrapped.
    """
    targets = list(targets)
    if not targets:
        return
    if not repository_ready(session):
        log.warning("TUF repository not bootstrapped: %d delta patch(es) not signed", len(targets))
        return
    change = _Change(session)
    bins = set()
    claimed = [t for t in targets if t[0].split("/", 1)[0] in change.claims]
    if claimed:  # a patch of a claimed component would need its publishers' signatures
        log.info("%d delta patch(es) of claimed components not signed", len(claimed))
        targets = [t for t in targets if t not in claimed]
    for path, sha, length, release_id in targets:
        existing = session.get(TufTarget, path, populate_existing=True)
        if existing is not None and existing.sha256 != sha:
            raise DuplicateTargetPathError(path)
        role = md.bin_for(path, change.bit_length)
        if existing is None:
            session.add(TufTarget(path=path, role=role, kind="delta", release_id=release_id, sha256=sha,
                                  length=length))
        bins.add(role)
    session.flush()
    change.resign_bins(bins)
    change.finish()


# ---------------------------------------------------------------- release hook


def on_release_event(session: Session, release: Release, event: str) -> None:
    """Release hook: publish adds the release's targets; every event re-signs its bin(s).

    A claimed component's role is signed by its publishers (see :mod:`.claims`): publish
    only records its targets and marks the release as waiting for signatures; the other
    events sign nothing here.
    """
    if not repository_ready(session):
        log.warning("TUF repository not bootstrapped: %s of %s %s is not signed", event,
                    release.component.name, release.version)
        return
    if session.get(TufClaim, release.component.name) is not None:
        if event == "publish":
            _Change(session).add_release(release)
            release.signatures_pending = True
            session.flush()
        return
    change = _Change(session)
    bins = change.add_release(release) if event == "publish" else change.bins_of(release)
    change.resign_bins(bins)
    change.finish()


# ---------------------------------------------------------------- bootstrap


def parse_root(data: bytes) -> Metadata[Root]:
    try:
        root = Metadata[Root].from_bytes(data)
    except Exception as e:  # noqa: BLE001 - DeserializationError, ValueError, KeyError ...
        raise InvalidRootError(f"not a TUF root metadata file: {e}") from e
    if not isinstance(root.signed, Root):
        raise InvalidRootError("not a root metadata file")
    return root


def check_self_signed(root: Metadata[Root]) -> None:
    result = root.signed.get_verification_result("root", root.signed_bytes, root.signatures)
    if not result.verified:
        raise ThresholdNotMetError("root", len(result.signed), result.threshold)


def bootstrap(session: Session, root_data: bytes, *, now: datetime | None = None) -> Metadata[Root]:
    """Load a root produced by the key ceremony, then sign targets, bins, snapshot and timestamp v1.

    Every release already published becomes a target.
    """
    root = parse_root(root_data)
    check_self_signed(root)
    if not root.signed.consistent_snapshot:
        raise InvalidRootError("the root must enable consistent snapshots")
    for role in keys_mod.ONLINE_ROLES:  # fail before anything is written if a key is missing
        keys_mod.load_online_signer(current_app.config, current_app.instance_path, root.signed, role)
    now = now or utcnow()
    if root.signed.is_expired(now):
        raise InvalidRootError(f"the root expired on {root.signed.expires:%Y-%m-%d}")
    if lock_row(session, TufLock, LOCK_ID) is None:
        session.add(TufLock(id=LOCK_ID))
        session.flush()
    existing = session.get(TufRole, "root", populate_existing=True)
    if existing is not None:
        raise AlreadyBootstrappedError(existing.version)
    storage = get_storage()
    storage.write(md.metadata_key("root", root.signed.version), root_data, content_type="application/json")
    cfg = settings()
    session.add(TufRole(name="root", version=root.signed.version, expires=root.signed.expires))
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    for name in ["targets", "snapshot", "timestamp", *md.all_bins(cfg.bin_bits)]:
        session.add(TufRole(name=name, version=0, expires=epoch))
    session.flush()
    change = _Change(session, now=now)
    for release in session.scalars(select(Release).order_by(Release.id)):
        change.add_release(release)
    change.resign_bins(change.bins)
    change.resign_targets()
    change.finish()
    return root


# ---------------------------------------------------------------- refresh


def refresh(session: Session, *, now: datetime | None = None, force: bool = False) -> list[str]:
    """Re-sign every online role within its refresh margin (all of them with ``force``).

    Returns the roles re-signed (empty when nothing was due). Root is signed offline:
    a root near expiry is logged as an error for the operator.
    """
    if not repository_ready(session):
        return []
    change = _Change(session, now=now)
    cfg, now = change.settings, change.now
    due = [n for n, r in change.roles.items() if n != "root" and (force or cfg.due(n, r.expires, now))]
    offline = {n for n in due if n in change.claims or (n == "targets" and change.claimed_layout)}
    for name in sorted(offline):
        row = change.roles[name]
        if cfg.due(name, row.expires, now):
            log.error("TUF role %s v%d expires on %s and is signed offline: %s", name, row.version,
                      row.expires.isoformat(), "its publishers renew it with 'release-server sign --renew'"
                      if name in change.claims else "re-sign it with 'release-server tuf renew-targets'")
    due = [n for n in due if n not in offline]
    root_row = change.roles["root"]
    if cfg.due("root", root_row.expires, now):
        log.error("TUF root v%d expires on %s: sign a new root with 'release-server keys rotate-root'",
                  root_row.version, root_row.expires.isoformat())
    if not due:
        return []
    change.resign_bins(n for n in due if n.startswith(md.BINS_PREFIX + "-"))
    if "targets" in due:
        change.resign_targets()
    if md.UNCLAIMED in due:
        change.resign_unclaimed()
    change.finish(snapshot=bool(change.written) or "snapshot" in due)
    return sorted(set(change.written))


# ---------------------------------------------------------------- rotation


def _sign_root(new: Metadata[Root], old: Metadata[Root], signers: Iterable[Signer]) -> None:
    """Sign a new root with every usable signer; both the old and the new threshold must be met."""
    wanted = set(old.signed.roles["root"].keyids) | set(new.signed.roles["root"].keyids)
    new.signatures.clear()
    for signer in signers:
        if signer.public_key.keyid in wanted and signer.public_key.keyid not in new.signatures:
            new.sign(signer, append=True)
    for who, trusted in (("current", old.signed), ("new", new.signed)):
        result = trusted.get_verification_result("root", new.signed_bytes, new.signatures)
        if not result.verified:
            raise ThresholdNotMetError(f"root ({who} root keys)", len(result.signed), result.threshold)
    try:
        old.verify_delegate("root", new)
        new.verify_delegate("root", new)
    except UnsignedMetadataError as e:  # pragma: no cover - checked just above
        raise SigningError(str(e)) from e


def _next_root(change: _Change, base: Metadata[Root]) -> Metadata[Root]:
    new = Metadata[Root].from_bytes(md.to_bytes(base))
    new.signed.version = base.signed.version + 1
    new.signed.expires = md.expiry(change.now, change.settings.root_expiry)
    return new


def _store_root(change: _Change, new: Metadata[Root]) -> None:
    change.storage.write(md.metadata_key("root", new.signed.version), md.to_bytes(new),
                         content_type="application/json")
    row = change.roles["root"]
    row.version, row.expires = new.signed.version, new.signed.expires
    change.root = new
    change.session.flush()


def rotate_root(session: Session, *, current_signers: list[Signer], new_signers: list[Signer],
                threshold: int, now: datetime | None = None) -> Metadata[Root]:
    """Replace the root keys: root N+1 names the new keys and is signed by both thresholds."""
    if threshold < 1 or threshold > len(new_signers):
        raise SigningError(f"threshold {threshold} is impossible with {len(new_signers)} key(s)",
                           field="threshold", code="invalid")
    change = _Change(session, now=now)
    old = change.root
    new = _next_root(change, old)
    for keyid in list(new.signed.roles["root"].keyids):
        new.signed.revoke_key(keyid, "root")
    for signer in new_signers:
        new.signed.add_key(keys_mod.public_key_of(signer), "root")
    new.signed.roles["root"].threshold = threshold
    if change.claimed_layout:  # the offline top-level targets is signed with the root keys
        bins_keys = change.bins_keys()
        for keyid in list(new.signed.roles["targets"].keyids):
            new.signed.revoke_key(keyid, "targets")
        for signer in new_signers:
            new.signed.add_key(keys_mod.public_key_of(signer), "targets")
        new.signed.roles["targets"].threshold = threshold
    _sign_root(new, old, [*current_signers, *new_signers])
    _store_root(change, new)
    if change.claimed_layout:
        change.bins_keys_override = bins_keys
        change.offline_signers = list(new_signers)
        change.resign_offline_targets()
        change.finish()
    return new


def rotate_online_keys(session: Session, *, root_signers: list[Signer], new_signers: Mapping[str, Signer],
                       now: datetime | None = None) -> list[int]:
    """Replace online keys without a moment where a client cannot verify.

    Root N+1 lists the old and the new key of each rotated role; the roles are then
    re-signed with the new keys (targets rotation re-signs every bin, since the bins are
    signed with the targets key); root N+2 drops the old keys. Clients always update
    root before the other roles, and every moment's files verify under the newest root.
    Returns the root versions written.
    """
    unknown = set(new_signers) - set(keys_mod.ONLINE_ROLES)
    if unknown or not new_signers:
        raise SigningError(f"roles to rotate must be among {', '.join(keys_mod.ONLINE_ROLES)}", field="role",
                           code="invalid")
    change = _Change(session, now=now, signer_overrides=new_signers, offline_signers=root_signers)
    old = change.root
    in_root = {r: s for r, s in new_signers.items() if not (r == "targets" and change.claimed_layout)}
    old_keyids = {role: list(old.signed.roles[role].keyids) for role in in_root}
    both = _next_root(change, old)
    for role, signer in in_root.items():
        both.signed.add_key(keys_mod.public_key_of(signer), role)
    _sign_root(both, old, root_signers)
    _store_root(change, both)

    if "targets" in new_signers:
        # claimed layout: the bins key is named by the offline top-level targets, re-signed here
        change.resign_bins(change.bins)
        if change.claimed_layout:
            change.resign_unclaimed()
        change.resign_targets()
    change.finish(snapshot=bool(change.written) or "snapshot" in new_signers)

    final = _next_root(change, both)
    for role, keyids in old_keyids.items():
        for keyid in keyids:
            if keyid != in_root[role].public_key.keyid:
                final.signed.revoke_key(keyid, role)
    _sign_root(final, both, root_signers)
    _store_root(change, final)
    return [both.signed.version, final.signed.version]


# ---------------------------------------------------------------- status


@dataclass(frozen=True)
class RoleStatus:
    name: str
    version: int
    expires: datetime


def status(session: Session) -> list[RoleStatus]:
    """Version and expiry of root, targets, snapshot, timestamp and a summary of the bins."""
    rows = session.scalars(select(TufRole)).all()
    out = [RoleStatus(r.name, r.version, r.expires) for r in rows if not r.name.startswith(md.BINS_PREFIX + "-")]
    bins = [r for r in rows if r.name.startswith(md.BINS_PREFIX + "-")]
    if bins:
        out.append(RoleStatus(f"{md.BINS_PREFIX}-* ({len(bins)})", max(r.version for r in bins),
                              min(r.expires for r in bins)))
    order = {"root": 0, "targets": 1, "snapshot": 2, "timestamp": 3}
    return sorted(out, key=lambda s: order.get(s.name, 4))


# ---------------------------------------------------------------- export


@dataclass
class ExportSummary:
    written: int = 0
    skipped: int = 0
    files: list[str] = field(default_factory=list)


class _ExportDest:
    def exists(self, name: str, size: int) -> bool: ...
    def write(self, name: str, chunks: Iterator[bytes]) -> None: ...


class _FolderDest(_ExportDest):
    def __init__(self, root: Path) -> None:
        self.root = root

    def exists(self, name: str, size: int) -> bool:
        p = self.root / name
        return p.is_file() and p.stat().st_size == size

    def write(self, name: str, chunks: Iterator[bytes]) -> None:
        import tempfile

        dest = self.root / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".export-")
        try:
            with os.fdopen(fd, "wb") as fh:
                for chunk in chunks:
                    fh.write(chunk)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


class _ChunkReader:
    """A read(n) file object over an iterator of chunks (for boto3's streaming upload)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = b""

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self._buf) < n:
            try:
                self._buf += next(self._chunks)
            except StopIteration:
                break
        if n < 0:
            data, self._buf = self._buf, b""
        else:
            data, self._buf = self._buf[:n], self._buf[n:]
        return data


def _bucket_dest(url: str, config: Mapping[str, Any]) -> _ExportDest:
    from ..storage.s3 import S3Storage

    bucket, _, prefix = url[len("s3://"):].partition("/")
    store = S3Storage(bucket=bucket, endpoint_url=config.get("S3_ENDPOINT_URL"), region=config.get("S3_REGION"),
                      access_key_id=config.get("S3_ACCESS_KEY_ID"),
                      secret_access_key=config.get("S3_SECRET_ACCESS_KEY"), prefix=prefix)

    class Dest(_ExportDest):
        def exists(self, name: str, size: int) -> bool:
            try:
                return store.size(name) == size
            except BlobNotFoundError:
                return False

        def write(self, name: str, chunks: Iterator[bytes]) -> None:
            ctype = "application/json" if name.endswith(".json") else "application/octet-stream"
            store.client.upload_fileobj(_ChunkReader(chunks), store.bucket, store.prefix + name,
                                        ExtraArgs={"ContentType": ctype})

    return Dest()


def export_tree(session: Session, dest: str) -> ExportSummary:
    """Copy the served tree (``metadata/``, ``targets/``) to a folder or ``s3://bucket/prefix``.

    The layout is exactly the URL layout under ``/tuf/``, with real target files, so a
    proxy or CDN can serve it statically. Versioned files never change, so those already
    present (same size) are skipped; ``metadata/timestamp.json`` is read first and
    written last, so the exported tree is always complete for the timestamp it serves.
    """
    if not repository_ready(session):
        raise NotBootstrappedError()
    out = _bucket_dest(dest, current_app.config) if dest.startswith("s3://") else _FolderDest(Path(dest))
    storage = get_storage()
    timestamp = metadata_bytes("timestamp.json")
    summary = ExportSummary()

    def copy(name: str, size: int, chunks: Callable[[], Iterator[bytes]]) -> None:
        if out.exists(name, size):
            summary.skipped += 1
            return
        out.write(name, chunks())
        summary.written += 1
        summary.files.append(name)

    for key in storage.list(md.METADATA_PREFIX):
        name = key[len("tuf/"):]
        if name == "metadata/timestamp.json":
            continue
        copy(name, storage.size(key), lambda key=key: storage.iter_chunks(key))
    for row in session.scalars(select(TufTarget).order_by(TufTarget.path)).unique():
        served = md.hash_prefixed(row.path, row.sha256)
        source = _target_source(row, served)
        copy("targets/" + served, row.length, lambda source=source: storage.iter_chunks(source))
    out.write("metadata/timestamp.json", iter([timestamp]))
    summary.written += 1
    summary.files.append("metadata/timestamp.json")
    return summary
