"""Authenticating installations on the hot path without a database round trip per request.

An installation's token resolves to an :class:`InstallationPrincipal`, a frozen
snapshot of what the check endpoint needs (customer, channel, tags, window). The
snapshot is cached per process by the token's SHA-256 for ``INSTALLATION_AUTH_CACHE_SECONDS``
and dropped at once when ``catalog_state.auth_version`` moves (a revocation or a
settings change bumps it), which every process notices within
``CATALOG_RECHECK_SECONDS``.
"""
from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass
from datetime import datetime

from flask import Flask, current_app
from sqlalchemy.orm import Session

from . import services


@dataclass(frozen=True)
class InstallationPrincipal:
    installation_id: str
    customer_id: int
    channel: str
    tags: frozenset[str]
    maintenance_window: str | None
    last_seen_at: datetime | None
    kind: str = "installation"
    role: str = "installation"

    @property
    def actor(self) -> str:
        return f"installation:{self.installation_id}"

    @property
    def name(self) -> str:
        return self.actor


class InstallationAuthCache:
    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[InstallationPrincipal, float]] = {}
        self._auth_version = -1

    def lookup(self, session: Session, secret: str, auth_version: int) -> InstallationPrincipal | None:
        key = hashlib.sha256(secret.encode()).hexdigest()
        now = time.monotonic()
        with self._lock:
            if auth_version != self._auth_version:
                self._entries.clear()
                self._auth_version = auth_version
            hit = self._entries.get(key)
        if hit is not None and now - hit[1] < self.ttl:
            return hit[0]
        inst = services.installation_for_token(session, secret)
        if inst is None:
            return None
        principal = InstallationPrincipal(inst.id, inst.customer_id, inst.channel, frozenset(inst.tags or ()),
                                          inst.maintenance_window, inst.last_seen_at)
        with self._lock:
            if len(self._entries) > 200_000:
                self._entries.clear()
            self._entries[key] = (principal, now)
        return principal


def get_auth_cache() -> InstallationAuthCache:
    return current_app.extensions["installation_auth_cache"]


def init_app(app: Flask) -> None:
    app.extensions["installation_auth_cache"] = InstallationAuthCache(
        app.config.get("INSTALLATION_AUTH_CACHE_SECONDS", 60.0))
