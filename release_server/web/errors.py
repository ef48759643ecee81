"""Error pages of the console and the portal: styled, translated, with the navigation of the face they belong to.

The API answers errors in JSON (``release_server.api``); every other address that fails
(an unknown page, a refused one, a wrong method, a server error) gets one of these
pages, in the reader's language, with the console's or the portal's navigation
depending on the address and on who is logged in.
"""
from __future__ import annotations

from typing import Any

from flask import Flask, render_template, request
from flask_babel import gettext as _


def page(status: int, message: str | None = None) -> tuple[str, int]:
    """The error page for ``status`` (404, 403, 405, 400, 500 ...)."""
    from .security import current_customer_user, current_staff

    path = request.path or "/"
    portal = path.startswith("/portal") or (not path.startswith("/console") and current_staff() is None
                                            and current_customer_user() is not None)
    if message is None:
        message = {404: _("There is no such page."), 403: _("You may not open this page."),
                   405: _("This address does not take that kind of request."),
                   400: _("The request could not be understood."),
                   413: _("The upload is larger than allowed.")}.get(
            status, _("Something went wrong on our side. Please try again in a moment."))
    return render_template("error.html", code=status, message=message, portal=portal), status


def init_app(app: Flask) -> None:
    def html_error_page(status: int) -> Any:
        if not app.secret_key:  # no sessions (a bare test app): the framework's plain page
            return None
        try:
            return page(status)
        except RuntimeError:  # sessions unusable for this request: the framework's plain page
            return None

    app.extensions["html_error_page"] = html_error_page
