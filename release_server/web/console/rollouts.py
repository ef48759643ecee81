"""Rollouts: list, create, and start/pause/resume/widen/complete/halt after a confirmation page.

Each action is a GET that shows what will happen (and asks for the percentage or the
reason it needs) and a POST that does it: one service call, audited like the API does.
"""
from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import format_date, gettext as _, lazy_gettext as _l

from sqlalchemy import select

from ...accounts.services import audit
from ...db import db
from ...errors import ReleaseServerError
from ...releases import services as releases
from ...rollouts import figures as figures_mod
from ...rollouts import services as rollouts
from ...rollouts.models import Rollout
from ...support.models import Ticket
from .. import charts, queries
from ..forms import Form
from ..security import current_staff, staff_required
from . import ALL, PUBLISHERS, bp

PER_PAGE = 30


def page_arg() -> int:
    try:
        return max(1, min(int(request.args.get("page", "1")), 100_000))
    except ValueError:
        return 1


ACTIONS: dict[str, dict[str, Any]] = {
    "start": {"label": _l("Start"), "from": ("draft",), "needs": "percent_optional",
              "explain": _l("Installations in the first share of buckets will be offered this release.")},
    "pause": {"label": _l("Pause"), "from": ("running",), "needs": None,
              "explain": _l("No further installations will be admitted until it is resumed; the schedule stops.")},
    "resume": {"label": _l("Resume"), "from": ("paused",), "needs": None,
               "explain": _l("The rollout admits installations again and its schedule continues.")},
    "widen": {"label": _l("Widen"), "from": ("running", "paused"), "needs": "percent",
              "explain": _l("More installations will be offered the release. A rollout only widens; everyone "
                            "already admitted stays in.")},
    "complete": {"label": _l("Complete"), "from": ("running", "paused"), "needs": None,
                 "explain": _l("Every installation on the channel will be offered the release.")},
    "halt": {"label": _l("Halt"), "from": ("draft", "running", "paused"), "needs": "reason",
             "explain": _l("The rollout stops for good: nobody else will be offered this release through it.")},
    "restart": {"label": _l("Resume after a fix"), "from": ("halted",), "needs": "reason",
                "explain": _l("Once the cause of the halt is fixed: the rollout admits installations again and "
                              "counts its attempts afresh; the figures of the halt stay in the audit log. "
                              "Say what was fixed.")},
}


def rollout_chart(ro: Rollout) -> Any:
    days = figures_mod.rollout_days(db.session, ro)
    labels = [format_date(d, "d MMM") for d, _a, _f in days]
    return charts.bars_with_rate(
        labels, [a for _d, a, _f in days], [f for _d, _a, f in days],
        title=_("Attempts per day and the failure rate so far"),
        attempts_name=_("Attempts"), failures_name=_("Failures"), rate_name=_("Failure rate so far"),
        threshold=ro.failure_threshold, threshold_name=_("Halt threshold"), empty_text=_("No attempts yet"),
        min_attempts=ro.min_attempts, not_judged_name=_("not judged before %(n)d attempts", n=ro.min_attempts))


@bp.get("/rollouts", endpoint="rollouts")
@staff_required(*ALL)
def rollouts_list() -> Any:
    state = request.args.get("state") or None
    if state not in (None, "draft", "running", "paused", "halted", "completed"):
        state = None
    page = page_arg()
    rows, total = rollouts.page_of_rollouts(db.session, state=state, component=request.args.get("component") or None,
                                            page=page, per_page=PER_PAGE)
    return render_template("console/rollouts.html", rows=rows, figures={r.id: rollouts.figures(r) for r in rows},
                           state=state, page=page, per_page=PER_PAGE, total=total)


def _parse_schedule(form: Form) -> list[dict[str, float]]:
    raw = form.text("steps", max_length=200)
    hours = form.number("step_hours", minimum=0, maximum=24 * 365, required=False)
    steps = []
    if raw:
        for part in raw.replace(";", ",").split(","):
            part = part.strip().rstrip("%").strip()
            if not part:
                continue
            try:
                steps.append({"percent": float(part.replace(" ", "")), "min_hours": hours or 0.0})
            except ValueError:
                form.error("steps", _("Write percentages separated by commas, e.g. 5, 25, 100."))
                return []
    return steps


@bp.route("/rollouts/new", methods=["GET", "POST"])
@staff_required(*PUBLISHERS)
def rollout_new() -> Any:
    session = db.session
    defaults = {"component": request.args.get("component", ""), "version": request.args.get("version", ""),
                "channel": request.args.get("channel", "stable"), "steps": "5, 25, 50, 100", "step_hours": "24",
                "threshold": "5", "min_attempts": "20"}
    form = Form(request.form if request.method == "POST" else defaults)
    status = 200
    if request.method == "POST":
        component = form.text("component", required=True, max_length=64)
        version = form.text("version", required=True, max_length=64)
        channel = form.text("channel", required=True, max_length=64)
        schedule = _parse_schedule(form)
        threshold = form.number("threshold", minimum=0.01, maximum=99.99)
        min_attempts = form.number("min_attempts", minimum=1, maximum=1_000_000, integer=True)
        if form.ok:
            try:
                ro = rollouts.create_rollout(session, component, version, channel, actor=current_staff().username,
                                             schedule=schedule, failure_threshold=threshold / 100,
                                             min_attempts=int(min_attempts))
                if form.get("start"):
                    rollouts.start(session, ro)
                audit(session, current_staff().username, "rollout.create", f"rollout:{ro.id}",
                      {"release": f"{ro.release.component.name}/{ro.release.version}", "channel": ro.channel,
                       "schedule": ro.schedule, "started": bool(form.get("start"))})
                db.commit()
                flash(_("Rollout created."))
                return redirect(url_for("console.rollout_detail", rollout_id=ro.id))
            except ReleaseServerError as e:
                db.rollback()
                form.service_error(e, {"schedule": "steps", "failure_threshold": "threshold",
                                       "min_attempts": "min_attempts", "version": "version", "channel": "channel",
                                       "component": "component"})
        status = 400
    return render_template("console/rollout_new.html", form=form, components=releases.list_components(session),
                           channels=releases.list_channels(session)), status


@bp.get("/rollouts/<int:rollout_id>")
@staff_required(*ALL)
def rollout_detail(rollout_id: int) -> Any:
    ro = rollouts.get_rollout(db.session, rollout_id)
    allowed = [a for a, spec in ACTIONS.items() if ro.state in spec["from"]]
    tickets = list(db.session.scalars(select(Ticket).where(Ticket.rollout_id == ro.id).order_by(Ticket.id)))
    members = queries.rollout_installations(db.session, ro)
    counts = {s: sum(1 for m in members if m["state"] == s) for s in queries.ROLLOUT_INSTALLATION_STATES}
    shown = request.args.get("inst_state")
    if shown in queries.ROLLOUT_INSTALLATION_STATES:
        members = [m for m in members if m["state"] == shown]
    return render_template("console/rollout.html", ro=ro, f=rollouts.figures(ro), actions=ACTIONS, allowed=allowed,
                           chart=rollout_chart(ro), tickets=tickets, members=members[:200], member_total=len(members),
                           member_counts=counts, member_state=shown if shown in counts else "",
                           member_states=queries.ROLLOUT_INSTALLATION_STATES)


@bp.route("/rollouts/<int:rollout_id>/<action>", methods=["GET", "POST"])
@staff_required(*PUBLISHERS)
def rollout_action(rollout_id: int, action: str) -> Any:
    if action not in ACTIONS:
        abort(404)
    session = db.session
    spec = ACTIONS[action]
    ro = rollouts.get_rollout(session, rollout_id, lock=request.method == "POST")
    suggested = {"percent": f"{min(ro.share / 100 * 2 or 10, 100):g}"} if action == "widen" else {}
    form = Form(request.form if request.method == "POST" else suggested)
    status = 200
    if request.method == "POST":
        percent = reason = None
        if spec["needs"] == "percent":
            percent = form.number("percent", minimum=0, maximum=100)
        elif spec["needs"] == "percent_optional":
            percent = form.number("percent", minimum=0, maximum=100, required=False)
        elif spec["needs"] == "reason":
            reason = form.text("reason", required=True, max_length=2000)
        if form.ok:
            try:
                details: dict[str, Any] = {}
                if action == "start":
                    rollouts.start(session, ro, percent)
                    details = {"percent": ro.share / 100}
                elif action == "pause":
                    rollouts.pause(session, ro)
                elif action == "resume":
                    rollouts.resume(session, ro)
                elif action == "widen":
                    rollouts.set_percentage(session, ro, percent)
                    details = {"percent": percent}
                elif action == "complete":
                    rollouts.complete(session, ro)
                elif action == "halt":
                    rollouts.halt(session, ro, reason)
                    details = {"reason": reason}
                elif action == "restart":
                    rollouts.resume(session, ro, reason)
                    details = {"reason": reason}
                audit(session, current_staff().username, "rollout.resume" if action == "restart" else f"rollout.{action}",
                      f"rollout:{ro.id}",
                      {"release": f"{ro.release.component.name}/{ro.release.version}", "channel": ro.channel,
                       **details})
                db.commit()
                flash(_("Done: %(action)s.", action=spec["label"]))
                return redirect(url_for("console.rollout_detail", rollout_id=ro.id))
            except ReleaseServerError as e:
                db.rollback()
                form.service_error(e, {"percent": "percent", "state": "", "reason": "reason"})
        status = 400
    more = None
    if action == "widen":
        try:
            more = queries.newly_admitted(session, ro, float((form.get("percent") or "0").replace(",", ".")))
        except ValueError:
            more = None
    return render_template("console/rollout_confirm.html", ro=ro, action=action, spec=spec, form=form,
                           possible=ro.state in spec["from"], more=more), status
