"""Sweeping what crashes leave behind: partial uploads and blobs that nothing points at.

A process killed in the middle of a publish leaves bytes no transaction will ever
claim: the request's spool file in the upload folder (``UPLOAD_TMP_DIR``), a
half-written object (local ``.tmp/`` files; S3 ``.tmp/`` objects and multipart uploads
never completed), or a whole content-addressed blob whose release row was never
committed. :func:`sweep` removes each of these once it is older than a grace period,
so a write still in progress is never touched.

A blob is *referenced* when any table has a column named ``blob_key`` holding its
key (releases, ticket attachments, stored mail, and whatever later keeps a blob the
same way). Only content-addressed keys (``sha256/...``) are candidates; named
objects such as TUF metadata are never swept.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..db import Base
from ..errors import ReleaseServerError
from .base import BlobStorage

log = logging.getLogger(__name__)

BLOB_PREFIX = "sha256/"
REFERENCE_COLUMN = "blob_key"
UPLOAD_SPOOL_PREFIX = "upload-"


@dataclass(frozen=True)
class SweptItem:
    """One thing removed (or, in a dry run, that would be)."""

    kind: str  # "upload" (spool file), "partial" (unfinished storage write), "blob" (unreferenced)
    name: str
    size: int


@dataclass
class SweepReport:
    """What one sweep removed; a dry run lists what it would remove."""

    dry_run: bool
    grace_seconds: float
    removed: list[SweptItem] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def count(self, kind: str) -> int:
        return sum(1 for i in self.removed if i.kind == kind)

    @property
    def bytes_removed(self) -> int:
        return sum(i.size for i in self.removed)

    def __str__(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
        text = (f"{verb} {self.count('upload')} partial upload(s), {self.count('partial')} unfinished storage "
                f"write(s), {self.count('blob')} unreferenced blob(s): {self.bytes_removed} bytes")
        return text + (f"; {len(self.errors)} error(s)" if self.errors else "")

    def to_dict(self) -> dict:
        return {"dry_run": self.dry_run, "grace_seconds": self.grace_seconds, "bytes_removed": self.bytes_removed,
                "removed": [{"kind": i.kind, "name": i.name, "size": i.size} for i in self.removed],
                "errors": list(self.errors)}


def referenced_blob_keys(session: Session) -> set[str]:
    """Every key held in a ``blob_key`` column of any table."""
    from .. import models_registry  # noqa: F401 - every table must be known, or its blobs would look unused

    keys: set[str] = set()
    for table in Base.metadata.sorted_tables:
        column = table.columns.get(REFERENCE_COLUMN)
        if column is None:
            continue
        keys.update(k for k in session.scalars(select(column).where(column.is_not(None)).distinct()) if k)
    return keys


def _stale_spool_files(upload_dir: Path, cutoff: float) -> Iterable[tuple[Path, int]]:
    try:
        entries = list(os.scandir(upload_dir))
    except FileNotFoundError:
        return
    for entry in entries:
        if not entry.name.startswith(UPLOAD_SPOOL_PREFIX) or not entry.is_file(follow_symlinks=False):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        if st.st_mtime < cutoff:
            yield Path(entry.path), st.st_size


def sweep(session: Session, storage: BlobStorage, upload_dir: str | os.PathLike | None, *, grace_seconds: float,
          now: datetime | None = None, dry_run: bool = False) -> SweepReport:
    """Remove partial uploads and unreferenced blobs older than ``grace_seconds``; report what went."""
    now = now or datetime.now(timezone.utc)
    cutoff = now - timedelta(seconds=grace_seconds)
    report = SweepReport(dry_run=dry_run, grace_seconds=grace_seconds)

    def remove(item: SweptItem, action: object) -> None:
        if not dry_run:
            try:
                action()  # type: ignore[operator]
            except (OSError, ReleaseServerError) as e:
                report.errors.append(f"{item.kind} {item.name}: {e}")
                log.warning("storage sweep: cannot remove %s %s: %s", item.kind, item.name, e)
                return
        report.removed.append(item)
        log.info("storage sweep: %s %s %s (%d bytes)", "would remove" if dry_run else "removed", item.kind,
                 item.name, item.size)

    if upload_dir is not None:
        for path, size in _stale_spool_files(Path(upload_dir), cutoff.timestamp()):
            remove(SweptItem("upload", str(path), size), lambda p=path: p.unlink(missing_ok=True))
    for partial in list(storage.partial_writes(cutoff)):
        remove(SweptItem("partial", partial.ref, partial.size), lambda r=partial.ref: storage.remove_partial(r))
    # the references are read after the listing: a blob stored and claimed meanwhile is either
    # too young to be a candidate or already referenced
    candidates = [obj for obj in storage.scan(BLOB_PREFIX) if obj.modified < cutoff]
    if candidates:
        referenced = referenced_blob_keys(session)
        for obj in candidates:
            if obj.key not in referenced:
                remove(SweptItem("blob", obj.key, obj.size), lambda k=obj.key: storage.delete(k))
    log.info("storage sweep: %s", report)
    return report
