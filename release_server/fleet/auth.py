"""Authenticating installations on the hot path with bounded memory.

Each server process keeps a small LRU of installation credentials, keyed by the
SHA-256 of the token, as frozen :class:`InstallationPrincipal` values (customer,
channel, tags, window, reported versions). A token not in the LRU costs one query on
the unique ``token_prefix`` index (joined with the installation's components); an
unknown or revoked token is refused and not cached. Memory is bounded by
``INSTALLATION_AUTH_CACHE_SIZE`` whatever the size of the fleet.

Revocations and settings changes travel through the change feed
(``installation_changes``, see :func:`release_server.rollouts.catalog.bump_auth`): each
change bumps ``catalog_state.auth_version`` and names the installation. The
once-per-``CATALOG_RECHECK_SECONDS`` state read tells every process that the version
moved; it then reads only the changes after the version it last applied and forgets
exactly those installations. A gap in the feed (pruned, or a change without an
installation) makes it forget everything, which is always safe.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from flask import Flask, current_app
from sqlalchemy import bindparam, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from .models import InstallationChange, InstalledComponent, Installation

INSTALLATION_RE = re.compile(r"rsi_([a-z0-9]{8})_([A-Za-z0-9_-]{20,})")
DEFAULT_CAPACITY = 20_000


@dataclass(frozen=True)
class InstallationPrincipal:
    installation_id: str
    customer_id: int
    channel: str
    tags: frozenset[str]
    maintenance_window: str | None
    last_seen_at: datetime | None
    versions: frozenset[tuple[str, str]] = frozenset()
    kind: str = "installation"
    role: str = "installation"

    @property
    def actor(self) -> str:
        return f"installation:{self.installation_id}"

    @property
    def name(self) -> str:
        return self.actor


def token_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


# Built once: constructing a statement and its cache key per call costs more than running it.
_PRINCIPAL_QUERY = (
    select(Installation.id, Installation.customer_id, Installation.channel, Installation.tags,
           Installation.maintenance_window, Installation.last_seen_at, Installation.token_hash,
           Installation.revoked_at, InstalledComponent.component, InstalledComponent.version)
    .outerjoin(InstalledComponent, InstalledComponent.installation_id == Installation.id)
    .where(Installation.token_prefix == bindparam("prefix")))


def load_principal(session: Session | Connection, secret: str) -> InstallationPrincipal | None:
    """The live installation a token belongs to, in one indexed query; None if unknown or revoked."""
    m = INSTALLATION_RE.fullmatch(secret or "")
    if not m:
        return None
    conn = session.connection() if isinstance(session, Session) else session
    rows = conn.execute(_PRINCIPAL_QUERY, {"prefix": m.group(1)}).all()
    if not rows:
        return None
    first = rows[0]
    if first.revoked_at is not None or not hmac.compare_digest(first.token_hash, token_digest(secret)):
        return None
    versions = frozenset((r.component, r.version) for r in rows if r.component is not None)
    return InstallationPrincipal(first.id, first.customer_id, first.channel, frozenset(first.tags or ()),
                                 first.maintenance_window, first.last_seen_at, versions)


class _SessionAsConnection:
    """A session used where :meth:`InstallationAuthCache._find` opens a connection (it stays open)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def __enter__(self) -> Session:
        return self.session

    def __exit__(self, *exc: object) -> None:
        return None


class InstallationAuthCache:
    """A bounded LRU of token digest -> principal, kept exact by the change feed."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = max(1, capacity)
        self._lock = threading.Lock()
        self._catch_up_lock = threading.Lock()
        self._entries: OrderedDict[str, InstallationPrincipal] = OrderedDict()
        self._digest_of: dict[str, str] = {}  # installation id -> digest, for the entries held
        self._applied: int | None = None  # the last auth version whose changes are applied
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def applied_version(self) -> int | None:
        return self._applied

    def lookup(self, session: Callable[[], Session], secret: str, auth_version: int,
               connect: Callable[[], Connection] | None = None) -> InstallationPrincipal | None:
        """``session`` is a callable: no session is created unless the database must be read.

        ``connect``, when given, opens the connection a miss reads the credentials on
        (one statement, no transaction: :meth:`release_server.db.Database.read_connection`),
        so a miss costs no session either."""
        if auth_version != self._applied:
            self.catch_up(session(), auth_version)
        return self._find(secret, lambda: connect() if connect is not None else _SessionAsConnection(session()))

    def peek(self, secret: str, auth_version: int,
             connect: Callable[[], Connection] | None = None) -> InstallationPrincipal | None:
        """The principal for ``secret`` when the cache is current at ``auth_version``; never applies the feed.

        A miss is read on ``connect`` when given (one indexed query), else not at all. None
        means "not vouched for here" (a feed to apply, a miss, an unknown or revoked token),
        not "refused": the caller then goes through :meth:`lookup`, which decides."""
        if auth_version != self._applied:
            return None
        if connect is None:
            with self._lock:
                return self._hit(token_digest(secret))
        return self._find(secret, connect)

    def _find(self, secret: str, connect: Callable[[], Any]) -> InstallationPrincipal | None:
        """A hit, or one read of the credentials on ``connect()`` kept if no change was applied meanwhile."""
        digest = token_digest(secret)
        with self._lock:
            hit = self._hit(digest)
            if hit is not None:
                return hit
            generation = self._applied
        self.misses += 1
        with connect() as conn:
            principal = load_principal(conn, secret)
        if principal is None:
            return None
        with self._lock:
            # a change applied while we read may concern what we read: then do not keep it
            if self._applied == generation:
                self._put(digest, principal)
        return principal

    def _hit(self, digest: str) -> InstallationPrincipal | None:
        """The entry for ``digest``, marked most recently used (the caller holds the lock)."""
        hit = self._entries.get(digest)
        if hit is not None:
            self._entries.move_to_end(digest)
        return hit

    def _put(self, digest: str, principal: InstallationPrincipal) -> None:
        old = self._digest_of.get(principal.installation_id)
        if old is not None and old != digest:
            self._entries.pop(old, None)
        self._entries[digest] = principal
        self._entries.move_to_end(digest)
        self._digest_of[principal.installation_id] = digest
        while len(self._entries) > self.capacity:
            evicted_digest, evicted = self._entries.popitem(last=False)
            if self._digest_of.get(evicted.installation_id) == evicted_digest:
                del self._digest_of[evicted.installation_id]

    def forget(self, installation_id: str) -> None:
        with self._lock:
            digest = self._digest_of.pop(installation_id, None)
            if digest is not None:
                self._entries.pop(digest, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._digest_of.clear()

    def remember_versions(self, installation_id: str, versions: frozenset[tuple[str, str]]) -> None:
        """Keep the versions an installation just reported, so that an unchanged inventory is recognised."""
        with self._lock:
            digest = self._digest_of.get(installation_id)
            principal = self._entries.get(digest) if digest else None
            if principal is not None and principal.versions != versions:
                self._entries[digest] = replace(principal, versions=versions)

    def catch_up(self, session: Session, auth_version: int) -> None:
        """Apply the change feed up to ``auth_version``: forget exactly the installations it names."""
        with self._catch_up_lock:
            applied = self._applied
            if applied == auth_version:
                return
            if applied is None or auth_version < applied:  # first use, or the database went back
                self.clear()
                with self._lock:
                    self._applied = auth_version
                return
            rows = session.execute(select(InstallationChange.version, InstallationChange.installation_id)
                                   .where(InstallationChange.version > applied,
                                          InstallationChange.version <= auth_version)
                                   .order_by(InstallationChange.version)).all()
            expected, everything = applied + 1, False
            for version, installation_id in rows:
                if version != expected or installation_id is None:
                    everything = True
                    break
                expected += 1
            if everything or expected <= auth_version:  # a gap: changes we cannot name
                self.clear()
            else:
                for _, installation_id in rows:
                    self.forget(installation_id)
            with self._lock:
                self._applied = auth_version


def get_auth_cache() -> InstallationAuthCache:
    return current_app.extensions["installation_auth_cache"]


def init_app(app: Flask) -> None:
    app.extensions["installation_auth_cache"] = InstallationAuthCache(
        int(app.config.get("INSTALLATION_AUTH_CACHE_SIZE", DEFAULT_CAPACITY)))
