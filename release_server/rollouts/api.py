"""Rollouts API: the check endpoint (the fleet's hot path)."""
from __future__ import annotations

from flask import Response, current_app

from ..api import endpoint
from ..db import db
from ..fleet.auth import InstallationPrincipal
from ..fleet.schemas import CheckRequest, CheckResponse
from .catalog import get_cache
from .checking import answer


@endpoint("/updates/check", methods=["POST"], roles={"installation"}, body=CheckRequest, response=CheckResponse,
          readonly=True, hot_path=True, summary="Which release each component should move to now", tag="agent")
def check(principal: InstallationPrincipal, body: CheckRequest) -> Response:
    # The same answer as the fast path's (release_server.rollouts.fastpath), which handles most checks.
    snap = get_cache().snapshot(lambda: db.session)
    data = answer(snap, principal, body, poll_interval=current_app.config["POLL_INTERVAL_SECONDS"])
    return Response(data, mimetype="application/json")


# ---------------------------------------------------------------- rollouts, pins, restrictions, figures

from ..accounts.services import audit  # noqa: E402
from ..api import PUBLISHERS, STAFF  # noqa: E402
from ..releases import services as release_services  # noqa: E402
from . import figures as figures_mod  # noqa: E402
from . import services  # noqa: E402
from .models import Pin, Rollout  # noqa: E402
from .schemas import (Adoption, AdoptionDay, AdoptionQuery, CreatePin, CreateRollout, HaltBody, NextStepOut,  # noqa
                      PercentBody, PinList, PinOut, PinQuery, RestrictBody, RestrictionsOut, ResumeBody, RolloutDay,
                      RolloutFigures, RolloutList, RolloutOut, RolloutQuery, StartBody, VersionCount,
                      VersionFigures, YankBody)


def rollout_out(ro: Rollout) -> RolloutOut:
    f = services.figures(ro)
    return RolloutOut(id=ro.id, component=ro.release.component.name, version=ro.release.version, channel=ro.channel,
                      state=ro.state, percent=ro.share / 100, schedule=ro.schedule or [], phase=ro.phase,
                      phase_started_at=ro.phase_started_at, failure_threshold=ro.failure_threshold,
                      min_attempts=ro.min_attempts, attempts=ro.attempts, successes=ro.successes,
                      failures=ro.failures, failure_rate=f["failure_rate"], halted_at=ro.halted_at,
                      halt_reason=ro.halt_reason, halt_figures=ro.halt_figures or {},
                      next_steps=[NextStepOut(**vars(s)) for s in services.next_steps(ro)],
                      created_by=ro.created_by, created_at=ro.created_at)


def _audited(principal, ro: Rollout, action: str, details: dict | None = None) -> RolloutOut:  # noqa: ANN001
    audit(db.session, principal.actor, f"rollout.{action}", f"rollout:{ro.id}",
          {"release": f"{ro.release.component.name}/{ro.release.version}", "channel": ro.channel,
           **(details or {})})
    db.commit()
    return rollout_out(ro)


@endpoint("/rollouts", methods=["POST"], roles=PUBLISHERS, body=CreateRollout, response=RolloutOut, status=201,
          summary="Create a staged rollout of a release on a channel", tag="rollouts")
def create_rollout(principal, body: CreateRollout) -> RolloutOut:  # noqa: ANN001
    ro = services.create_rollout(db.session, body.component, body.version, body.channel, actor=principal.actor,
                                 schedule=[s.model_dump() for s in body.schedule],
                                 failure_threshold=body.failure_threshold, min_attempts=body.min_attempts)
    if body.start:
        services.start(db.session, ro)
    return _audited(principal, ro, "create", {"schedule": ro.schedule, "started": body.start})


@endpoint("/rollouts", roles=STAFF, query=RolloutQuery, response=RolloutList, summary="List rollouts",
          tag="rollouts")
def list_rollouts(principal, query: RolloutQuery) -> RolloutList:  # noqa: ANN001
    return RolloutList(items=[rollout_out(r) for r in services.list_rollouts(db.session, state=query.state,
                                                                              component=query.component)])


@endpoint("/rollouts/<int:rollout_id>", roles=STAFF, response=RolloutOut, summary="Get a rollout", tag="rollouts")
def get_rollout(principal, rollout_id: int) -> RolloutOut:  # noqa: ANN001
    return rollout_out(services.get_rollout(db.session, rollout_id))


@endpoint("/rollouts/<int:rollout_id>/start", methods=["POST"], roles=PUBLISHERS, body=StartBody,
          response=RolloutOut, summary="Start a draft rollout", tag="rollouts")
def start_rollout(principal, rollout_id: int, body: StartBody) -> RolloutOut:  # noqa: ANN001
    ro = services.start(db.session, services.get_rollout(db.session, rollout_id, lock=True), body.percent)
    return _audited(principal, ro, "start", {"percent": ro.share / 100})


@endpoint("/rollouts/<int:rollout_id>/pause", methods=["POST"], roles=PUBLISHERS, response=RolloutOut,
          summary="Pause a running rollout", tag="rollouts")
def pause_rollout(principal, rollout_id: int) -> RolloutOut:  # noqa: ANN001
    return _audited(principal, services.pause(db.session, services.get_rollout(db.session, rollout_id, lock=True)),
                    "pause")


@endpoint("/rollouts/<int:rollout_id>/resume", methods=["POST"], roles=PUBLISHERS, response=RolloutOut,
          summary="Resume a paused rollout, or a halted one once the cause is fixed (JSON body "
                  "{\"reason\": ...} required then)", tag="rollouts")
def resume_rollout(principal, rollout_id: int) -> RolloutOut:  # noqa: ANN001
    from flask import request

    from ..api import parse_json_body

    body = parse_json_body(ResumeBody) if request.content_length or request.is_json else ResumeBody()
    ro = services.get_rollout(db.session, rollout_id, lock=True)
    was = ro.state
    previous = services.figures(ro)
    ro = services.resume(db.session, ro, body.reason)
    details = {"reason": body.reason, "halted_figures": previous} if was == "halted" else {}
    return _audited(principal, ro, "resume", details)


@endpoint("/rollouts/<int:rollout_id>/yank", methods=["POST"], roles=PUBLISHERS, body=YankBody, response=RolloutOut,
          summary="Yank the rollout's release: installations that took it go back to the newest good release",
          tag="rollouts")
def yank_rollout_release(principal, rollout_id: int, body: YankBody) -> RolloutOut:  # noqa: ANN001
    ro = services.yank_release(db.session, services.get_rollout(db.session, rollout_id, lock=True), body.reason)
    audit(db.session, principal.actor, "release.yank", f"release:{ro.release.component.name}/{ro.release.version}",
          {"reason": body.reason, "rollout": ro.id})
    return _audited(principal, ro, "yank", {"reason": body.reason})


@endpoint("/rollouts/<int:rollout_id>/percentage", methods=["POST"], roles=PUBLISHERS, body=PercentBody,
          response=RolloutOut, summary="Widen a rollout to a percentage", tag="rollouts")
def set_percentage(principal, rollout_id: int, body: PercentBody) -> RolloutOut:  # noqa: ANN001
    ro = services.set_percentage(db.session, services.get_rollout(db.session, rollout_id, lock=True), body.percent)
    return _audited(principal, ro, "widen", {"percent": body.percent})


@endpoint("/rollouts/<int:rollout_id>/complete", methods=["POST"], roles=PUBLISHERS, response=RolloutOut,
          summary="Offer the release to everyone on the channel", tag="rollouts")
def complete_rollout(principal, rollout_id: int) -> RolloutOut:  # noqa: ANN001
    return _audited(principal, services.complete(db.session, services.get_rollout(db.session, rollout_id,
                                                                                   lock=True)), "complete")


@endpoint("/rollouts/<int:rollout_id>/halt", methods=["POST"], roles=PUBLISHERS, body=HaltBody, response=RolloutOut,
          summary="Halt a rollout: it offers nothing more", tag="rollouts")
def halt_rollout(principal, rollout_id: int, body: HaltBody) -> RolloutOut:  # noqa: ANN001
    ro = services.halt(db.session, services.get_rollout(db.session, rollout_id, lock=True), body.reason)
    return _audited(principal, ro, "halt", {"reason": body.reason})


@endpoint("/rollouts/<int:rollout_id>/figures", roles=STAFF, response=RolloutFigures,
          summary="A rollout's attempts and failure rate by day", tag="rollouts")
def rollout_figures(principal, rollout_id: int) -> RolloutFigures:  # noqa: ANN001
    ro = services.get_rollout(db.session, rollout_id)
    days = [RolloutDay(day=d, attempts=a, failures=f, failure_rate=round(f / a, 4) if a else 0.0)
            for d, a, f in figures_mod.rollout_days(db.session, ro)]
    return RolloutFigures(rollout=rollout_out(ro), days=days)


def pin_out(p: Pin) -> PinOut:
    return PinOut(id=p.id, scope=p.scope, value=p.scope_value, component=p.component, pin=p.value, exact=p.exact,
                  note=p.note, created_by=p.created_by, created_at=p.created_at)


@endpoint("/pins", methods=["POST"], roles=PUBLISHERS | {"support"}, body=CreatePin, response=PinOut, status=201,
          summary="Pin a component of some installations to a version or prefix", tag="rollouts")
def create_pin(principal, body: CreatePin) -> PinOut:  # noqa: ANN001
    from ..errors import ValidationError

    if (body.version is None) == (body.prefix is None):
        raise ValidationError("give exactly one of 'version' or 'prefix'", field="version")
    pin = services.add_pin(db.session, scope=body.scope, scope_value=body.value, component=body.component,
                           value=body.version or body.prefix.rstrip("."), exact=body.version is not None,
                           actor=principal.actor, note=body.note)
    audit(db.session, principal.actor, "pin.add", f"pin:{pin.id}",
          {"scope": body.scope, "value": body.value, "component": body.component, "pin": pin.value})
    db.commit()
    return pin_out(pin)


@endpoint("/pins", roles=STAFF, query=PinQuery, response=PinList, summary="List pins (a page, oldest first)",
          tag="rollouts")
def list_pins(principal, query: PinQuery) -> PinList:  # noqa: ANN001
    rows, total = services.pins_page(db.session, query.page, query.per_page)
    return PinList(items=[pin_out(p) for p in rows], total=total)


@endpoint("/pins/<int:pin_id>", methods=["DELETE"], roles=PUBLISHERS | {"support"}, response=PinOut,
          summary="Remove a pin", tag="rollouts")
def delete_pin(principal, pin_id: int) -> PinOut:  # noqa: ANN001
    pin = services.remove_pin(db.session, pin_id)
    audit(db.session, principal.actor, "pin.remove", f"pin:{pin_id}")
    out = pin_out(pin)
    db.commit()
    return out


@endpoint("/components/<component>/releases/<version>/restrictions", methods=["POST"], roles=PUBLISHERS,
          body=RestrictBody, response=RestrictionsOut,
          summary="Limit a release to named customers or installations", tag="rollouts")
def restrict(principal, component: str, version: str, body: RestrictBody) -> RestrictionsOut:  # noqa: ANN001
    release = release_services.get_release(db.session, component, version)
    services.restrict_release(db.session, release, customers=body.customers, installations=body.installations)
    audit(db.session, principal.actor, "release.restrict", f"release:{component}/{release.version}",
          body.model_dump())
    db.commit()
    return RestrictionsOut(**services.restrictions_of(db.session, release))


@endpoint("/components/<component>/releases/<version>/restrictions", roles=STAFF, response=RestrictionsOut,
          summary="Who a restricted release is for (empty: everyone)", tag="rollouts")
def restrictions(principal, component: str, version: str) -> RestrictionsOut:  # noqa: ANN001
    release = release_services.get_release(db.session, component, version)
    return RestrictionsOut(**services.restrictions_of(db.session, release))


@endpoint("/fleet/versions", roles=STAFF, response=VersionFigures,
          summary="Installations per version per component", tag="fleet")
def fleet_versions(principal) -> VersionFigures:  # noqa: ANN001
    rows, stale, total = figures_mod.versions_in_use(db.session)
    return VersionFigures(items=[VersionCount(component=c, version=v, installations=n) for c, v, n in rows],
                          stale=stale, total=total)


@endpoint("/fleet/adoption", roles=STAFF, query=AdoptionQuery, response=Adoption,
          summary="Installations on each version of a component, per day", tag="fleet")
def fleet_adoption(principal, query: AdoptionQuery) -> Adoption:  # noqa: ANN001
    release_services.get_component(db.session, query.component)
    return Adoption(component=query.component,
                    days=[AdoptionDay(day=d.day, versions=d.versions, counted=d.counted) for d in
                          figures_mod.adoption(db.session, query.component, query.days)])
