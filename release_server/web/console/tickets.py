"""Tickets for staff: the queue (filters, search by number or text, sortable columns, paging, bulk
assign and status change, saved filters with counts) and a ticket's page with its timeline, linked
failure groups and the actions: the composer (reply, request information or internal note, with
canned replies), mark processed (with a comment), assign, change kind and priority, CC and merge.

Each action is one call into ``support.services`` or ``support.desk`` (which write the timeline
and the audit log); the view only parses the form and maps errors next to the fields.
"""
from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for
from werkzeug.datastructures import MultiDict
from flask_babel import gettext as _
from sqlalchemy import select

from ...accounts.models import User
from ...db import db
from ...errors import ReleaseServerError
from ...fleet import services as fleet
from ...support import desk, failures, fixes, services as support
from ...support.models import DEPARTMENTS, KINDS, PRIORITIES, REVIEW_OUTCOMES, STATUSES
from .. import attachments, queries
from ..forms import Form, service_error_text
from ..security import current_staff, staff_actor, staff_required
from . import SUPPORT, bp

PER_PAGE = 30


def _assignable() -> list[User]:
    return list(db.session.scalars(select(User).where(User.active.is_(True), User.role.in_(("admin", "support")))
                                   .order_by(User.username)))


@bp.get("/tickets")
@staff_required(*SUPPORT)
def tickets() -> Any:
    return _queue()


def _queue(bulk_form: Form | None = None, status: int = 200) -> Any:
    session = db.session
    args = request.args
    actor = staff_actor()
    me = current_staff()
    q = (args.get("q") or "").strip()[:200]
    if q and support.parse_number(q) is not None and not q.isdigit():
        found = support.find_ticket(session, q)
        if found is not None:
            return redirect(url_for("console.ticket_detail", number=found.number))
    try:
        page = max(1, int(args.get("page", "1")))
    except ValueError:
        page = 1
    flt = desk.filter_from_query(args, me.username, page=page, per_page=PER_PAGE)
    error = None
    try:
        rows, total = support.list_tickets(session, actor, flt)
    except ReleaseServerError as e:
        rows, total, error = [], 0, service_error_text(e)
    users = {u.id: u.username for u in _assignable()}
    current = desk.clean_query(args)
    return render_template("console/tickets.html", rows=rows, total=total, page=page, per_page=PER_PAGE,
                           customers=fleet.list_customers(session), users=users, error=error,
                           filters={"status": args.get("status", "open"), "kind": flt.kind or "",
                                    "customer": args.get("customer", ""), "assignee": args.get("assignee", ""),
                                    "q": q, "department": flt.department or ""},
                           sort=flt.sort, descending=flt.descending, statuses=STATUSES,
                           saved=desk.saved_filters_with_counts(session, me, actor), current_query=current,
                           bulk_form=bulk_form or Form(), save_form=Form()), status


@bp.post("/tickets/bulk")
@staff_required(*SUPPORT)
def tickets_bulk() -> Any:
    """One change to the chosen tickets: assign (to someone, to me, to nobody) or a status."""
    session = db.session
    form = Form(request.form)
    numbers = request.form.getlist("tickets")
    action = form.choice("action", ("assign", "status"))
    changes: dict[str, Any] = {}
    if action == "assign":
        who = form.text("assignee", max_length=80)
        changes["assignee"] = current_staff().username if who == "__me__" else (who or None)
    elif action == "status":
        changes["status"] = form.choice("status", STATUSES)
    if not numbers:
        form.error("tickets", _("Choose at least one ticket."))
    if form.ok:
        try:
            result = support.bulk_update(session, staff_actor(), numbers, changes)
            db.commit()
            if result.done:
                flash(_("%(n)d tickets changed.", n=len(result.done)))
            for number, err in result.refused:
                flash(_("%(number)s unchanged: %(why)s", number=number, why=service_error_text(err)), "error")
            return redirect(url_for("console.tickets", **desk.clean_query(request.args)))
        except ReleaseServerError as e:
            db.rollback()
            form.service_error(e, {"tickets": "tickets", "action": "action"})
    form.ids.update({"tickets": "select-all", "action": "bulk-action", "status": "bulk-status"})
    return _queue(form, 400)


@bp.post("/tickets/saved-filters")
@staff_required(*SUPPORT)
def saved_filter_create() -> Any:
    form = Form(request.form)
    name = form.text("name", required=True, max_length=80)
    query = {k: request.form.get(k, "") for k in desk.QUERY_KEYS}
    if form.ok:
        try:
            desk.save_filter(db.session, current_staff(), name, query)
            db.commit()
            flash(_("Filter “%(name)s” saved.", name=name))
        except ReleaseServerError as e:
            db.rollback()
            flash(service_error_text(e), "error")
    else:
        flash(_("Give the filter a name."), "error")
    return redirect(url_for("console.tickets", **desk.clean_query(query)))


@bp.post("/tickets/saved-filters/<int:filter_id>/delete")
@staff_required(*SUPPORT)
def saved_filter_delete(filter_id: int) -> Any:
    row = desk.delete_filter(db.session, current_staff(), filter_id)
    db.commit()
    flash(_("Filter “%(name)s” removed.", name=row.name))
    return redirect(url_for("console.tickets"))


def _page(number: str, forms: dict[str, Form] | None = None, status: int = 200) -> Any:
    session = db.session
    actor = staff_actor()
    ticket = support.get_ticket(session, number, actor)
    events = support.timeline(session, ticket, actor)
    atts = support.attachments_of(session, ticket, actor)
    by_event: dict[int, list[Any]] = {}
    for a in atts:
        if a.event_id is not None:
            by_event.setdefault(a.event_id, []).append(a)
    event_atts = {}
    for e in events:
        if e.kind == "attachment" and (e.data or {}).get("attachment"):
            event_atts[e.id] = [a for a in atts if a.id == e.data["attachment"]]
    group_ids = support.linked_groups(session, ticket)
    stats = failures.stats(session, group_ids)
    groups = [{"group": failures.get_group(session, gid), "stats": stats.get(gid),
               "occurrences": queries.group_occurrences(session, gid),
               "installations": queries.group_installations(session, gid)} for gid in group_ids]
    users = {u.id: u for u in _assignable()}
    assignee = session.get(User, ticket.assignee_id) if ticket.assignee_id else None
    installation = fleet.get_installation(session, ticket.installation_id) if ticket.installation_id else None
    release = None
    if ticket.release_id is not None:
        from ...releases.models import Release

        release = session.get(Release, ticket.release_id)
    canned_text = ""
    if request.method == "GET" and request.args.get("canned", "").isdigit():
        try:
            canned_text = desk.get_canned_reply(session, int(request.args["canned"])).body
        except ReleaseServerError:
            canned_text = ""
    base = {"reply": Form(), "note": Form(), "request_info": Form(), "process": Form(),
            "compose": Form({"mode": "note" if ticket.internal else "reply", "body": canned_text}),
            "merge": Form(), "cc": Form(),
            "fix": Form({"component": release.component.name if release else ""}), "yank": Form(),
            "department": Form(), "review": Form(),
            "assign": Form({"assignee": assignee.username if assignee else ""}),
            "change": Form({"kind": ticket.kind, "priority": ticket.priority})}
    base.update(forms or {})
    return render_template("console/ticket.html", t=ticket, events=events, event_atts=event_atts,
                           attachments=atts, groups=groups, users=users, assignee=assignee,
                           installation=installation, forms=base, kinds=KINDS, priorities=PRIORITIES,
                           previewable=attachments.previewable, fixed_by=fixes.fixes_of_ticket(session, ticket),
                           release=release, canned=desk.canned_replies(session),
                           cc=desk.cc_of(session, ticket), contacts=desk.customer_contacts(session, ticket),
                           transitions=support.TRANSITIONS.get(ticket.status, frozenset())), status


@bp.get("/tickets/<number>")
@staff_required(*SUPPORT)
def ticket_detail(number: str) -> Any:
    return _page(number)


def _act(number: str, form_name: str, do: Any, done: str) -> Any:
    """Run one ticket action from a form; errors go back next to the form's fields.

    The reply, request-information and note actions are the composer's modes: their errors
    go back into the composer, with that mode chosen.
    """
    session = db.session
    actor = staff_actor()
    ticket = support.get_ticket(session, number, actor)
    data = MultiDict(request.form)
    if form_name in COMPOSE_MODES:
        data["mode"] = form_name
        form_name = "compose"
    form = Form(data)
    if form_name == "compose":
        form.ids.update({"body": "compose-body", "files": "compose-files"})
    try:
        if do(form, ticket, actor) is not False and form.ok:
            db.commit()
            flash(done)
            return redirect(url_for("console.ticket_detail", number=ticket.number))  # the message shows on top
    except ReleaseServerError as e:
        db.rollback()
        form.service_error(e, {"body": "body", "file": "files", "assignee": "assignee", "kind": "kind",
                               "priority": "priority", "status": "body", "number": "body", "email": "email",
                               "department": "department", "reason": "reason", "outcome": "outcome",
                               "version": "version", "component": "component", "fixes.0": "version",
                               "fixes_groups.0": "version"})
    db.rollback()
    return _page(number, {form_name: form}, 400)


def _customer_facing(form: Form, ticket: Any) -> None:
    """Internal tickets have notes and a status only: no reply, no request to a customer, no 'processed' mail."""
    if ticket.internal:
        form.general.append(_("An internal ticket has no customer to write to; add a note instead."))


@bp.post("/tickets/<number>/reply")
@staff_required(*SUPPORT)
def ticket_reply(number: str) -> Any:
    def do(form: Form, ticket: Any, actor: Any) -> Any:
        _customer_facing(form, ticket)
        body = form.text("body", required=True, max_length=100_000)
        files = attachments.uploaded_files()
        if not form.ok:
            return False
        attachments.check_files(ticket, files)
        support.staff_reply(db.session, ticket, actor, body)
        attachments.attach_files(ticket, actor, files)
        return True

    return _act(number, "reply", do, _("Reply sent."))


COMPOSE_MODES = ("reply", "request_info", "note")


@bp.post("/tickets/<number>/compose")
@staff_required(*SUPPORT)
def ticket_compose(number: str) -> Any:
    """The one composer: a reply to the customer, a request for information, or an internal note."""
    done = {"reply": _("Reply sent."), "request_info": _("The customer was asked for more information."),
            "note": _("Note added.")}
    mode = request.form.get("mode") if request.form.get("mode") in COMPOSE_MODES else "note"

    def do(form: Form, ticket: Any, actor: Any) -> Any:
        form.ids["mode"] = "compose-mode-note"
        form.choice("mode", COMPOSE_MODES)
        if mode != "note":
            _customer_facing(form, ticket)
        body = form.text("body", required=True, max_length=100_000)
        files = attachments.uploaded_files() if mode != "note" else []
        if not form.ok:
            return False
        if mode == "reply":
            attachments.check_files(ticket, files)
            support.staff_reply(db.session, ticket, actor, body)
            attachments.attach_files(ticket, actor, files)
        elif mode == "request_info":
            support.request_information(db.session, ticket, actor, body)
        else:
            support.add_note(db.session, ticket, actor, body)
        return True

    return _act(number, mode, do, done[mode])


@bp.post("/tickets/<number>/merge")
@staff_required(*SUPPORT)
def ticket_merge(number: str) -> Any:
    """Merge this ticket into another (the rules of ``support.services.merge``); the target's page follows."""
    session = db.session
    actor = staff_actor()
    ticket = support.get_ticket(session, number, actor)
    form = Form(request.form)
    form.ids["into"] = "merge-into"
    into = form.text("into", required=True, max_length=40)
    if form.ok:
        try:
            target = support.merge(session, ticket, support.get_ticket(session, into, actor), actor)
            db.commit()
            flash(_("%(source)s is merged into %(target)s.", source=ticket.number, target=target.number))
            return redirect(url_for("console.ticket_detail", number=target.number))
        except ReleaseServerError as e:
            db.rollback()
            form.service_error(e, {"into": "into", "number": "into"})
    return _page(number, {"merge": form}, 400)


@bp.post("/tickets/<number>/cc")
@staff_required(*SUPPORT)
def ticket_cc(number: str) -> Any:
    def do(form: Form, ticket: Any, actor: Any) -> Any:
        form.ids["email"] = "cc-email"
        if form.get("remove"):
            desk.remove_cc(db.session, ticket, actor, form.get("remove"))
            return True
        email = form.text("email", max_length=254) or form.text("contact", max_length=254)
        if not email:
            form.error("email", _("This field is required."))
            return False
        desk.add_cc(db.session, ticket, actor, email)
        return True

    return _act(number, "cc", do, _("Copies saved."))


@bp.post("/tickets/<number>/note")
@staff_required(*SUPPORT)
def ticket_note(number: str) -> Any:
    def do(form: Form, ticket: Any, actor: Any) -> Any:
        body = form.text("body", required=True, max_length=100_000)
        if not form.ok:
            return False
        support.add_note(db.session, ticket, actor, body)
        return True

    return _act(number, "note", do, _("Note added."))


@bp.post("/tickets/<number>/request-info")
@staff_required(*SUPPORT)
def ticket_request_info(number: str) -> Any:
    def do(form: Form, ticket: Any, actor: Any) -> Any:
        _customer_facing(form, ticket)
        body = form.text("body", required=True, max_length=100_000)
        if not form.ok:
            return False
        support.request_information(db.session, ticket, actor, body)
        return True

    return _act(number, "request_info", do, _("The customer was asked for more information."))


@bp.post("/tickets/<number>/process")
@staff_required(*SUPPORT)
def ticket_process(number: str) -> Any:
    def do(form: Form, ticket: Any, actor: Any) -> Any:
        _customer_facing(form, ticket)
        comment = form.text("body", max_length=100_000)
        if not form.ok:
            return False
        support.update_ticket(db.session, ticket, actor, {"status": "processed", "comment": comment})
        return True

    return _act(number, "process", do, _("Marked as processed."))


@bp.post("/tickets/<number>/status")
@staff_required(*SUPPORT)
def ticket_status(number: str) -> Any:
    def do(form: Form, ticket: Any, actor: Any) -> Any:
        status = form.choice("status", STATUSES)
        if not form.ok:
            return False
        support.update_ticket(db.session, ticket, actor, {"status": status})
        return True

    return _act(number, "change", do, _("Status changed."))


@bp.post("/tickets/<number>/assign")
@staff_required(*SUPPORT)
def ticket_assign(number: str) -> Any:
    def do(form: Form, ticket: Any, actor: Any) -> Any:
        username = form.text("assignee", max_length=80)
        if username == "__me__":
            username = current_staff().username
        support.update_ticket(db.session, ticket, actor, {"assignee": username or None})
        return True

    return _act(number, "assign", do, _("Assignment saved."))


@bp.post("/tickets/<number>/change")
@staff_required(*SUPPORT)
def ticket_change(number: str) -> Any:
    def do(form: Form, ticket: Any, actor: Any) -> Any:
        kind = form.choice("kind", KINDS)
        priority = form.choice("priority", PRIORITIES)
        if not form.ok:
            return False
        support.update_ticket(db.session, ticket, actor, {"kind": kind, "priority": priority})
        return True

    return _act(number, "change", do, _("Kind and priority saved."))


@bp.get("/tickets/<number>/attachments/<int:attachment_id>")
@staff_required(*SUPPORT)
def ticket_attachment(number: str, attachment_id: int) -> Any:
    actor = staff_actor()
    ticket = support.get_ticket(db.session, number, actor)
    att = support.get_attachment(db.session, ticket, attachment_id, actor)
    return attachments.serve(att, inline=request.args.get("inline") == "1")




@bp.post("/tickets/<number>/fix")
@staff_required(*SUPPORT)
def ticket_fix(number: str) -> Any:
    """Name the release that fixes (or implements) this request; for a halt ticket, the release whose
    installation by the affected closes it."""
    def do(form: Form, ticket: Any, actor: Any) -> Any:
        from ...releases import services as releases

        component = form.text("component", required=True, max_length=64)
        version = form.text("version", required=True, max_length=64)
        if not form.ok:
            return False
        release = releases.get_release(db.session, component, version)
        plan = fixes.resolve(db.session, release.component, [ticket.number])
        fixes.link(db.session, release, plan, actor.name)
        return True

    return _act(number, "fix", do, _("The fixing release is linked."))


@bp.post("/tickets/<number>/yank")
@staff_required(*SUPPORT)
def ticket_yank(number: str) -> Any:
    """From a halt ticket: yank the release that halted (installations that took it go back to the last good one)."""
    def do(form: Form, ticket: Any, actor: Any) -> Any:
        from ...accounts.services import audit
        from ...releases import services as releases
        from ...releases.models import Release

        reason = form.text("reason", required=True, max_length=2000)
        release = db.session.get(Release, ticket.release_id) if ticket.release_id else None
        if release is None:
            form.error("reason", _("This ticket names no release."))
        if not form.ok:
            return False
        if not release.yanked:
            releases.yank(db.session, release, reason)
            audit(db.session, actor.name, "release.yank", f"release:{release.component.name}/{release.version}",
                  {"reason": reason, "ticket": ticket.number})
            support.add_note(db.session, ticket, actor, reason, kind="yanked",
                             data={"component": release.component.name, "version": release.version})
        return True

    return _act(number, "yank", do, _("The release is yanked."))


@bp.post("/tickets/<number>/department")
@staff_required(*SUPPORT)
def ticket_department(number: str) -> Any:
    """Escalate to the development department, or hand back to support."""
    def do(form: Form, ticket: Any, actor: Any) -> Any:
        department = form.choice("department", DEPARTMENTS)
        note = form.text("note", max_length=2000)
        if not form.ok:
            return False
        support.set_department(db.session, ticket, actor, department or "", note)
        return True

    return _act(number, "department", do, _("Department saved."))


@bp.post("/tickets/<number>/review")
@staff_required(*SUPPORT)
def ticket_review(number: str) -> Any:
    """The review of a development request: accepted, or declined with a reason; the customer is told."""
    def do(form: Form, ticket: Any, actor: Any) -> Any:
        outcome = form.choice("outcome", REVIEW_OUTCOMES)
        reason = form.text("reason", max_length=100_000)
        if not form.ok:
            return False
        support.review_request(db.session, ticket, actor, outcome or "", reason)
        return True

    return _act(number, "review", do, _("Review saved; the customer is told."))
