"""Rollouts API: the check endpoint (the fleet's hot path)."""
from __future__ import annotations

from datetime import timedelta

from flask import current_app

from ..api import endpoint
from ..db import db
from ..fleet import services as fleet_services
from ..fleet.auth import InstallationPrincipal
from ..fleet.schemas import CheckRequest, CheckResponse, OfferOut
from ..models_common import utcnow
from .catalog import get_cache
from .policy import InstallationView, plan_offers


def _pins_for(pins: dict, p: InstallationPrincipal) -> dict:
    """Installation pins beat tag pins beat customer pins, per component."""
    out: dict = {}
    out.update(pins.get(("customer", str(p.customer_id)), {}))
    for tag in sorted(p.tags):
        out.update(pins.get(("tag", tag), {}))
    out.update(pins.get(("installation", p.installation_id), {}))
    return out


@endpoint("/updates/check", methods=["POST"], roles={"installation"}, body=CheckRequest, response=CheckResponse,
          readonly=True, summary="Which release each component should move to now", tag="agent")
def check(principal: InstallationPrincipal, body: CheckRequest) -> CheckResponse:
    snap = get_cache().snapshot(db.session)
    view = InstallationView(principal.installation_id, principal.customer_id, principal.channel, principal.tags)
    offers = plan_offers(snap.catalog, view, body.installed, _pins_for(snap.pins, principal))
    _note_seen(principal, body)
    return CheckResponse(
        offers=[OfferOut(component=o.release.component, version=str(o.release.version),
                         from_version=str(o.from_version) if o.from_version else None,
                         target_path=o.release.target_path, sha256=o.release.sha256, length=o.release.length,
                         critical=o.release.critical, downgrade=o.downgrade, changelog=o.changelog)
                for o in offers],
        poll_interval=current_app.config["POLL_INTERVAL_SECONDS"],
        maintenance_window=principal.maintenance_window)


_seen: dict[str, tuple[frozenset, float]] = {}


def _note_seen(p: InstallationPrincipal, body: CheckRequest) -> None:
    """Coalesced inventory and last-seen write: only when the inventory changed or the
    stored last-seen is older than ``LAST_SEEN_WRITE_SECONDS``; nothing otherwise."""
    import time

    interval = current_app.config["LAST_SEEN_WRITE_SECONDS"]
    inventory = frozenset(body.installed.items())
    now = time.monotonic()
    prev = _seen.get(p.installation_id)
    if prev is not None and prev[0] == inventory and now - prev[1] < interval:
        return
    if prev is None and p.last_seen_at is not None and utcnow() - p.last_seen_at < timedelta(seconds=interval) \
            and not inventory:
        _seen[p.installation_id] = (inventory, now)
        return
    session = db.new_session(write=True)
    try:
        inst = fleet_services.get_installation(session, p.installation_id)
        fleet_services.apply_inventory(session, inst, body.installed, body.agent_version)
        inst.last_seen_at = utcnow()
        if body.state == "updating":
            inst.state = "updating"
        session.commit()
    finally:
        session.close()
    _seen[p.installation_id] = (inventory, now)
