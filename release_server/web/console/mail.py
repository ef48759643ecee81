"""Mail that could not be read: the list for staff (support and admins), each message's raw bytes
to download. Nothing here changes anything; the rows come from ``support.mailin``."""
from __future__ import annotations

from typing import Any

from flask import render_template, request
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from ...db import db
from ...support import mailin
from ...support.api import blob_download
from ..security import staff_required
from . import SUPPORT, bp

PER_PAGE = 50

#: The parser's reasons, as staff read them.
REASONS = {
    "empty message": _l("The message is empty."),
    "message does not start with a header field": _l("The message does not start with a header field."),
    "message has no header fields": _l("The message has no header fields."),
}


def reason_text(reason: str) -> str:
    known = REASONS.get(reason)
    if known is not None:
        return str(known)
    return _("The message cannot be parsed: %(reason)s", reason=reason) if reason else _("Unknown reason.")


@bp.get("/mail/unreadable")
@staff_required(*SUPPORT)
def unreadable_mail() -> Any:
    try:
        page = min(max(1, int(request.args.get("page", "1"))), 100_000)
    except ValueError:
        page = 1
    rows, total = mailin.list_unparseable(db.session, limit=PER_PAGE, offset=(page - 1) * PER_PAGE)
    return render_template("console/unreadable_mail.html", rows=rows, total=total, page=page,
                           more=page * PER_PAGE < total, reason_text=reason_text)


@bp.get("/mail/unreadable/<int:mail_id>/raw")
@staff_required(*SUPPORT)
def unreadable_mail_raw(mail_id: int) -> Any:
    mail = mailin.get_unparseable(db.session, mail_id)
    if not mail.blob_key:
        from ...errors import NotFoundError

        raise NotFoundError(_("The raw message is no longer stored."))
    return blob_download(mail.blob_key, mail.size, f"unreadable-mail-{mail.id}.eml", "application/octet-stream",
                         f"mail-{mail.id}")
