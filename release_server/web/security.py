"""Who is looking at a page: cookie-session login, CSRF, login rate limiting, headers.

Sessions are Flask's signed cookies (never opened for ``/api/`` or ``/tuf/``, see
``web_session``), HttpOnly and SameSite=Lax, Secure behind an https PUBLIC_URL. A session
holds either a staff user or a customer user, and a fingerprint of that user's password
hash: changing the password or deactivating the user ends every session.

Every POST to the console, the portal and ``/language`` must carry the session's CSRF
token (form field ``csrf_token`` or header ``X-CSRF-Token``); without it: 400.

Sessions end server-side: each user row has a session generation, copied into the
session at login and compared on every request (the row is loaded anyway). Logout, a
password change and disabling the user raise it, so every session of that user ends on
every node at once, not when its cookie expires.

Login throttling (``accounts.throttle``): after ``LOGIN_MAX_FAILURES`` failures of one
account from one address, that address waits ``LOGIN_DELAY_SECONDS``, doubling with each
further failure up to ``LOGIN_MAX_DELAY_SECONDS``, even with the right password; the same
account from another address is not affected. One address is throttled likewise across
all accounts after ``LOGIN_MAX_FAILURES_PER_ADDRESS`` failures. Failures are also audited
(``auth.login_failed``).
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Flask, abort, g, redirect, request, session, url_for
from ..db import db

CSRF_KEY = "_csrf"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; object-src 'none'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


def _fingerprint(password_hash: str | None) -> str:
    return hashlib.sha256((password_hash or "").encode()).hexdigest()[:16]


# ---------------------------------------------------------------- CSRF

def csrf_token() -> str:
    token = session.get(CSRF_KEY)
    if not token:
        token = secrets.token_urlsafe(32)
        session[CSRF_KEY] = token
    return token


def _csrf_ok() -> bool:
    expected = session.get(CSRF_KEY)
    sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token") or ""
    return bool(expected) and hmac.compare_digest(str(expected), str(sent))


def _protected_endpoint() -> bool:
    ep = request.endpoint or ""
    return ep.startswith("console.") or ep.startswith("portal.") or ep == "set_language"


# ---------------------------------------------------------------- current users

def current_staff() -> Any:
    """The logged-in staff :class:`~release_server.accounts.models.User`, or None."""
    if "staff_user" in g:
        return g.staff_user
    user = None
    uid = session.get("staff_id")
    if uid is not None:
        from ..accounts.models import User

        row = db.session.get(User, uid)
        if (row is not None and row.active and session.get("staff_fp") == _fingerprint(row.password_hash)
                and session.get("staff_gen") == row.session_generation):
            user = row
    g.staff_user = user
    return user


def current_customer_user() -> Any:
    """The logged-in :class:`~release_server.support.models.CustomerUser`, or None."""
    if "customer_user" in g:
        return g.customer_user
    user = None
    cid = session.get("customer_user_id")
    if cid is not None:
        from ..support.models import CustomerUser

        row = db.session.get(CustomerUser, cid)
        if (row is not None and row.active and session.get("customer_fp") == _fingerprint(row.password_hash)
                and session.get("customer_gen") == row.session_generation):
            user = row
    g.customer_user = user
    return user


def staff_actor() -> Any:
    """The support desk's actor for the logged-in staff user (audited under the username)."""
    from ..accounts.auth import Principal
    from ..support.services import actor_of

    user = current_staff()
    return actor_of(Principal("session", user.role, user.username, user.id))


def customer_actor() -> Any:
    from ..support.customers import CustomerPrincipal
    from ..support.services import actor_of

    u = current_customer_user()
    return actor_of(CustomerPrincipal(u.id, u.customer_id, u.email, u.name))


def _begin_session(**values: Any) -> None:
    lang = session.get("lang")
    session.clear()  # no session fixation: a fresh session (and CSRF token) on every login
    if lang:
        session["lang"] = lang
    session[CSRF_KEY] = secrets.token_urlsafe(32)
    session.permanent = True
    session.update(values)


def login_staff(user: Any) -> None:
    _begin_session(staff_id=user.id, staff_fp=_fingerprint(user.password_hash), staff_gen=user.session_generation)


def login_customer(user: Any) -> None:
    _begin_session(customer_user_id=user.id, customer_fp=_fingerprint(user.password_hash),
                   customer_gen=user.session_generation)


def logout() -> None:
    """End this session and every other session of the same user, on every node."""
    from ..accounts.services import end_sessions

    for user in (current_staff(), current_customer_user()):
        if user is not None:
            end_sessions(user)
    db.commit()
    lang = session.get("lang")
    session.clear()
    if lang:
        session["lang"] = lang


def staff_required(*roles: str) -> Callable:
    """Console views: a logged-in staff user, with one of ``roles`` when given (else any staff role)."""

    def deco(fn: Callable) -> Callable:
        @wraps(fn)
        def view(*args: Any, **kwargs: Any) -> Any:
            user = current_staff()
            if user is None:
                return redirect(url_for("console.login", next=request.full_path.rstrip("?")))
            if roles and user.role not in roles:
                abort(403)
            return fn(*args, **kwargs)

        view.roles = roles  # type: ignore[attr-defined]
        return view

    return deco


def customer_required(fn: Callable) -> Callable:
    @wraps(fn)
    def view(*args: Any, **kwargs: Any) -> Any:
        if current_customer_user() is None:
            return redirect(url_for("portal.login", next=request.full_path.rstrip("?")))
        return fn(*args, **kwargs)

    return view


# ---------------------------------------------------------------- login throttling

def throttle_policy() -> Any:
    from flask import current_app

    from ..accounts.throttle import ThrottlePolicy

    cfg = current_app.config
    cap = float(cfg["LOGIN_MAX_DELAY_SECONDS"])
    return ThrottlePolicy(free=int(cfg["LOGIN_MAX_FAILURES"]), free_per_address=int(cfg["LOGIN_MAX_FAILURES_PER_ADDRESS"]),
                          base=float(cfg["LOGIN_DELAY_SECONDS"]), cap=cap,
                          window=max(float(cfg["LOGIN_WINDOW_SECONDS"]), cap))


def login_target(kind: str, name: str) -> str:
    return f"{kind}-login:{(name or '').strip().lower()[:200]}"


def login_blocked(kind: str, name: str) -> int:
    """Seconds until a login for this account may be tried again from this address (0: it may now)."""
    from ..accounts import throttle

    return throttle.wait_seconds(db.session, kind, name, request.remote_addr)


def record_login(kind: str, name: str, ok: bool) -> None:
    """Audit a login attempt and count or clear its throttle; the caller commits."""
    from ..accounts import throttle
    from ..accounts.services import audit

    if ok:
        throttle.record_success(db.session, kind, name, request.remote_addr)
        audit(db.session, (name or "")[:120], "auth.login", login_target(kind, name),
              {"address": request.remote_addr or ""})
    else:
        throttle.record_failure(db.session, kind, name, request.remote_addr, throttle_policy())
        audit(db.session, "anonymous", "auth.login_failed", login_target(kind, name),
              {"address": request.remote_addr or ""})


def attempt_login(form: Any, kind: str, name: str, password: str,
                  authenticate: Callable[[Any, str, str], Any], begin: Callable[[Any], None]) -> tuple[Any, int]:
    """One login attempt of a staff or customer account: throttle, check, audit, begin the session.

    Returns the account (None when refused) and the HTTP status for the page: 429 when
    throttled (the reason is added to the form), 401 for wrong credentials, 200.
    """
    from flask_babel import gettext as _

    wait = login_blocked(kind, name)
    if wait:
        if wait < 60:
            form.general.append(_("Too many failed attempts. Try again in %(seconds)d s.", seconds=wait))
        else:
            form.general.append(_("Too many failed attempts. Try again in %(minutes)d minutes.",
                                  minutes=(wait + 59) // 60))
        return None, 429
    user = authenticate(db.session, name, password)
    record_login(kind, name, user is not None)
    db.commit()
    if user is None:
        return None, 401
    begin(user)
    return user, 200


# ---------------------------------------------------------------- wiring

def init_app(app: Flask) -> None:
    @app.before_request
    def _check_csrf() -> None:
        if request.method in SAFE_METHODS or not _protected_endpoint():
            return
        if not _csrf_ok():
            from flask import render_template
            from flask_babel import gettext

            abort(app.response_class(render_template(
                "error.html", code=400,
                message=gettext("The form has expired or did not come from this site. Go back, reload the "
                                "page and try again.")), status=400))

    @app.after_request
    def _headers(resp: Any) -> Any:
        path = request.path
        if path.startswith("/api/") or path.startswith("/tuf/"):
            return resp
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("X-Frame-Options", "DENY")
        resp.headers.setdefault("Referrer-Policy", "same-origin")
        if resp.mimetype == "text/html":
            resp.headers.setdefault("Content-Security-Policy", CSP)
            if _protected_endpoint() or request.endpoint in ("index",):
                resp.headers.setdefault("Cache-Control", "no-store")
            resp.vary.add("Cookie")
        return resp

    app.jinja_env.globals["csrf_token"] = csrf_token
    app.jinja_env.globals["current_staff"] = current_staff
    app.jinja_env.globals["current_customer_user"] = current_customer_user
