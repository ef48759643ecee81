"""Authenticating installations on the hot path without a database round trip per request.

Each server process keeps every live installation's credentials in memory, keyed by
the SHA-256 of the token, as a frozen :class:`InstallationPrincipal` (customer,
channel, tags, window, reported versions). The table is loaded once and reloaded
whenever ``catalog_state.auth_version`` moves — a revocation or a settings change
bumps it — which every process notices within ``CATALOG_RECHECK_SECONDS``. A token
not in the table (an installation enrolled since the last load) is looked up once
and added. So a check costs no database round trip, whatever the poll interval, and
a revoked token stops working within seconds on every node.
"""
from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from flask import Flask, current_app
from sqlalchemy import select
from sqlalchemy.orm import Session

from .models import InstalledComponent, Installation


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


def _principal(inst: Installation) -> InstallationPrincipal:
    return InstallationPrincipal(inst.id, inst.customer_id, inst.channel, frozenset(inst.tags or ()),
                                 inst.maintenance_window, inst.last_seen_at, frozenset(inst.versions.items()))


class InstallationAuthCache:
    """token digest -> principal for every live installation, valid for one auth version."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, InstallationPrincipal] = {}
        self._auth_version: int | None = None

    def _reload(self, session: Session, auth_version: int) -> None:  # noqa: C901
        # plain rows, not ORM objects: 10,000 installations load in well under a second
        versions: dict[str, list[tuple[str, str]]] = {}
        for inst_id, comp, version in session.execute(
                select(InstalledComponent.installation_id, InstalledComponent.component, InstalledComponent.version)):
            versions.setdefault(inst_id, []).append((comp, version))
        entries = {}
        for row in session.execute(
                select(Installation.token_hash, Installation.id, Installation.customer_id, Installation.channel,
                       Installation.tags, Installation.maintenance_window, Installation.last_seen_at)
                .where(Installation.revoked_at.is_(None))):
            entries[row.token_hash] = InstallationPrincipal(
                row.id, row.customer_id, row.channel, frozenset(row.tags or ()), row.maintenance_window,
                row.last_seen_at, frozenset(versions.get(row.id, ())))
        with self._lock:
            self._entries = entries
            self._auth_version = auth_version

    def lookup(self, session: Callable[[], Session], secret: str, auth_version: int) -> InstallationPrincipal | None:
        """``session`` is a callable: no session is created unless the database must be read."""
        if auth_version != self._auth_version:
            self._reload(session(), auth_version)
        digest = hashlib.sha256(secret.encode()).hexdigest()
        hit = self._entries.get(digest)
        if hit is not None:
            return hit
        from . import services

        inst = services.installation_for_token(session(), secret)  # enrolled since the last load
        if inst is None:
            return None
        principal = _principal(inst)
        with self._lock:
            self._entries[digest] = principal
        return principal


def get_auth_cache() -> InstallationAuthCache:
    return current_app.extensions["installation_auth_cache"]


def init_app(app: Flask) -> None:
    app.extensions["installation_auth_cache"] = InstallationAuthCache()
