"""Failure groups: the list (filters, sorting, states) and a page per group.

A group's page shows what Sentry users expect of an issue: the real sample message and
the latest log tails, a trend of occurrences, the installations and customers affected,
the release and its rollouts, the tickets, and the state controls (resolve, optionally
in a version; ignore for a time or for N more reports; reopen). The rules are in
``support.group_states``; the view parses and calls it.
"""
from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for
from flask_babel import format_date, gettext as _
from sqlalchemy import select

from ...db import db
from ...errors import ReleaseServerError
from ...fleet import services as fleet
from ...releases import services as releases
from ...support import failures, fixes, group_states
from ...support.models import FailureGroup
from .. import charts, queries
from ..forms import Form, service_error_text
from ..security import current_staff, staff_required
from . import ALL, bp

PER_PAGE = 50


@bp.get("/failure-groups")
@staff_required(*ALL)
def failure_groups() -> Any:
    session = db.session
    args = request.args
    state = args.get("state", "unresolved")
    try:
        page = max(1, min(int(args.get("page", "1")), 100_000))
    except ValueError:
        page = 1
    customer_id = args.get("customer", "")
    flt = group_states.GroupFilter(
        state=state if state in group_states.STATES else None,
        component=(args.get("component") or "").strip()[:64] or None,
        version=(args.get("version") or "").strip()[:64] or None,
        customer_id=int(customer_id) if customer_id.isdigit() and len(customer_id) < 10 else None,
        q=(args.get("q") or "").strip()[:200] or None,
        sort=args.get("sort") if args.get("sort") in group_states.SORTS else "last_seen",
        page=page, per_page=PER_PAGE)
    error = None
    try:
        rows, total = group_states.list_groups(session, flt)
    except ReleaseServerError as e:
        rows, total, error = [], 0, service_error_text(e)
    stats = failures.stats(session, [g.id for g in rows])
    components = sorted({c for (c,) in session.execute(select(FailureGroup.component).distinct())})
    return render_template("console/failure_groups.html", rows=rows, stats=stats, total=total, page=page,
                           per_page=PER_PAGE, error=error, components=components, states=group_states.STATES,
                           sorts=group_states.SORTS, customers=fleet.list_customers(session),
                           filters={"state": state if state in group_states.STATES else "all",
                                    "component": flt.component or "", "version": flt.version or "",
                                    "customer": customer_id, "q": flt.q or "", "sort": flt.sort})


def _group_page(group_id: int, form: Form | None = None, status: int = 200, fix_form: Form | None = None) -> Any:
    session = db.session
    group = failures.get_group(session, group_id)
    st = failures.stats(session, [group.id]).get(group.id)
    axis, by_outcome = queries.group_reports_per_day(session, group.id, 30)
    trend = charts.stacked_bars([format_date(d, "d MMM") for d in axis],
                                [charts.Series(str(_("Rolled back")), by_outcome["rolled_back"], "#1d4ed8"),
                                 charts.Series(str(_("Left failing")), by_outcome["failed"], charts.FAIL_COLOUR)],
                                title=_("Reports per day, last 30 days"), empty_text=_("No reports in 30 days"))
    release, rollouts = queries.group_release_and_rollouts(session, group)
    return render_template("console/failure_group.html", g=group, st=st, trend=trend, release=release,
                           rollouts=rollouts, occurrences=queries.group_occurrences(session, group.id, 20),
                           installations=queries.group_installations(session, group.id, 100),
                           customers=queries.group_customers(session, group.id),
                           tickets=group_states.tickets_of(session, group.id), states=group_states.STATES,
                           fixed_by=fixes.fixes_of_group(session, group.id),
                           fix_rows=fixes.status_rows(session, group.id, None),
                           figures=fixes.figures(session, group.id),
                           fix_form=fix_form or Form({"restrict": "1"}),
                           form=form or Form({"state": group.state,
                                              "in_version": group.resolved_in_version or ""})), status


@bp.get("/failure-groups/<int:group_id>")
@staff_required(*ALL)
def failure_group_detail(group_id: int) -> Any:
    return _group_page(group_id)


@bp.post("/failure-groups/<int:group_id>/state")
@staff_required(*ALL)
def failure_group_state(group_id: int) -> Any:
    session = db.session
    group = failures.get_group(session, group_id)
    form = Form(request.form)
    state = form.choice("state", group_states.STATES)
    in_version = form.text("in_version", max_length=64)
    hours = form.number("ignore_hours", minimum=1, maximum=24 * 366, required=False)
    reports = form.number("ignore_reports", minimum=1, maximum=1_000_000, required=False, integer=True)
    if form.ok:
        try:
            group_states.set_state(session, group, state or "", current_staff().username, in_version=in_version,
                                   ignore_hours=hours, ignore_reports=int(reports) if reports else None)
            db.commit()
            flash(_("State saved."))
            return redirect(url_for("console.failure_group_detail", group_id=group.id))
        except ReleaseServerError as e:
            db.rollback()
            form.service_error(e, {"state": "state", "in_version": "in_version", "ignore_hours": "ignore_hours",
                                   "ignore_reports": "ignore_reports"})
    db.rollback()
    return _group_page(group_id, form, 400)


@bp.post("/failure-groups/<int:group_id>/fix")
@staff_required(*ALL)
def failure_group_fix(group_id: int) -> Any:
    """"Fix for the affected": name a published release of the group's component as its fix, optionally
    limiting it to the affected installations (the CLI's ``publish --fixes-group N --restrict-to-affected``
    publishes and does both in one step)."""
    session = db.session
    group = failures.get_group(session, group_id)
    form = Form(request.form)
    version = form.text("version", required=True, max_length=64)
    restrict = form.get("restrict") == "1"
    if form.ok:
        try:
            release = releases.get_release(session, group.component, version)
            plan = fixes.resolve(session, release.component, [], [group.id])
            fixes.fix_for_affected(session, release, plan, current_staff().username, restrict=restrict)
            db.commit()
            flash(_("%(version)s is named as the fix of this group.", version=release.version))
            return redirect(url_for("console.failure_group_detail", group_id=group.id))
        except ReleaseServerError as e:
            db.rollback()
            form.service_error(e, {"version": "version", "component": "version", "restrict_to_affected": "restrict",
                                   "fixes_groups.0": "version"})
    db.rollback()
    return _group_page(group_id, None, 400, form)


@bp.post("/failure-groups/<int:group_id>/unfix")
@staff_required(*ALL)
def failure_group_unfix(group_id: int) -> Any:
    """Take back a release named as the group's fix (audited)."""
    session = db.session
    group = failures.get_group(session, group_id)
    form = Form(request.form)
    version = form.text("version", required=True, max_length=64)
    if form.ok:
        try:
            release = releases.get_release(session, group.component, version)
            fixes.unlink(session, release, fixes.FixPlan([], [group.id]), current_staff().username)
            db.commit()
            flash(_("%(version)s is no longer named as the fix.", version=release.version))
            return redirect(url_for("console.failure_group_detail", group_id=group.id))
        except ReleaseServerError as e:
            db.rollback()
            form.service_error(e, {"version": "version"})
    db.rollback()
    return _group_page(group_id, None, 400, form)
