"""Installations (list with filters; detail with update history, settings, pins and revoking) and customers
(users, enrollment tokens)."""
from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from ...accounts.services import audit
from ...db import db
from ...errors import ReleaseServerError
from ...fleet import services as fleet
from ...releases import services as releases
from ...rollouts import services as rollouts
from ...models_common import utcnow
from ...support import customers as customer_users
from .. import i18n, queries, security
from ..forms import Form, service_error_text
from ..security import current_staff, staff_required
from . import ALL, SUPPORT, bp

PER_PAGE = 50
HEALTH = ("up_to_date", "updating", "failing", "stale")


@bp.get("/installations")
@staff_required(*ALL)
def installations() -> Any:
    session = db.session
    args = request.args
    customer = args.get("customer") or None
    health = args.get("health") if args.get("health") in HEALTH else None
    component = (args.get("component") or "").strip() or None
    version = (args.get("version") or "").strip() or None
    try:
        page = max(1, int(args.get("page", "1")))
    except ValueError:
        page = 1
    error = None
    try:
        rows, total = fleet.list_installations(session, customer=customer, health=health, component=component,
                                               version=version, page=page, per_page=PER_PAGE)
    except ReleaseServerError as e:
        rows, total, error = [], 0, service_error_text(e)
    now = utcnow()
    return render_template("console/installations.html", rows=rows, total=total, page=page, per_page=PER_PAGE,
                           customers=fleet.list_customers(session), health_of=lambda i: fleet.health_of(i, now),
                           components=queries.component_names(session),
                           filters={"customer": customer or "", "health": health or "", "component": component or "",
                                    "version": version or ""}, health_values=HEALTH, error=error)


def installation_page(installation_id: str, *, settings_form: Form | None = None, pin_form: Form | None = None,
                      status: int = 200) -> Any:
    session = db.session
    inst = fleet.get_installation(session, installation_id)
    reports = fleet.list_reports(session, installation_id=inst.id, limit=100)
    return render_template(
        "console/installation.html", inst=inst, health=fleet.health_of(inst), reports=reports,
        tickets=queries.tickets_of_installation(session, inst.id), pins=rollouts.pins_for_installation(session, inst),
        channels=releases.list_channels(session), components=releases.list_components(session),
        settings_form=settings_form or Form({"channel": inst.channel, "tags": ", ".join(inst.tags or []),
                                             "maintenance_window": inst.maintenance_window or ""}),
        ipin_form=pin_form or Form({"scope": "installation", "value": inst.id, "exact": "prefix"})), status


@bp.get("/installations/<installation_id>")
@staff_required(*ALL)
def installation_detail(installation_id: str) -> Any:
    return installation_page(installation_id)


@bp.post("/installations/<installation_id>/settings")
@staff_required(*ALL)
def installation_settings(installation_id: str) -> Any:
    session = db.session
    inst = fleet.get_installation(session, installation_id)
    form = Form(request.form)
    channel = form.text("channel", required=True, max_length=64)
    tags = form.text("tags", max_length=2000)
    window = form.text("maintenance_window", max_length=64)
    if form.ok:
        try:
            changes = fleet.update_installation(session, inst, fleet.InstallationSettings(
                channel=channel, tags=fleet.parse_tags(tags), maintenance_window=window))
            if changes:
                audit(session, current_staff().username, "installation.update", f"installation:{inst.id}", changes)
            db.commit()
            flash(_("Settings of %(name)s saved.", name=inst.name) if changes else _("Nothing changed."))
            return redirect(url_for("console.installation_detail", installation_id=inst.id))
        except ReleaseServerError as e:
            db.rollback()
            form.service_error(e, {"channel": "channel", "channels": "channel", "tags": "tags",
                                   "maintenance_window": "maintenance_window"})
    return installation_page(installation_id, settings_form=form, status=400)


@bp.route("/installations/<installation_id>/revoke", methods=["GET", "POST"])
@staff_required(*SUPPORT)
def installation_revoke(installation_id: str) -> Any:
    session = db.session
    inst = fleet.get_installation(session, installation_id)
    if request.method == "POST" and inst.revoked_at is None:
        fleet.revoke_installation(session, inst.id)
        from ...rollouts.catalog import bump_auth

        bump_auth(session, inst.id)
        audit(session, current_staff().username, "installation.revoke", f"installation:{inst.id}")
        db.commit()
        flash(_("%(name)s is revoked: its token no longer works.", name=inst.name))
        return redirect(url_for("console.installation_detail", installation_id=inst.id))
    if request.method == "POST":
        return redirect(url_for("console.installation_detail", installation_id=inst.id))
    return render_template("console/installation_revoke.html", inst=inst)


# ---------------------------------------------------------------- customers

@bp.route("/customers", methods=["GET", "POST"])
@staff_required(*ALL)
def customers() -> Any:
    session = db.session
    form = Form(request.form if request.method == "POST" else {})
    status = 200
    if request.method == "POST":
        if current_staff().role not in SUPPORT:
            abort(403)
        name = form.text("name", required=True, max_length=200)
        email = form.text("contact_email", max_length=254)
        domains = [d.strip() for d in form.text("mail_domains", max_length=2000).replace(";", ",").split(",")
                   if d.strip()]
        if email:
            try:
                email = customer_users.check_email(email, "contact_email")
            except ReleaseServerError as e:
                form.service_error(e)
        if form.ok:
            try:
                c = fleet.create_customer(session, name, email or None, domains)
                audit(session, current_staff().username, "customer.create", f"customer:{c.id}", {"name": c.name})
                db.commit()
                flash(_("Customer %(name)s created.", name=c.name))
                return redirect(url_for("console.customer_detail", customer_id=c.id))
            except ReleaseServerError as e:
                db.rollback()
                form.service_error(e)
        status = 400
    from .rollouts import page_arg

    page = page_arg()
    rows, total = fleet.customers_page(session, page, PER_PAGE)
    counts = fleet.installation_counts(session, [c.id for c in rows])
    return render_template("console/customers.html", rows=rows, counts=counts, form=form, page=page,
                           per_page=PER_PAGE, total=total), status


def _customer_page(customer_id: int, *, user_form: Form | None = None, token_form: Form | None = None,
                   defaults_form: Form | None = None, new_secret: str | None = None, status: int = 200) -> Any:
    from .rollouts import page_arg

    session = db.session
    cust = fleet.get_customer(session, customer_id)
    now = utcnow()
    page = page_arg()
    installations, total = fleet.list_installations(session, customer=str(cust.id), page=page, per_page=PER_PAGE)
    return render_template(
        "console/customer.html", cust=cust, users=customer_users.list_customer_users(session, cust),
        tokens=fleet.list_enrollment_tokens(session, cust), installations=installations,
        installations_total=total, page=page, per_page=PER_PAGE,
        health_of=lambda i: fleet.health_of(i, now), user_form=user_form or Form(),
        token_form=token_form or Form({"max_uses": "", "expires_days": "30"}), new_secret=new_secret,
        defaults_form=defaults_form or Form({"locale": cust.locale or "", "timezone": cust.timezone or ""}),
        zones=sorted(i18n.time_zones()), now=now, fix_figures=_fix_figures(session, cust)), status


def _fix_figures(session: Any, cust: Any) -> list[tuple[Any, Any]]:
    """(group, time-to-fix span) of each failure group that affected the customer."""
    from ...support.fixes import customer_figures
    from ...support.models import FailureGroup

    return [(session.get(FailureGroup, gid), span) for gid, span in customer_figures(session, cust)]


@bp.get("/customers/<int:customer_id>")
@staff_required(*ALL)
def customer_detail(customer_id: int) -> Any:
    return _customer_page(customer_id, new_secret=security.take_secret())


@bp.post("/customers/<int:customer_id>/defaults")
@staff_required(*SUPPORT)
def customer_defaults(customer_id: int) -> Any:
    session = db.session
    cust = fleet.get_customer(session, customer_id)
    form = Form(request.form)
    lang = form.choice("locale", list(i18n.LANGUAGES), required=False)
    zone = form.choice("timezone", i18n.time_zones(), required=False)
    if form.ok:
        fleet.set_customer_defaults(session, cust, locale=lang, timezone=zone)
        audit(session, current_staff().username, "customer.update", f"customer:{cust.id}",
              {"locale": lang, "timezone": zone})
        db.commit()
        flash(_("The customer's language and time zone are saved."))
        return redirect(url_for("console.customer_detail", customer_id=cust.id))
    return _customer_page(customer_id, defaults_form=form, status=400)


@bp.post("/customers/<int:customer_id>/users")
@staff_required(*SUPPORT)
def customer_user_create(customer_id: int) -> Any:
    session = db.session
    cust = fleet.get_customer(session, customer_id)
    form = Form(request.form)
    email = form.text("email", required=True, max_length=254)
    name = form.text("name", max_length=200)
    password = form.text("password", required=True, max_length=1000, strip=False)
    if form.ok:
        try:
            user = customer_users.create_customer_user(session, cust, email, name, password)
            audit(session, current_staff().username, "customer_user.create", f"customer-user:{user.email}",
                  {"customer": cust.name})
            db.commit()
            flash(_("User %(email)s can now log in to the portal.", email=user.email))
            return redirect(url_for("console.customer_detail", customer_id=cust.id))
        except ReleaseServerError as e:
            db.rollback()
            form.service_error(e)
    return _customer_page(customer_id, user_form=form, status=400)


@bp.post("/customers/<int:customer_id>/enrollment-tokens")
@staff_required(*SUPPORT)
def enrollment_token_create(customer_id: int) -> Any:
    session = db.session
    cust = fleet.get_customer(session, customer_id)
    form = Form(request.form)
    max_uses = form.number("max_uses", minimum=1, maximum=1_000_000, integer=True, required=False)
    days = form.number("expires_days", minimum=1, maximum=3650, integer=True, required=False)
    if form.ok:
        try:
            token, secret = fleet.create_enrollment_token(
                session, cust, actor=current_staff().username, max_uses=int(max_uses) if max_uses else None,
                expires_at=utcnow() + timedelta(days=int(days)) if days else None)
            audit(session, current_staff().username, "enrollment.create", f"enrollment:{token.prefix}",
                  {"customer": cust.name})
            db.commit()
            # Redirect after post (a reload must not make another token): the secret rides to the next
            # page encrypted with the app's key, read once and dropped (see security.stash_secret).
            security.stash_secret(secret)
            flash(_("Enrollment token created."))
            return redirect(url_for("console.customer_detail", customer_id=cust.id))
        except ReleaseServerError as e:
            db.rollback()
            form.service_error(e, {"max_uses": "max_uses", "expires_at": "expires_days"})
    return _customer_page(customer_id, token_form=form, status=400)


@bp.post("/enrollment-tokens/<prefix>/revoke")
@staff_required(*SUPPORT)
def enrollment_token_revoke(prefix: str) -> Any:
    token = fleet.revoke_enrollment_token(db.session, prefix)
    audit(db.session, current_staff().username, "enrollment.revoke", f"enrollment:{prefix}")
    db.commit()
    flash(_("Enrollment token %(prefix)s revoked.", prefix=prefix))
    return redirect(url_for("console.customer_detail", customer_id=token.customer_id))
