"""Staff login and logout."""
from __future__ import annotations

from typing import Any

from flask import redirect, render_template, request, url_for
from flask_babel import gettext as _

from ...accounts import services as accounts
from .. import security
from ..forms import Form
from ..i18n import _safe_next
from . import bp


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    form = Form(request.form if request.method == "POST" else {"next": request.args.get("next", "")})
    status = 200
    if request.method == "POST":
        username = form.text("username", required=True, max_length=80)
        password = form.text("password", required=True, max_length=1000, strip=False)
        if form.ok:
            user, status = security.attempt_login(form, "staff", username, password, accounts.authenticate_user,
                                                  security.login_staff)
            if user is not None:
                return redirect(_safe_next(form["next"]) if form["next"] else url_for("console.dashboard"))
            if status == 401:
                form.error("password", _("Wrong user name or password."))
    return render_template("console/login.html", form=form), status


@bp.post("/logout")
def logout() -> Any:
    security.logout()
    return redirect(url_for("console.login"))
