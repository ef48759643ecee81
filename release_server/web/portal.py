"""The customer portal: ``/portal``.

A customer's users log in with their e-mail and password and see only their
organisation's requests (never internal ones, never internal notes) and installations.
They file a request of any of the four kinds with screenshots and logs, follow it by its
number, reply (a reply to a request waiting for them puts it back in progress, and one
to a processed request reopens it, as the support desk's rules say), and see which
updates their installations will be offered, with the changelogs.

Who may see what is decided by ``support.services`` (the actor's ``may_see``): a ticket
of another customer answers 404, exactly like one that does not exist.
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from ..db import db
from ..errors import ReleaseServerError
from ..fleet import services as fleet
from ..fleet.models import Installation
from ..models_common import utcnow
from ..support import customers as customer_users
from ..support import desk, services as support
from ..support.models import KINDS, STATUSES
from . import attachments, security
from .forms import Form, service_error_text
from .i18n import _safe_next
from .security import current_customer_user, customer_actor, customer_required

bp = Blueprint("portal", __name__, url_prefix="/portal")
PER_PAGE = 30


@bp.errorhandler(ReleaseServerError)
def _domain_error(e: ReleaseServerError) -> Any:
    db.rollback()
    return render_template("error.html", code=e.status, message=service_error_text(e), portal=True), e.status


@bp.errorhandler(404)
def _not_found(_e: Any) -> Any:
    return render_template("error.html", code=404, message=_("There is no such page."), portal=True), 404


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    form = Form(request.form if request.method == "POST" else {"next": request.args.get("next", "")})
    status = 200
    if request.method == "POST":
        email = form.text("email", required=True, max_length=254)
        password = form.text("password", required=True, max_length=1000, strip=False)
        if form.ok:
            user, status = security.attempt_login(form, "customer", email, password,
                                                  customer_users.authenticate_password, security.login_customer)
            if user is not None:
                return redirect(_safe_next(form["next"]) if form["next"] else url_for("portal.tickets"))
            if status == 401:
                form.error("password", _("Wrong e-mail address or password."))
    return render_template("portal/login.html", form=form), status


@bp.post("/logout")
def logout() -> Any:
    security.logout()
    return redirect(url_for("portal.login"))


@bp.get("/")
@customer_required
def tickets() -> Any:
    actor = customer_actor()
    args = request.args
    status = args.get("status") if args.get("status") in STATUSES else None
    q = (args.get("q") or "").strip()[:200]
    try:
        page = max(1, int(args.get("page", "1")))
    except ValueError:
        page = 1
    rows, total = support.list_tickets(db.session, actor, support.TicketFilter(
        status=[status] if status else [], q=q or None, page=page, per_page=PER_PAGE))
    return render_template("portal/tickets.html", rows=rows, total=total, page=page, per_page=PER_PAGE,
                           filters={"status": status or "", "q": q}, customer=current_customer_user().customer)


def _own_installations() -> list[Installation]:
    user = current_customer_user()
    rows, _total = fleet.list_installations(db.session, customer=str(user.customer_id), per_page=1000)
    return [r for r in rows if r.revoked_at is None]


@bp.route("/tickets/new", methods=["GET", "POST"])
@customer_required
def ticket_new() -> Any:
    session = db.session
    user = current_customer_user()
    form = Form(request.form if request.method == "POST" else {"kind": request.args.get("kind", "incident")})
    installations = _own_installations()
    status = 200
    if request.method == "POST":
        kind = form.choice("kind", KINDS)
        subject = form.text("subject", required=True, max_length=300)
        description = form.text("description", required=True, max_length=100_000)
        inst_id = form.text("installation", max_length=36) or None
        if inst_id and inst_id not in {i.id for i in installations}:
            form.error("installation", _("Choose one of your installations."))
        files = attachments.uploaded_files()
        if form.ok:
            actor = customer_actor()
            try:
                ticket = support.create_ticket(session, actor, subject=subject, description=description, kind=kind,
                                               customer=user.customer, requester_email=user.email,
                                               requester_name=user.name, source="portal", installation_id=inst_id)
                attachments.check_files(ticket, files)
                attachments.attach_files(ticket, actor, files)
                db.commit()
                flash(_("Your request is registered as %(number)s. Quote this number in every message about it.",
                        number=ticket.number))
                return redirect(url_for("portal.ticket_detail", number=ticket.number))
            except ReleaseServerError as e:
                db.rollback()
                form.service_error(e, {"file": "files", "installation_id": "installation", "kind": "kind",
                                       "subject": "subject"})
        status = 400
    return render_template("portal/ticket_new.html", form=form, kinds=KINDS, installations=installations), status


def _page(number: str, form: Form | None = None, status: int = 200) -> Any:
    from ..support.fixes import fixes_of_ticket

    session = db.session
    actor = customer_actor()
    ticket = support.get_ticket(session, number, actor)
    events = support.timeline(session, ticket, actor)
    atts = support.attachments_of(session, ticket, actor)
    event_atts = {e.id: [a for a in atts if a.id == (e.data or {}).get("attachment")] for e in events
                  if e.kind == "attachment"}
    staff_names = desk.public_names(session, {e.author for e in events if e.author_kind == "staff" and e.author})
    return render_template("portal/ticket.html", t=ticket, events=events, event_atts=event_atts, attachments=atts,
                           form=form or Form(), previewable=attachments.previewable,
                           fixed_by=fixes_of_ticket(session, ticket), staff_names=staff_names), status


@bp.get("/tickets/<number>")
@customer_required
def ticket_detail(number: str) -> Any:
    return _page(number)


@bp.post("/tickets/<number>/close")
@customer_required
def ticket_close(number: str) -> Any:
    session = db.session
    actor = customer_actor()
    ticket = support.get_ticket(session, number, actor)
    support.close_by_customer(session, ticket, actor)
    db.commit()
    flash(_("Request %(number)s is closed. Write to us if you need anything more.", number=ticket.number))
    return redirect(url_for("portal.ticket_detail", number=ticket.number))


@bp.post("/tickets/<number>/reply")
@customer_required
def ticket_reply(number: str) -> Any:
    session = db.session
    actor = customer_actor()
    ticket = support.get_ticket(session, number, actor)
    form = Form(request.form)
    body = form.text("body", required=True, max_length=100_000)
    files = attachments.uploaded_files()
    if form.ok:
        try:
            attachments.check_files(ticket, files)
            target, _event = support.customer_message(session, ticket, actor, body)
            attachments.attach_files(target, actor, files)
            db.commit()
            if target.id != ticket.id:
                flash(_("Your message opened a new request %(number)s, linked to %(old)s.", number=target.number,
                        old=ticket.number))
            else:
                flash(_("Your message was added to %(number)s.", number=target.number))
            return redirect(url_for("portal.ticket_detail", number=target.number))  # the message shows on top
        except ReleaseServerError as e:
            db.rollback()
            form.service_error(e, {"file": "files", "body": "body"})
    return _page(number, form, 400)


@bp.get("/tickets/<number>/attachments/<int:attachment_id>")
@customer_required
def ticket_attachment(number: str, attachment_id: int) -> Any:
    actor = customer_actor()
    ticket = support.get_ticket(db.session, number, actor)
    att = support.get_attachment(db.session, ticket, attachment_id, actor)
    return attachments.serve(att, inline=request.args.get("inline") == "1")


def pending_updates(inst: Installation) -> list[Any]:
    """What the check endpoint would offer this installation now (same catalog, policy and pins)."""
    from ..rollouts.catalog import offers_for

    offers = offers_for(lambda: db.session, installation_id=inst.id, customer_id=inst.customer_id,
                        channel=inst.channel, tags=frozenset(inst.tags or []), installed=dict(inst.versions))
    return [SimpleNamespace(component=o.release.component, version=str(o.release.version),
                            from_version=str(o.from_version) if o.from_version else None,
                            critical=o.release.critical, downgrade=o.downgrade, changelog=o.changelog)
            for o in offers]


@bp.get("/installations")
@customer_required
def installations() -> Any:
    now = utcnow()
    rows = _own_installations()
    return render_template("portal/installations.html", rows=rows, pending={i.id: pending_updates(i) for i in rows},
                           health_of=lambda i: fleet.health_of(i, now))


