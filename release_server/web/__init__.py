"""The web faces of the server: the staff console (``/console``) and the customer portal (``/portal``).

Server-rendered Jinja templates, no front-end build step and no script needed to use
them. What this package holds:

* :mod:`.security` - cookie-session login for staff and customer users, CSRF tokens on
  every form, login rate limiting, security headers;
* :mod:`.i18n` - Flask-Babel: English and Russian; the language is the one the person
  chose (``/language``, kept in a long-lived cookie and the session), else the browser's
  ``Accept-Language``, else English;
* :mod:`.charts` - small server-side SVG charts (no network, no script);
* :mod:`.console` - staff pages (dashboard, releases, rollouts, installations, tickets,
  customers, audit log), role-aware;
* :mod:`.portal` - a customer's users: their organisation's tickets and installations.

Views stay thin: parse the form (:mod:`.forms`), call one service, map the service's
typed errors (``ReleaseServerError.field``) to messages next to the fields, commit once.
"""
from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, Flask, redirect, render_template, url_for
from werkzeug.wrappers import Response


def init_app(app: Flask) -> None:
    """Register the console, the portal, translations, CSRF and the security headers."""
    from . import filters, i18n, security
    from .console import bp as console_bp
    from .portal import bp as portal_bp

    # Flask's defaults are replaced unless the instance configured its own values.
    if app.config.get("SESSION_COOKIE_SAMESITE") is None:
        app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    if app.config.get("SESSION_COOKIE_NAME") == "session":
        app.config["SESSION_COOKIE_NAME"] = "rs_session"
    if str(app.config.get("PUBLIC_URL", "")).startswith("https://"):
        app.config["SESSION_COOKIE_SECURE"] = True
    if app.config.get("PERMANENT_SESSION_LIFETIME") == timedelta(days=31):
        app.config["PERMANENT_SESSION_LIFETIME"] = timedelta(hours=12)
    app.config.setdefault("LOGIN_MAX_FAILURES", 5)
    app.config.setdefault("LOGIN_WINDOW_SECONDS", 15 * 60)
    app.config.setdefault("LOGIN_MAX_FAILURES_PER_ADDRESS", 30)
    app.config.setdefault("LOGIN_DELAY_SECONDS", 30.0)
    app.config.setdefault("LOGIN_MAX_DELAY_SECONDS", 900.0)

    i18n.init_app(app)
    security.init_app(app)
    filters.init_app(app)
    # templates and static files of both faces (no front-end build step: plain CSS, no script needed)
    app.register_blueprint(Blueprint("web", __name__, template_folder="templates", static_folder="static",
                                     static_url_path="/static/web"))
    app.register_blueprint(console_bp)
    app.register_blueprint(portal_bp)

    @app.get("/")
    def index() -> Response | str:
        user, customer = security.current_staff(), security.current_customer_user()
        if user is not None:
            return redirect(url_for("console.dashboard"))
        if customer is not None:
            return redirect(url_for("portal.tickets"))
        return render_template("index.html")

    @app.post("/language")
    def set_language() -> Response:
        return i18n.set_language_view()
