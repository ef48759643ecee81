"""Serving TUF metadata from per-process cached bytes.

Every installation fetches ``timestamp.json`` on every check, so the server keeps the
bytes and their ETag in memory instead of reading the database row, the stored file and
hashing it per request. The cached timestamp is re-validated against the database when:

* the catalog state version moves (every release change bumps it in the same
  transaction that re-signs the metadata; the check endpoint reads that row at most once
  per ``CATALOG_RECHECK_SECONDS`` already, so a check and the timestamp served beside it
  agree within one process), or
* ``CATALOG_RECHECK_SECONDS`` have passed since the last look (a refresh by the worker
  or a key rotation on another node, which do not touch the catalog; the stored file is
  read again then, a few hundred bytes once a second), or
* this process committed a metadata change itself (it serves its own writes at once), or
* the cached timestamp is within its refresh margin: then it is re-signed on the spot
  (the lazy expiry refresh), so a server that was off never serves a stale timestamp.

Versioned metadata (``3.snapshot.json``, ``7.bins-a1.json``...) never changes once
written, so it is kept in a small LRU bounded in bytes (``TUF_METADATA_CACHE_BYTES``).
"""
from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from flask import Flask, current_app, has_app_context
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from . import services
from .errors import MetadataNotFoundError
from .models import TufRole


@dataclass(frozen=True)
class CachedMetadata:
    """Bytes of one metadata file and their strong ETag (SHA-256, hex)."""

    data: bytes
    etag: str

    @classmethod
    def of(cls, data: bytes) -> CachedMetadata:
        return cls(data, hashlib.sha256(data).hexdigest())


@dataclass(frozen=True)
class _Timestamp:
    meta: CachedMetadata
    version: int
    state_version: int
    checked_at: float  # time.monotonic() of the last look at the database
    refresh_after: datetime  # when the lazy refresh becomes due


class MetadataCache:
    """The per-process cache of served metadata (thread-safe; one per application)."""

    def __init__(self, recheck_seconds: float, max_bytes: int) -> None:
        self.recheck_seconds = recheck_seconds
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._timestamp: _Timestamp | None = None
        self._immutable: OrderedDict[str, CachedMetadata] = OrderedDict()
        self._immutable_bytes = 0

    def invalidate(self) -> None:
        with self._lock:
            self._timestamp = None

    def expire_check(self) -> None:
        """Keep the cached bytes but look at the database again on the next request."""
        with self._lock:
            cur = self._timestamp
            if cur is not None:
                self._timestamp = replace(cur, checked_at=float("-inf"))

    def timestamp(self, session: Callable[[], Session], state_version: int,
                  write_session: Callable[[], Session] | None = None) -> CachedMetadata:
        """The current ``timestamp.json``; re-signed first when it is within its refresh margin."""
        fresh = self.fresh_timestamp(state_version)
        if fresh is not None:
            return fresh
        return self._load_timestamp(session(), state_version, write_session, self._timestamp)

    def fresh_timestamp(self, state_version: int) -> CachedMetadata | None:
        """The cached ``timestamp.json`` if it may be served as it is (no look at the database due), else None."""
        cur = self._timestamp
        if (cur is not None and cur.state_version == state_version
                and time.monotonic() - cur.checked_at < self.recheck_seconds
                and services.utcnow() < cur.refresh_after):
            return cur.meta
        return None

    def _load_timestamp(self, session: Session, state_version: int, write_session: Callable[[], Session] | None,
                        cur: _Timestamp | None) -> CachedMetadata:
        checked_at = time.monotonic()
        row = _timestamp_row(session)
        cfg = services.settings()
        margin = timedelta(seconds=cfg.lifetime("timestamp") * cfg.refresh_margin)
        if row[1] - services.utcnow() <= margin and write_session is not None:
            ws = write_session()
            try:
                services.refresh(ws)
                ws.commit()
            finally:
                ws.close()
            session.rollback()  # see the refresh's commit, not the snapshot this session began with
            row = _timestamp_row(session)
        version, expires = row
        # The stored file is written before its row commits, so it is never older than ``version``;
        # it is read again on every look (once per recheck period), so whatever storage holds is
        # what is served, as when it was read per request.
        data = services.metadata_bytes("timestamp.json")
        meta = cur.meta if cur is not None and cur.meta.data == data else CachedMetadata.of(data)
        with self._lock:
            self._timestamp = _Timestamp(meta, version, state_version, checked_at, expires - margin)
        return meta

    def immutable(self, name: str) -> CachedMetadata:
        """A versioned metadata file (it never changes once written); MetadataNotFoundError if absent."""
        with self._lock:
            hit = self._immutable.get(name)
            if hit is not None:
                self._immutable.move_to_end(name)
                return hit
        meta = CachedMetadata.of(services.metadata_bytes(name))
        with self._lock:
            if name not in self._immutable and len(meta.data) <= self.max_bytes:
                self._immutable[name] = meta
                self._immutable_bytes += len(meta.data)
                while self._immutable_bytes > self.max_bytes:
                    _, old = self._immutable.popitem(last=False)
                    self._immutable_bytes -= len(old.data)
        return meta


def _timestamp_row(session: Session) -> tuple[int, datetime]:
    row = session.execute(select(TufRole.version, TufRole.expires).where(TufRole.name == "timestamp")).one_or_none()
    if row is None:
        raise MetadataNotFoundError("timestamp.json")
    return row[0], row[1]


def _after_commit(session: Session) -> None:
    """A metadata change committed in this process: its next request serves it (read your writes)."""
    if session.info.pop(services.TIMESTAMP_CHANGED, False) and has_app_context():
        cache = current_app.extensions.get("tuf_metadata_cache")
        if cache is not None:
            cache.invalidate()


def _after_rollback(session: Session) -> None:
    session.info.pop(services.TIMESTAMP_CHANGED, None)


event.listen(Session, "after_commit", _after_commit)
event.listen(Session, "after_soft_rollback", lambda session, previous: _after_rollback(session))


def get_cache() -> MetadataCache:
    return current_app.extensions["tuf_metadata_cache"]


def init_app(app: Flask) -> None:
    app.extensions["tuf_metadata_cache"] = MetadataCache(
        float(app.config.get("CATALOG_RECHECK_SECONDS", 1.0)),
        int(app.config.get("TUF_METADATA_CACHE_BYTES", 32 * 1024 * 1024)))
