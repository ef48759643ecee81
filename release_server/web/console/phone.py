"""A request received by phone, registered by support staff on the caller's behalf (source "phone")."""
from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from ...accounts.services import audit
from ...db import db
from ...errors import ReleaseServerError
from ...fleet import services as fleet
from ...messages import KIND_LABELS, PRIORITY_LABELS
from ...support import customers as contacts
from ...support import services as support
from ...support.models import KINDS, PRIORITIES
from ..forms import Form
from ..security import current_staff, staff_actor, staff_required
from . import SUPPORT, bp


@bp.route("/tickets/phone", methods=["GET", "POST"])
@staff_required(*SUPPORT)
def ticket_phone() -> Any:
    session = db.session
    form = Form(request.form if request.method == "POST" else {"kind": "incident", "priority": "normal"})
    status = 200
    if request.method == "POST":
        customer_id = form.text("customer", required=True, max_length=20)
        email = form.text("contact", required=True, max_length=254)
        name = form.text("contact_name", max_length=200)
        subject = form.text("subject", required=True, max_length=300)
        description = form.text("description", max_length=100_000)
        kind = form.choice("kind", KINDS)
        priority = form.choice("priority", PRIORITIES)
        if form.ok:
            try:
                customer = fleet.get_customer(session, int(customer_id) if customer_id.isdigit() else customer_id)
                ticket = support.create_ticket(session, staff_actor(), subject=subject, description=description,
                                               kind=kind or "incident", priority=priority or "normal",
                                               customer=customer,
                                               requester_email=contacts.check_email(email, "contact"),
                                               requester_name=name, source="phone")
                audit(session, current_staff().username, "ticket.create", f"ticket:{ticket.number}",
                      {"source": "phone", "customer": customer.name})
                db.commit()
                flash(_("Request %(number)s registered; the caller gets its number by mail.", number=ticket.number))
                return redirect(url_for("console.ticket_detail", number=ticket.number))
            except ReleaseServerError as e:
                db.rollback()
                form.service_error(e, {"customer": "customer", "contact": "contact", "subject": "subject",
                                       "kind": "kind", "priority": "priority"})
        status = 400
    customers = [(c.id, c.name) for c in fleet.list_customers(session)]
    return render_template("console/ticket_phone.html", form=form, customers=customers,
                           kinds=[(k, KIND_LABELS[k]) for k in KINDS],
                           priorities=[(p, PRIORITY_LABELS[p]) for p in PRIORITIES]), status
