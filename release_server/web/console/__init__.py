"""The staff console: ``/console``.

Role-aware: every view names the roles that may open it (the same split as the API:
publishers and admins change releases and rollouts, support and admins work tickets and
customers, the audit log is the admins'), and the navigation shows only what the
logged-in user may open.
"""
from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template
from flask_babel import lazy_gettext as _l

from ...errors import ReleaseServerError
from ..forms import service_error_text

bp = Blueprint("console", __name__, url_prefix="/console")

ALL = ("admin", "publisher", "support")
PUBLISHERS = ("admin", "publisher")
SUPPORT = ("admin", "support")
ADMIN = ("admin",)

#: (endpoint, label, roles allowed)
NAV: list[tuple[str, Any, tuple[str, ...]]] = [
    ("console.dashboard", _l("Dashboard"), ALL),
    ("console.releases", _l("Releases"), ALL),
    ("console.rollouts", _l("Rollouts"), ALL),
    ("console.installations", _l("Installations"), ALL),
    ("console.tickets", _l("Tickets"), SUPPORT),
    ("console.failure_groups", _l("Failure groups"), ALL),
    ("console.unreadable_mail", _l("Unreadable mail"), SUPPORT),
    ("console.customers", _l("Customers"), ALL),
    ("console.pins", _l("Pins"), ALL),
    ("console.audit_log", _l("Audit log"), ADMIN),
]


@bp.app_context_processor
def _nav() -> dict:
    return {"console_nav": NAV}


@bp.errorhandler(ReleaseServerError)
def _domain_error(e: ReleaseServerError) -> Any:
    from ...db import db

    db.rollback()
    return render_template("error.html", code=e.status, message=service_error_text(e)), e.status


@bp.errorhandler(403)
def _forbidden(_e: Any) -> Any:
    from flask_babel import gettext

    return render_template("error.html", code=403, message=gettext("Your role may not open this page.")), 403


@bp.errorhandler(404)
def _not_found(_e: Any) -> Any:
    from flask_babel import gettext

    return render_template("error.html", code=404, message=gettext("There is no such page.")), 404


from . import admin, auth, canned, dashboard, failures, fleet, mail, phone, pins, releases, rollouts, tickets  # noqa: E402,F401
