"""The update check's answer, shared by the Flask route and the WSGI fast path.

Both call :func:`answer` with what they already hold: the catalog snapshot, the
installation's principal and the parsed body. It plans the offers, notes the check in
the last-seen buffer (the check's only side effect, in memory), counts it and returns
the JSON body. The route (:func:`release_server.rollouts.api.check`) gets the snapshot
and principal the ordinary way, reading the database when it must; the fast path
(:mod:`release_server.rollouts.fastpath`) only when both are in memory.
"""
from __future__ import annotations

import json
from typing import Any

from .. import metrics
from ..fleet.lastseen import note_check
from ..fleet.schemas import CheckRequest
from .catalog import offers_in

_nothing_new_bodies: dict[tuple[int, str | None], bytes] = {}


def answer(snap: Any, principal: Any, body: CheckRequest, *, poll_interval: int, buffer: Any = None,
           auth_cache: Any = None) -> bytes:
    """The check's JSON body for this installation now (``buffer``/``auth_cache``: the app's, see note_check)."""
    # A component the installation runs but has not installed yet gets its first install.
    planned: dict = {c: None for c in body.components if c not in body.installed}
    planned.update(body.installed)
    offers = offers_in(snap, installation_id=principal.installation_id, customer_id=principal.customer_id,
                       channel=principal.channel, tags=principal.tags, installed=planned)
    note_check(principal, body.installed, body.agent_version, body.state, offered=bool(offers), buffer=buffer,
               auth_cache=auth_cache)
    window = principal.maintenance_window
    if not offers:
        metrics.count_check("nothing_new")
        return _nothing_new(poll_interval, window)
    metrics.count_check("offers")
    metrics.count_offers(o.release.component for o in offers)
    return _dumps({
        "offers": [{"component": o.release.component, "version": str(o.release.version),
                    "from_version": str(o.from_version) if o.from_version else None,
                    "target_path": o.release.target_path, "sha256": o.release.sha256, "length": o.release.length,
                    "critical": bool(o.release.critical), "downgrade": bool(o.downgrade),
                    "changelog": o.changelog}
                   for o in offers],
        "poll_interval": poll_interval, "maintenance_window": window})


def _dumps(data: dict) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def _nothing_new(poll_interval: int, window: str | None) -> bytes:
    """The short answer most checks get, serialised once per (interval, window)."""
    key = (poll_interval, window)
    body = _nothing_new_bodies.get(key)
    if body is None:
        body = _dumps({"offers": [], "poll_interval": poll_interval, "maintenance_window": window})
        if len(_nothing_new_bodies) < 4096:  # windows are few; bounded all the same
            _nothing_new_bodies[key] = body
    return body
