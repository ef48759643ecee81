"""Canned replies: the shared prepared answers the ticket composer inserts (list, add, remove)."""
from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from ...accounts.services import audit
from ...db import db
from ...errors import ReleaseServerError
from ...support import desk
from ..forms import Form
from ..security import current_staff, staff_required
from . import SUPPORT, bp


@bp.route("/canned-replies", methods=["GET", "POST"])
@staff_required(*SUPPORT)
def canned_replies() -> Any:
    session = db.session
    form = Form(request.form if request.method == "POST" else {})
    form.ids.update({"title": "canned-title", "body": "canned-body"})
    status = 200
    if request.method == "POST":
        title = form.text("title", required=True, max_length=120)
        body = form.text("body", required=True, max_length=20_000)
        if form.ok:
            try:
                row = desk.add_canned_reply(session, title, body, current_staff().username)
                audit(session, current_staff().username, "canned_reply.add", f"canned-reply:{row.id}",
                      {"title": row.title})
                db.commit()
                flash(_("Canned reply “%(title)s” saved.", title=row.title))
                return redirect(url_for("console.canned_replies"))
            except ReleaseServerError as e:
                db.rollback()
                form.service_error(e, {"title": "title", "body": "body"})
        status = 400
    return render_template("console/canned_replies.html", rows=desk.canned_replies(session), form=form), status


@bp.post("/canned-replies/<int:reply_id>/delete")
@staff_required(*SUPPORT)
def canned_reply_delete(reply_id: int) -> Any:
    row = desk.delete_canned_reply(db.session, reply_id)
    audit(db.session, current_staff().username, "canned_reply.remove", f"canned-reply:{reply_id}",
          {"title": row.title})
    db.commit()
    flash(_("Canned reply “%(title)s” removed.", title=row.title))
    return redirect(url_for("console.canned_replies"))
