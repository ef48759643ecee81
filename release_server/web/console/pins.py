"""Pins: the list of every pin, a form to add one (for an installation, a tag or a customer) and removal.

A pin keeps a component of some installations on an exact version or a version prefix;
the rules (which pin wins, what a prefix matches) live in :mod:`release_server.rollouts`.
Adding and removing are audited like the API does. The installation page posts here too
(with ``next`` pointing back to it).
"""
from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from ...accounts.services import audit
from ...db import db
from ...errors import ReleaseServerError, ValidationError
from ...fleet import services as fleet
from ...releases import services as releases
from ...rollouts import services as rollouts
from ..forms import Form
from ..security import current_staff, staff_required
from . import ALL, bp

SCOPES = ("installation", "tag", "customer")
PER_PAGE = 100


def _next_url(default: str) -> str:
    nxt = request.form.get("next") or request.args.get("next") or ""
    # only our own console pages: a path, never another host
    return nxt if nxt.startswith("/console/") and "//" not in nxt and "\\" not in nxt else default


def _page(form: Form | None = None, status: int = 200) -> Any:
    from .rollouts import page_arg

    session = db.session
    page = page_arg()
    pins, total = rollouts.pins_page(session, page, PER_PAGE)
    customers = {str(c.id): c for c in fleet.list_customers(session)}
    installations = fleet.installations_by_id(session, (p.scope_value for p in pins if p.scope == "installation"))
    return render_template("console/pins.html", pins=pins, total=total, page=page, per_page=PER_PAGE,
                           customers=customers, installations=installations,
                           form=form or Form({"scope": request.args.get("scope", "tag"),
                                              "value": request.args.get("value", ""), "exact": "prefix"}),
                           components=releases.list_components(session), scopes=SCOPES), status


@bp.get("/pins")
@staff_required(*ALL)
def pins() -> Any:
    return _page()


def add_pin_from(form: Form) -> Any:
    """Read a pin form and add the pin; returns the pin, or None with the errors in ``form``."""
    session = db.session
    scope = form.choice("scope", SCOPES)
    value = form.text("value", required=True, max_length=200)
    component = form.choice("component", [c.name for c in releases.list_components(session)])
    exact = form.choice("exact", ("exact", "prefix")) == "exact"
    note = form.text("note", max_length=2000)
    if not form.ok:
        return None
    try:
        pinned = rollouts.parse_pin_value(form.get("pin"), exact)
        if scope == "tag":
            tags = fleet.parse_tags(value)
            if len(tags) != 1:
                raise ValidationError("give one tag", field="value")
            value = tags[0]
        pin = rollouts.add_pin(session, scope=scope, scope_value=value, component=component, value=pinned,
                               exact=exact, actor=current_staff().username, note=note)
        audit(session, current_staff().username, "pin.add", f"pin:{pin.id}",
              {"scope": scope, "value": value, "component": component, "pin": pin.value})
        db.commit()
        return pin
    except ReleaseServerError as e:
        db.rollback()
        form.service_error(e, {"pin": "pin", "value": "value", "tags": "value", "customer": "value",
                               "scope": "scope"})
        return None


@bp.post("/pins")
@staff_required(*ALL)
def pin_create() -> Any:
    form = Form(request.form)
    pin = add_pin_from(form)
    if pin is not None:
        flash(_("Pin saved: %(component)s stays on %(pin)s.", component=pin.component,
                pin=pin.value if pin.exact else pin.value + ".*"))
        return redirect(_next_url(url_for("console.pins")))
    nxt = _next_url("")
    if nxt.startswith("/console/installations/"):
        from .fleet import installation_page

        return installation_page(nxt.rsplit("/", 1)[1], pin_form=form, status=400)
    return _page(form, 400)


@bp.post("/pins/<int:pin_id>/remove")
@staff_required(*ALL)
def pin_remove(pin_id: int) -> Any:
    pin = rollouts.remove_pin(db.session, pin_id)
    audit(db.session, current_staff().username, "pin.remove", f"pin:{pin_id}")
    db.commit()
    flash(_("Pin removed: %(component)s follows its rollouts again.", component=pin.component))
    return redirect(_next_url(url_for("console.pins")))
