"""Delta patches between releases: which pairs, building them, signing them, their figures.

For a release R of a component, patches are made from each of the ``DELTA_FROM_RELEASES``
(3) newest earlier versions of that component to R, with the format of
:mod:`client_agent.deltapatch` (per tar member: copies of unchanged files, Zstandard
raw-dictionary diffs of changed ones). A patch that is not at least ``DELTA_MIN_SAVING``
(0.2, so 20%) smaller than R's artifact is not kept. A kept patch is stored
content-addressed like an artifact and signed as the TUF target
``<component>/deltas/<from>-<to>.rsdpatch`` whose custom field names both full targets
(see :func:`release_server.signing.metadata.delta_custom`).

Work happens outside any database transaction: a short read gathers the pairs, the
files are built in a temporary folder (``DELTA_WORK_DIR``, default the system's), and
a short write records the rows and signs all new targets in one metadata change.
Memory stays bounded by ``DELTA_MEMBER_LIMIT`` (64 MiB): the tar streams are read
from disk, never held whole.

The worker runs :func:`worker_job` every ``DELTA_INTERVAL`` seconds (60): it makes the
missing patches to the newest release of each component. ``release-server deltas
generate`` and ``POST /api/v1/components/<c>/releases/<v>/deltas`` do it on demand.
"""
from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import current_app
from packaging.version import Version
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from client_agent import deltapatch

from ..errors import ReleaseServerError, ValidationError
from ..fleet.models import UpdateReport
from ..releases import services as releases
from ..releases.models import Component, Release
from ..signing import metadata as md
from ..signing import services as signing
from ..signing.models import TufClaim
from ..storage import BlobStorage, get_storage
from .models import READY, ReleaseDelta

log = logging.getLogger(__name__)

SessionFactory = Callable[[bool], Session]


class DeltaError(ReleaseServerError):
    """Root of the delta package's errors."""


class UnknownFromVersionError(DeltaError, ValidationError):
    def __init__(self, version: str) -> None:
        super().__init__(f"no earlier release {version!r} of this component to make a patch from",
                         field="from_versions")


# ---------------------------------------------------------------- settings


def _number(config: Mapping[str, Any], key: str, default: float, cast: Callable[[Any], Any]) -> Any:
    raw = config.get(key, default)
    try:
        value = cast(raw)
    except (TypeError, ValueError):
        raise DeltaError(f"{key}: expected a number, got {raw!r}", field=key, code="bad_config") from None
    if value < 0:
        raise DeltaError(f"{key}: must not be negative", field=key, code="bad_config")
    return value


@dataclass(frozen=True)
class DeltaSettings:
    """``DELTA_FROM_RELEASES`` (3; 0 turns patches off), ``DELTA_MIN_SAVING`` (0.2),
    ``DELTA_MEMBER_LIMIT`` (64 MiB), ``DELTA_MAX_TAR_BYTES`` (8 GiB: a tar stream larger
    than this gets no patch), ``DELTA_WORK_DIR`` (temporary files)."""

    from_releases: int = 3
    min_saving: float = 0.2
    member_limit: int = deltapatch.DEFAULT_MEMBER_LIMIT
    max_tar_bytes: int = 8 * 1024 ** 3
    work_dir: str | None = None

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> DeltaSettings:
        d = cls()
        saving = _number(config, "DELTA_MIN_SAVING", d.min_saving, float)
        if saving >= 1:
            raise DeltaError("DELTA_MIN_SAVING must be a fraction below 1", field="DELTA_MIN_SAVING",
                             code="bad_config")
        return cls(from_releases=_number(config, "DELTA_FROM_RELEASES", d.from_releases, int),
                   min_saving=saving, member_limit=_number(config, "DELTA_MEMBER_LIMIT", d.member_limit, int),
                   max_tar_bytes=_number(config, "DELTA_MAX_TAR_BYTES", d.max_tar_bytes, int),
                   work_dir=config.get("DELTA_WORK_DIR") or None)


def settings() -> DeltaSettings:
    return DeltaSettings.from_config(current_app.config)


# ---------------------------------------------------------------- which pairs (pure)


def choose_from_versions(versions: Sequence[str], to_version: str, count: int,
                         done: set[str]) -> list[str]:
    """The ``count`` newest versions below ``to_version`` that have no patch attempt yet."""
    target = Version(to_version)
    older = sorted((v for v in versions if Version(v) < target), key=Version, reverse=True)[:count]
    return [v for v in older if v not in done]


def worth_keeping(patch_length: int, full_length: int, min_saving: float) -> bool:
    """A patch is kept only when it saves at least ``min_saving`` of the full download."""
    return patch_length <= full_length * (1 - min_saving)


# ---------------------------------------------------------------- building


@dataclass(frozen=True)
class Pair:
    component: str
    from_id: int
    to_id: int
    from_version: str
    to_version: str
    from_key: str
    to_key: str
    to_size: int


@dataclass(frozen=True)
class Built:
    pair: Pair
    status: str
    reason: str | None = None
    patch: Path | None = None
    digest: deltapatch.Digest | None = None
    base_tar: deltapatch.Digest | None = None
    tar: deltapatch.Digest | None = None
    seconds: float = 0.0


@dataclass(frozen=True)
class DeltaResult:
    """What became of one pair."""

    from_version: str
    to_version: str
    status: str
    length: int | None
    full_length: int
    reason: str | None = None
    seconds: float = 0.0


def _local_copy(storage: BlobStorage, key: str, work: Path, name: str) -> Path:
    path = storage.local_path(key)
    if path is not None:
        return path
    dest = work / name
    with open(dest, "wb") as out:
        for chunk in storage.iter_chunks(key):
            out.write(chunk)
    return dest


def build(pair: Pair, cfg: DeltaSettings, storage: BlobStorage, work: Path) -> Built:
    """Build the patch of one pair in ``work``; decides whether it is kept."""
    started = time.monotonic()
    try:
        old = _local_copy(storage, pair.from_key, work, "from.artifact")
        new = _local_copy(storage, pair.to_key, work, "to.artifact")
        base_tar = deltapatch.to_tar(old, work / "from.tar", max_bytes=cfg.max_tar_bytes)
        tar = deltapatch.to_tar(new, work / "to.tar", max_bytes=cfg.max_tar_bytes)
    except deltapatch.PatchFormatError as exc:
        return Built(pair, "unsupported", str(exc), seconds=time.monotonic() - started)
    patch = work / "patch"
    deltapatch.build_patch(work / "from.tar", work / "to.tar", patch, member_limit=cfg.member_limit)
    digest = deltapatch.file_digest(patch)
    seconds = time.monotonic() - started
    if not worth_keeping(digest.length, pair.to_size, cfg.min_saving):
        return Built(pair, "too_large", f"patch of {digest.length} bytes saves less than "
                     f"{cfg.min_saving:.0%} of {pair.to_size}", digest=digest, seconds=seconds)
    return Built(pair, READY, patch=patch, digest=digest, base_tar=base_tar, tar=tar, seconds=seconds)


def _pairs(session: Session, component: str, version: str, cfg: DeltaSettings,
           from_versions: Sequence[str] | None, force: bool) -> list[Pair]:
    release = releases.get_release(session, component, version)
    if session.get(TufClaim, release.component.name) is not None:
        return []  # a claimed component's targets are signed by its publishers only: no server-made patches
    rows = releases.releases_of(session, release.component, None, True)
    by_version = {r.version: r for r in rows}
    attempts = {d.from_release.version: d for d in
                session.scalars(select(ReleaseDelta).where(ReleaseDelta.to_release_id == release.id))}
    done = {v for v, d in attempts.items() if d.status == READY or not force}
    if from_versions is not None:
        wanted = []
        for v in from_versions:
            if v not in by_version or Version(v) >= Version(version):
                raise UnknownFromVersionError(v)
            if v not in done:
                wanted.append(v)
    else:
        wanted = choose_from_versions([r.version for r in rows if not r.yanked], version, cfg.from_releases, done)
    return [Pair(component, by_version[v].id, release.id, v, version, by_version[v].blob_key, release.blob_key,
                 release.artifact_size) for v in wanted]


def _record(session: Session, built: list[Built]) -> None:
    storage = get_storage()
    signed = []
    for b in built:
        p = b.pair
        old = session.scalar(select(ReleaseDelta).where(ReleaseDelta.from_release_id == p.from_id,
                                                        ReleaseDelta.to_release_id == p.to_id))
        if old is not None:
            if old.status == READY:
                continue  # made meanwhile by another process
            session.delete(old)
            session.flush()
        row = ReleaseDelta(from_release_id=p.from_id, to_release_id=p.to_id, status=b.status, reason=b.reason,
                           method=deltapatch.FORMAT, generation_seconds=round(b.seconds, 3),
                           length=b.digest.length if b.digest else None)
        if b.status == READY:
            assert b.patch is not None and b.digest is not None and b.tar is not None and b.base_tar is not None
            storage.put_file(b.patch, sha256=b.digest.sha256, size=b.digest.length, move=True)
            row.target_path = md.delta_path(p.component, p.from_version, p.to_version, deltapatch.EXTENSION)
            row.sha256 = b.digest.sha256
            row.base_tar_sha256, row.base_tar_length = b.base_tar.sha256, b.base_tar.length
            row.tar_sha256, row.tar_length = b.tar.sha256, b.tar.length
            signed.append((row.target_path, row.sha256, row.length, p.to_id))
        session.add(row)
    session.flush()
    signing.add_delta_targets(session, signed)


def generate(open_session: SessionFactory, component: str, version: str, *,
             from_versions: Sequence[str] | None = None, force: bool = False) -> list[DeltaResult]:
    """Make the missing patches to ``component`` ``version`` (from ``from_versions``, else the newest N).

    ``open_session(write)`` opens a session; the reading one is closed before any file
    is built, the writing one is committed here.
    """
    cfg = settings()
    rs = open_session(False)
    try:
        pairs = _pairs(rs, component, version, cfg, from_versions, force)
    finally:
        rs.close()
    if not pairs:
        return []
    storage = get_storage()
    built: list[Built] = []
    works: list[Path] = []
    try:
        for pair in pairs:
            work = Path(tempfile.mkdtemp(prefix="delta-", dir=cfg.work_dir))
            works.append(work)
            try:
                built.append(build(pair, cfg, storage, work))
            except (OSError, deltapatch.PatchFormatError) as exc:
                log.exception("delta %s %s -> %s failed", component, pair.from_version, version)
                built.append(Built(pair, "failed", str(exc)))
        ws = open_session(True)
        try:
            _record(ws, built)
            ws.commit()
        except BaseException:
            ws.rollback()
            raise
        finally:
            ws.close()
    finally:
        for work in works:
            shutil.rmtree(work, ignore_errors=True)
    for b in built:
        log.info("delta %s %s -> %s: %s%s", component, b.pair.from_version, version, b.status,
                 f" ({b.digest.length} of {b.pair.to_size} bytes)" if b.digest else "")
    return [DeltaResult(b.pair.from_version, version, b.status, b.digest.length if b.digest else None,
                        b.pair.to_size, b.reason, round(b.seconds, 3)) for b in built]


def worker_job(open_session: SessionFactory) -> list[DeltaResult]:
    """Patches to the newest release of every component (nothing when ``DELTA_FROM_RELEASES`` is 0)."""
    if settings().from_releases <= 0:
        return []
    rs = open_session(False)
    try:
        newest = []
        for comp in rs.scalars(select(Component).order_by(Component.name)):
            rows = [r for r in releases.releases_of(rs, comp, None, False)]
            if rows:
                newest.append((comp.name, rows[0].version))
    finally:
        rs.close()
    out: list[DeltaResult] = []
    for component, version in newest:
        out += generate(open_session, component, version)
    return out


# ---------------------------------------------------------------- reading


def deltas_to(session: Session, component: str, version: str) -> tuple[Release, list[ReleaseDelta]]:
    release = releases.get_release(session, component, version)
    rows = session.scalars(select(ReleaseDelta).where(ReleaseDelta.to_release_id == release.id)
                           .order_by(ReleaseDelta.id)).all()
    return release, sorted(rows, key=lambda d: Version(d.from_release.version), reverse=True)


@dataclass(frozen=True)
class TransferFigures:
    """Bytes the installations downloaded for updates, against what full downloads would have taken."""

    component: str | None
    version: str | None
    updates: int
    bytes_downloaded: int
    bytes_full: int

    @property
    def bytes_saved(self) -> int:
        return max(0, self.bytes_full - self.bytes_downloaded)


def transfer_figures(session: Session, *, component: str | None = None,
                     version: str | None = None) -> tuple[list[TransferFigures], TransferFigures]:
    """Per release (newest first) and across the fleet, from the reports that carry byte figures."""
    stmt = (select(UpdateReport.component, UpdateReport.to_version, func.count(),
                   func.coalesce(func.sum(UpdateReport.bytes_downloaded), 0),
                   func.coalesce(func.sum(UpdateReport.bytes_full), 0))
            .where(UpdateReport.bytes_full.is_not(None), UpdateReport.bytes_downloaded.is_not(None))
            .group_by(UpdateReport.component, UpdateReport.to_version))
    if component is not None:
        stmt = stmt.where(UpdateReport.component == component)
    if version is not None:
        stmt = stmt.where(UpdateReport.to_version == version)
    rows = [TransferFigures(c, v, int(n), int(d), int(f)) for c, v, n, d, f in session.execute(stmt)]

    def order(t: TransferFigures) -> tuple[str, Any]:
        try:
            return (t.component or "", Version(t.version or "0"))
        except ValueError:
            return (t.component or "", Version("0"))

    rows.sort(key=order, reverse=True)
    total = TransferFigures(component, version, sum(r.updates for r in rows),
                            sum(r.bytes_downloaded for r in rows), sum(r.bytes_full for r in rows))
    return rows, total
