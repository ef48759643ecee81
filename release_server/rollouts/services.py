"""Rollout rules: staged rollouts and their phases, automatic halts, pins, restrictions.

A rollout moves through ``draft → running ⇄ paused → completed``, or stops ``halted``.
A halted rollout offers nothing new; :func:`next_steps` says what can be done with it:
resume it with a reason once the cause is fixed (its counts start again from zero, the
figures of the halt stay in the audit log), yank its release (installations that took
it go back to the newest good release, through signed metadata), or publish a fixed
release and roll that out.
While running it admits installations whose bucket is below its share; a phased
schedule (steps of percent and minimum hours) widens it, step by step, only while it
is healthy. Each install attempt reported for the rollout's release by an installation
on its channel counts; once at least ``min_attempts`` have been made, a failure rate
above ``failure_threshold`` halts it on the spot, records the figures and calls the
hooks in ``app.extensions["rollout_halt_hooks"]`` (the support desk opens a ticket).
Every change bumps the catalog version so each server process picks it up.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app, has_app_context
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from ..db import lock_row
from ..errors import ConflictError, NotFoundError, ValidationError
from ..fleet.models import Customer, Installation, UpdateReport
from ..models_common import utcnow
from ..releases.models import Release
from ..releases.services import get_channel, get_release
from .catalog import bump_catalog
from .models import Pin, ReleaseRestriction, Rollout
from .policy import BUCKETS

COUNTED_OUTCOMES = {"success": "successes", "rolled_back": "failures", "failed": "failures"}


class UnknownRolloutError(NotFoundError):
    code = "unknown_rollout"

    def __init__(self, rollout_id: int) -> None:
        super().__init__(f"no rollout {rollout_id}", field="rollout")


@dataclass(frozen=True)
class NextStep:
    """Something that can be done with a rollout in its current state."""

    action: str  # resume | yank | new_release
    description: str
    command: str  # the release-server command line
    method: str | None  # the API call (None: several calls)
    path: str | None


def next_steps(ro: Rollout) -> list[NextStep]:
    """What can be done next with a halted rollout (nothing for other states)."""
    if ro.state != "halted":
        return []
    name, version = ro.release.component.name, ro.release.version
    steps = [
        NextStep("resume", "once the cause is fixed, resume it with a reason; its counts start again from zero",
                 f"release-server rollouts resume {ro.id} --reason TEXT", "POST",
                 f"/api/v1/rollouts/{ro.id}/resume"),
        NextStep("yank", f"yank {name} {version}: installations that took it go back to the newest good release",
                 f"release-server rollouts yank {ro.id} --reason TEXT", "POST", f"/api/v1/rollouts/{ro.id}/yank"),
        NextStep("new_release", f"publish a fixed {name} release and roll that out instead",
                 f"release-server publish --component {name} --version NEW ...; "
                 f"release-server rollouts create --component {name} --version NEW --channel {ro.channel} --start",
                 None, None),
    ]
    if ro.release.yanked:
        steps = [s for s in steps if s.action != "yank"]
    return steps


def _next_steps_text(ro: Rollout) -> str:
    parts = []
    for step in next_steps(ro):
        if step.action == "resume":
            parts.append(f"resume it with a reason once the cause is fixed (`rollouts resume {ro.id} --reason ...`, "
                         f"POST {step.path})")
        elif step.action == "yank":
            parts.append(f"yank the release so the installations that took it go back "
                         f"(`rollouts yank {ro.id} --reason ...`, POST {step.path})")
        else:
            parts.append("publish a fixed release and roll that out")
    return "; ".join(parts)


class RolloutStateError(ConflictError):
    code = "rollout_state"

    def __init__(self, rollout: Rollout, action: str) -> None:
        message = f"cannot {action} a rollout that is {rollout.state}"
        if rollout.state == "halted":
            why = f" ({rollout.halt_reason})" if rollout.halt_reason else ""
            message = (f"cannot {action} a rollout that is halted{why}: rollout {rollout.id} offers nothing new. "
                       f"Next: {_next_steps_text(rollout)}")
        super().__init__(message, field="state")
        self.state, self.action = rollout.state, action


class DuplicateRolloutError(ConflictError):
    code = "duplicate_rollout"

    def __init__(self, release: Release, channel: str) -> None:
        super().__init__(f"{release.component.name} {release.version} already has a rollout on {channel}",
                         field="channel")


def share_of(percent: float) -> int:
    if not 0 <= percent <= 100:
        raise ValidationError("percent must be between 0 and 100", field="percent")
    return int(round(percent * BUCKETS / 100))


def check_schedule(schedule: Iterable[dict[str, Any]]) -> list[dict[str, float]]:
    steps = []
    last = -1.0
    for i, step in enumerate(schedule):
        try:
            percent, hours = float(step["percent"]), float(step.get("min_hours", 0))
        except (KeyError, TypeError, ValueError):
            raise ValidationError(f"step {i} needs numeric 'percent' and 'min_hours'", field=f"schedule.{i}") from None
        if not 0 < percent <= 100 or percent <= last or hours < 0:
            raise ValidationError(f"step {i}: percents must grow within (0, 100] and hours be >= 0",
                                  field=f"schedule.{i}")
        last = percent
        steps.append({"percent": percent, "min_hours": hours})
    return steps


def _halt_hooks() -> list:
    return current_app.extensions.setdefault("rollout_halt_hooks", []) if has_app_context() else []


def get_rollout(session: Session, rollout_id: int, *, lock: bool = False) -> Rollout:
    ro = lock_row(session, Rollout, rollout_id) if lock else session.get(Rollout, rollout_id)
    if ro is None:
        raise UnknownRolloutError(rollout_id)
    return ro


def list_rollouts(session: Session, *, state: str | None = None, component: str | None = None) -> list[Rollout]:
    stmt = select(Rollout).order_by(Rollout.id.desc())
    if state:
        stmt = stmt.where(Rollout.state == state)
    rows = list(session.scalars(stmt))
    if component:
        rows = [r for r in rows if r.release.component.name == component]
    return rows


def page_of_rollouts(session: Session, *, state: str | None = None, component: str | None = None, page: int = 1,
                     per_page: int = 50) -> tuple[list[Rollout], int]:
    """One page of rollouts, newest first, and how many there are in all."""
    from sqlalchemy import func

    from ..releases.models import Component

    where = []
    if state:
        where.append(Rollout.state == state)
    if component:
        where.append(Rollout.release_id.in_(select(Release.id).join(Component, Component.id == Release.component_id)
                                            .where(Component.name == component)))
    total = session.scalar(select(func.count()).select_from(Rollout).where(*where)) or 0
    rows = list(session.scalars(select(Rollout).where(*where).order_by(Rollout.id.desc())
                                .limit(per_page).offset((max(1, page) - 1) * per_page)))
    return rows, total


def create_rollout(session: Session, component: str, version: str, channel: str, *, actor: str,
                   schedule: Iterable[dict[str, Any]] = (), failure_threshold: float = 0.05,
                   min_attempts: int = 20) -> Rollout:
    release = get_release(session, component, version)
    get_channel(session, channel)
    if channel not in release.channel_names:
        raise ValidationError(f"{component} {release.version} is not on channel {channel!r}; promote it first",
                              field="channel")
    if release.yanked:
        raise ConflictError("a yanked release cannot be rolled out", field="version")
    if not 0 < failure_threshold < 1:
        raise ValidationError("failure_threshold must be between 0 and 1", field="failure_threshold")
    if min_attempts < 1:
        raise ValidationError("min_attempts must be at least 1", field="min_attempts")
    existing = session.scalar(select(Rollout).where(Rollout.release_id == release.id, Rollout.channel == channel))
    if existing is not None:
        raise DuplicateRolloutError(release, channel)
    ro = Rollout(release=release, channel=channel, state="draft", share=0, schedule=check_schedule(schedule),
                 failure_threshold=failure_threshold, min_attempts=min_attempts, created_by=actor)
    session.add(ro)
    session.flush()
    bump_catalog(session)
    return ro


def stage_published_release(session: Session, release: Release, spec: Any, actor: str) -> list[Rollout]:
    """At publish, in the publish's transaction: a rollout of the new release on each of its channels.

    ``spec`` is the publish's ``rollout`` (schedule, failure_threshold, min_attempts, start).
    """
    steps = [{"percent": s.percent, "min_hours": s.min_hours} for s in spec.schedule]
    made = []
    for channel in release.channel_names:
        ro = create_rollout(session, release.component.name, release.version, channel, actor=actor, schedule=steps,
                            failure_threshold=spec.failure_threshold, min_attempts=spec.min_attempts)
        if spec.start:
            start(session, ro)
        made.append(ro)
    return made


def _touch(session: Session, ro: Rollout) -> Rollout:
    ro.updated_at = utcnow()
    session.flush()
    bump_catalog(session)
    return ro


def start(session: Session, ro: Rollout, percent: float | None = None) -> Rollout:
    if ro.state != "draft":
        raise RolloutStateError(ro, "start")
    if percent is None:
        percent = ro.schedule[0]["percent"] if ro.schedule else 100.0
    ro.share = share_of(percent)
    ro.state = "running"
    ro.phase = 0
    ro.phase_started_at = utcnow()
    return _touch(session, ro)


def pause(session: Session, ro: Rollout) -> Rollout:
    if ro.state != "running":
        raise RolloutStateError(ro, "pause")
    ro.state = "paused"
    return _touch(session, ro)


def resume(session: Session, ro: Rollout, reason: str | None = None) -> Rollout:
    """Resume a paused rollout, or a halted one once its cause is fixed (a reason is required then).

    A halted rollout starts counting afresh: the attempts that halted it would otherwise
    halt it again at the first report. The figures of the halt stay in ``halt_figures``
    (and the audit log records the reason).
    """
    if ro.state == "halted":
        if not (reason and reason.strip()):
            raise ValidationError(f"resuming halted rollout {ro.id} needs a reason: what was fixed", field="reason")
        if ro.release.yanked:
            raise ConflictError(f"{ro.release.component.name} {ro.release.version} is yanked; unyank it first, "
                                "or publish a fixed release and roll that out", field="state")
        ro.halt_figures = {**(ro.halt_figures or {}), "resumed_at": utcnow().isoformat(),
                           "resume_reason": reason.strip()}
        ro.attempts = ro.successes = ro.failures = 0
        ro.halted_at = None
        ro.state = "running"
        ro.phase_started_at = utcnow()
        return _touch(session, ro)
    if ro.state != "paused":
        raise RolloutStateError(ro, "resume")
    ro.state = "running"
    ro.phase_started_at = utcnow()
    return _touch(session, ro)


def yank_release(session: Session, ro: Rollout, reason: str) -> Rollout:
    """Yank the rollout's release (halting the rollout first if it still runs).

    Installations that took it are offered the newest good release, and the agent
    downgrades because the yank is in the signed metadata.
    """
    from ..releases.services import yank

    if not (reason and reason.strip()):
        raise ValidationError("a yank needs a reason", field="reason")
    if ro.release.yanked:
        raise ConflictError(f"{ro.release.component.name} {ro.release.version} is already yanked", field="state")
    if ro.state in ("draft", "running", "paused"):
        halt(session, ro, f"release yanked: {reason.strip()}")
    yank(session, ro.release, reason.strip())
    return _touch(session, ro)


def set_percentage(session: Session, ro: Rollout, percent: float) -> Rollout:
    if ro.state not in ("running", "paused"):
        raise RolloutStateError(ro, "widen")
    share = share_of(percent)
    if share < ro.share:
        raise ValidationError(f"a rollout only widens: it is at {ro.share / 100:g}%", field="percent")
    ro.share = share
    # later schedule steps at or below the new share are done
    while ro.phase + 1 < len(ro.schedule) and share_of(ro.schedule[ro.phase + 1]["percent"]) <= share:
        ro.phase += 1
    ro.phase_started_at = utcnow()
    return _touch(session, ro)


def complete(session: Session, ro: Rollout) -> Rollout:
    if ro.state not in ("running", "paused"):
        raise RolloutStateError(ro, "complete")
    ro.state = "completed"
    ro.share = BUCKETS
    return _touch(session, ro)


def figures(ro: Rollout) -> dict[str, Any]:
    rate = ro.failures / ro.attempts if ro.attempts else 0.0
    return {"attempts": ro.attempts, "successes": ro.successes, "failures": ro.failures,
            "failure_rate": round(rate, 4), "threshold": ro.failure_threshold, "min_attempts": ro.min_attempts,
            "percent": ro.share / 100}


def halt(session: Session, ro: Rollout, reason: str, *, automatic: bool = False) -> Rollout:
    if ro.state in ("halted", "completed"):
        raise RolloutStateError(ro, "halt")
    ro.state = "halted"
    ro.halted_at = utcnow()
    ro.halt_reason = reason
    ro.halt_figures = {**figures(ro), "automatic": automatic}
    _touch(session, ro)
    for hook in _halt_hooks():
        hook(session, ro)
    return ro


def healthy(ro: Rollout) -> bool:
    return not (ro.attempts >= ro.min_attempts and ro.failures / ro.attempts > ro.failure_threshold)


def advance(session: Session, now: datetime | None = None) -> list[Rollout]:
    """Move running rollouts to their next phase when the current one has lasted long enough."""
    now = now or utcnow()
    moved = []
    for ro in session.scalars(select(Rollout).where(Rollout.state == "running")):
        if not ro.schedule or not healthy(ro) or ro.phase_started_at is None:
            continue
        if now - ro.phase_started_at < timedelta(hours=ro.schedule[ro.phase]["min_hours"]):
            continue
        if ro.phase + 1 < len(ro.schedule):
            ro.phase += 1
            ro.share = share_of(ro.schedule[ro.phase]["percent"])
            ro.phase_started_at = now
            if ro.share >= BUCKETS:
                ro.state = "completed"
        else:
            ro.state = "completed"
            ro.share = BUCKETS
        _touch(session, ro)
        moved.append(ro)
    return moved


def record_reports(session: Session, inst: Installation, reports: list[UpdateReport]) -> list[Rollout]:
    """Count a batch's install attempts against their rollouts; halt a rollout that fails too often.

    One look-up of the rollouts concerned, then per rollout (not per report) one
    increment of its counters, made under the row's lock so that concurrent batches add up.
    """
    counts: dict[int, dict[str, int]] = {}
    sequence: dict[int, list[str]] = {}
    for report in reports:
        column = COUNTED_OUTCOMES.get(report.outcome)
        if column is None or report.release_id is None:
            continue
        c = counts.setdefault(report.release_id, {"attempts": 0, "successes": 0, "failures": 0})
        c["attempts"] += 1
        c[column] += 1
        sequence.setdefault(report.release_id, []).append(column)
    if not counts:
        return []
    rollout_ids = dict(session.execute(select(Rollout.release_id, Rollout.id).where(
        Rollout.release_id.in_(counts), Rollout.channel == inst.channel)).all())
    touched = []
    for release_id, rid in sorted(rollout_ids.items(), key=lambda kv: kv[1]):  # one lock order for everyone
        c = counts[release_id]
        session.execute(update(Rollout).where(Rollout.id == rid).values(
            attempts=Rollout.attempts + c["attempts"], successes=Rollout.successes + c["successes"],
            failures=Rollout.failures + c["failures"]))
        ro = get_rollout(session, rid, lock=True)
        session.refresh(ro)
        if ro.state in ("running", "paused"):
            # as if the batch's reports had arrived one by one: halt at the first that makes it unhealthy
            attempts, failures = ro.attempts - c["attempts"], ro.failures - c["failures"]
            for column in sequence[release_id]:
                attempts += 1
                failures += column == "failures"
                if attempts >= ro.min_attempts and failures / attempts > ro.failure_threshold:
                    halt(session, ro, f"failure rate {failures / attempts:.1%} above {ro.failure_threshold:.1%} "
                                      f"after {attempts} attempts", automatic=True)
                    break
        touched.append(ro)
    return touched


# pins and restrictions

def add_pin(session: Session, *, scope: str, scope_value: str, component: str, value: str, exact: bool,
            actor: str, note: str = "") -> Pin:
    if scope not in ("installation", "tag", "customer"):
        raise ValidationError("scope must be installation, tag or customer", field="scope")
    if scope == "customer":
        from ..fleet.services import get_customer

        scope_value = str(get_customer(session, scope_value).id)
    elif scope == "installation" and session.get(Installation, scope_value) is None:
        raise NotFoundError(f"no installation {scope_value!r}", field="value")
    existing = session.scalar(select(Pin).where(Pin.scope == scope, Pin.scope_value == scope_value,
                                                Pin.component == component))
    if existing is not None:
        session.delete(existing)
        session.flush()
    pin = Pin(scope=scope, scope_value=scope_value, component=component, value=value, exact=exact,
              created_by=actor, note=note)
    session.add(pin)
    session.flush()
    bump_catalog(session)
    return pin


def list_pins(session: Session) -> list[Pin]:
    return list(session.scalars(select(Pin).order_by(Pin.id)))


def pins_page(session: Session, page: int, per_page: int) -> tuple[list[Pin], int]:
    """One page of the pins, oldest first, and how many there are."""
    total = session.scalar(select(func.count()).select_from(Pin)) or 0
    rows = list(session.scalars(select(Pin).order_by(Pin.id).offset((page - 1) * per_page).limit(per_page)))
    return rows, total


def pins_for_installation(session: Session, inst: Installation) -> list[Pin]:
    """The pins that reach one installation (its own, its tags', its customer's), in the order they win."""
    rank = {"installation": 0, "tag": 1, "customer": 2}
    rows = session.scalars(select(Pin).where(
        ((Pin.scope == "installation") & (Pin.scope_value == inst.id))
        | ((Pin.scope == "tag") & Pin.scope_value.in_(list(inst.tags or []) or [""]))
        | ((Pin.scope == "customer") & (Pin.scope_value == str(inst.customer_id)))))
    return sorted(rows, key=lambda p: (p.component, rank.get(p.scope, 9), p.id))


def parse_pin_value(text: str, exact: bool) -> str:
    """A pin as typed: an exact version (normalised) or a version prefix ("2.4" matches 2.4.x, not 2.40)."""
    import re

    from ..releases.schemas import normalise_version

    raw = (text or "").strip()
    if not raw:
        raise ValidationError("give a version or a version prefix", field="pin")
    if exact:
        try:
            return normalise_version(raw)
        except ValueError as e:
            raise ValidationError(str(e), field="pin") from e
    if not re.fullmatch(r"[0-9]+(\.[0-9]+)*\.?", raw):
        raise ValidationError("a version prefix is numbers separated by dots, e.g. 2.4", field="pin")
    return raw.rstrip(".")


def remove_pin(session: Session, pin_id: int) -> Pin:
    pin = session.get(Pin, pin_id)
    if pin is None:
        raise NotFoundError(f"no pin {pin_id}", field="pin")
    session.delete(pin)
    bump_catalog(session)
    return pin


def restrict_release(session: Session, release: Release, *, customers: Iterable[str] = (),
                     installations: Iterable[str] = ()) -> list[ReleaseRestriction]:
    """Limit a release to named customers and installations (adds to any existing restriction)."""
    from ..fleet.services import get_customer

    rows = []
    for ref in customers:
        cust: Customer = get_customer(session, ref)
        rows.append(ReleaseRestriction(release_id=release.id, customer_id=cust.id))
    for inst_id in installations:
        if session.get(Installation, inst_id) is None:
            raise NotFoundError(f"no installation {inst_id!r}", field="restricted_installations")
        rows.append(ReleaseRestriction(release_id=release.id, installation_id=inst_id))
    session.add_all(rows)
    session.flush()
    bump_catalog(session)
    return rows


def restrictions_of(session: Session, release: Release) -> dict[str, list[str]]:
    rows = list(session.scalars(select(ReleaseRestriction).where(ReleaseRestriction.release_id == release.id)))
    customers = []
    for r in rows:
        if r.customer_id is not None:
            c = session.get(Customer, r.customer_id)
            customers.append(c.name if c else str(r.customer_id))
    return {"customers": sorted(customers),
            "installations": sorted(r.installation_id for r in rows if r.installation_id)}
