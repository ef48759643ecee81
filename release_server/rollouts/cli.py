"""``release-server rollouts ...`` and ``release-server pins ...``: the same services as the API."""
from __future__ import annotations

import json
import sys
from collections.abc import Callable

import click
from flask import Flask
from flask.cli import with_appcontext

from ..errors import ReleaseServerError


def _run(action: str, fn: Callable, target: Callable | None = None, details: dict | None = None) -> object:
    from ..accounts.services import audit
    from ..db import db

    try:
        result = fn(db.session)
        if target is not None:
            audit(db.session, "cli", action, target(result), details or {})
        db.commit()
        return result
    except ReleaseServerError as e:
        click.echo(f"error: {e.message}", err=True)
        sys.exit(1)


def _show(ro, *, steps: bool = True) -> None:  # noqa: ANN001
    from .services import figures, next_steps

    f = figures(ro)
    click.echo(f"rollout {ro.id}: {ro.release.component.name} {ro.release.version} on {ro.channel} — {ro.state}, "
               f"{ro.share / 100:g}% — attempts {f['attempts']}, failures {f['failures']} "
               f"({f['failure_rate']:.1%}, threshold {ro.failure_threshold:.1%})"
               + (f" — halted: {ro.halt_reason}" if ro.state == "halted" else ""))
    if steps:
        for step in next_steps(ro):
            click.echo(f"  next: {step.description}\n        {step.command}")


def _as_json(ro) -> dict:  # noqa: ANN001
    from .api import rollout_out

    return rollout_out(ro).model_dump(mode="json")


@click.group("rollouts", help="Staged rollouts.")
def rollouts_group() -> None:
    pass


@rollouts_group.command("create")
@click.option("--component", required=True)
@click.option("--version", "version", required=True)
@click.option("--channel", default="stable", show_default=True)
@click.option("--schedule", default="", help="Phases as PERCENT:HOURS,..., e.g. 5:24,25:24,100:0")
@click.option("--threshold", type=float, default=0.05, show_default=True, help="Failure rate that halts it")
@click.option("--min-attempts", type=int, default=20, show_default=True)
@click.option("--start", is_flag=True)
@with_appcontext
def rollouts_create(component: str, version: str, channel: str, schedule: str, threshold: float, min_attempts: int,
                    start: bool) -> None:
    """Create a staged rollout of a release on a channel (and start it with --start)."""
    from . import services

    steps = []
    for part in filter(None, (p.strip() for p in schedule.split(","))):
        pct, _, hours = part.partition(":")
        try:
            steps.append({"percent": float(pct), "min_hours": float(hours or 0)})
        except ValueError:
            raise click.BadParameter(f"{part!r}: expected PERCENT:HOURS", param_hint="--schedule") from None

    def act(session):  # noqa: ANN001, ANN202
        ro = services.create_rollout(session, component, version, channel, actor="cli", schedule=steps,
                                     failure_threshold=threshold, min_attempts=min_attempts)
        if start:
            services.start(session, ro)
        return ro

    _show(_run("rollout.create", act, lambda ro: f"rollout:{ro.id}", {"schedule": steps, "started": start}))


@rollouts_group.command("list")
@click.option("--state", type=click.Choice(["draft", "running", "paused", "halted", "completed"]), default=None,
              help="Only rollouts in this state.")
@click.option("--component", default=None, help="Only rollouts of this component.")
@click.option("--json", "as_json", is_flag=True, help="JSON, one object per rollout (a list).")
@with_appcontext
def rollouts_list(state: str | None, component: str | None, as_json: bool) -> None:
    """List rollouts with their state and figures."""
    from ..db import db
    from . import services

    rows = services.list_rollouts(db.session, state=state, component=component)
    if as_json:
        click.echo(json.dumps([_as_json(ro) for ro in rows], indent=2))
        return
    for ro in rows:
        _show(ro, steps=False)


@rollouts_group.command("show")
@click.argument("rollout_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="JSON, as the API answers it.")
@with_appcontext
def rollouts_show(rollout_id: int, as_json: bool) -> None:
    """Show one rollout, and for a halted one what can be done next."""
    from ..db import db
    from . import services

    try:
        ro = services.get_rollout(db.session, rollout_id)
    except ReleaseServerError as e:
        click.echo(f"error: {e.message}", err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps(_as_json(ro), indent=2))
        return
    _show(ro)


def _simple(name: str, action: str, doc: str, fn_name: str, extra: Callable | None = None) -> None:
    @rollouts_group.command(name, help=doc)
    @click.argument("rollout_id", type=int)
    @with_appcontext
    def cmd(rollout_id: int, **kw: object) -> None:
        from . import services

        def act(session):  # noqa: ANN001, ANN202
            ro = services.get_rollout(session, rollout_id, lock=True)
            return getattr(services, fn_name)(session, ro, *kw.values())

        _show(_run(f"rollout.{action}", act, lambda ro: f"rollout:{ro.id}", {k: v for k, v in kw.items()}))

    if extra is not None:
        extra(cmd)


_simple("start", "start", "Start a draft rollout.", "start")
_simple("pause", "pause", "Pause a running rollout.", "pause")
_simple("resume", "resume", "Resume a paused rollout, or a halted one once its cause is fixed (with --reason).",
        "resume", lambda cmd: click.option("--reason", default=None,
                                           help="What was fixed (required for a halted rollout).")(cmd))
_simple("yank", "yank", "Yank the rollout's release: installations that took it go back to the newest good one.",
        "yank_release", lambda cmd: click.option("--reason", required=True, help="Why (shown to staff).")(cmd))
_simple("complete", "complete", "Offer the release to the whole channel.", "complete")
_simple("set", "widen", "Widen a rollout to PERCENT.", "set_percentage",
        lambda cmd: click.argument("percent", type=click.FloatRange(0, 100))(cmd))
_simple("halt", "halt", "Halt a rollout (it offers nothing more).", "halt",
        lambda cmd: click.option("--reason", required=True)(cmd))


@click.group("pins", help="Pins: keep some installations on a version or a prefix.")
def pins_group() -> None:
    pass


@pins_group.command("add")
@click.option("--scope", type=click.Choice(["installation", "tag", "customer"]), required=True)
@click.option("--value", required=True, help="Installation id, tag, or customer id/name.")
@click.option("--component", required=True)
@click.option("--version", "version", default=None, help="Exact version.")
@click.option("--prefix", default=None, help="Version prefix, e.g. 2.4 (matches 2.4.x, not 2.40).")
@with_appcontext
def pins_add(scope: str, value: str, component: str, version: str | None, prefix: str | None) -> None:
    """Pin a component of some installations to a version or a prefix."""
    from . import services

    if (version is None) == (prefix is None):
        click.echo("error: give exactly one of --version or --prefix", err=True)
        sys.exit(2)
    pin = _run("pin.add", lambda s: services.add_pin(s, scope=scope, scope_value=value, component=component,
                                                     value=version or prefix, exact=version is not None,
                                                     actor="cli"),
               lambda p: f"pin:{p.id}", {"scope": scope, "value": value, "component": component})
    click.echo(f"pin {pin.id}: {scope}={value} {component} {'==' if pin.exact else 'prefix '}{pin.value}")


@pins_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON (a list of pins).")
@with_appcontext
def pins_list(as_json: bool) -> None:
    """List pins (without --json: one JSON object per line)."""
    from ..db import db
    from . import services

    rows = [{"id": p.id, "scope": p.scope, "value": p.scope_value, "component": p.component, "pin": p.value,
             "exact": p.exact} for p in services.list_pins(db.session)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(json.dumps(row))


@pins_group.command("remove")
@click.argument("pin_id", type=int)
@with_appcontext
def pins_remove(pin_id: int) -> None:
    """Remove a pin."""
    from . import services

    _run("pin.remove", lambda s: services.remove_pin(s, pin_id), lambda p: f"pin:{pin_id}")
    click.echo(f"removed pin {pin_id}")


def init_app(app: Flask) -> None:
    app.cli.add_command(rollouts_group)
    app.cli.add_command(pins_group)
