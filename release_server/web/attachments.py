"""Attachments through the web: receive uploaded files for a ticket, serve them back safely.

Uploads arrive as :class:`~release_server.uploads.HashingSpoolFile` parts (hashed while
written), are checked by the support desk's rules, stored content-addressed, and attached
through ``support.services.add_attachment``. They are served as downloads, except the
raster image types a browser shows without running anything (PNG, JPEG, GIF, WebP),
which may be shown inline for previews; always with ``nosniff`` and a sandboxing CSP.
"""
from __future__ import annotations

from typing import Any

from flask import request
from werkzeug.datastructures import FileStorage

from ..db import db
from ..errors import ValidationError
from ..storage import get_storage
from ..support import services as support
from ..support.api import blob_download
from ..support.mailparse import safe_filename
from ..uploads import HashingSpoolFile

PREVIEW_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")


def uploaded_files(field: str = "files") -> list[FileStorage]:
    """The non-empty file parts of a form (an empty file input sends one empty part)."""
    out = []
    for f in request.files.getlist(field):
        stream = f.stream
        size = getattr(stream, "size", None)
        if not f.filename and not size:
            continue
        out.append(f)
    return out


def check_files(ticket: Any, files: list[FileStorage]) -> None:
    """Refuse (with the service's typed error) before anything is stored or written."""
    for i, f in enumerate(files):
        spool = f.stream
        if not isinstance(spool, HashingSpoolFile):  # pragma: no cover - only tiny in-memory parts
            raise ValidationError("attachments must be sent as file parts", field="files")
        name = safe_filename(f.filename or "", i, f.mimetype or "application/octet-stream")
        support.check_attachment_allowed(db.session, ticket, name, spool.size)


def attach_files(ticket: Any, actor: Any, files: list[FileStorage], *, public: bool = True) -> list[Any]:
    return support.attach_uploads(db.session, get_storage(), ticket, actor, files, public=public, field="files")


def previewable(att: Any) -> bool:
    return att.content_type.split(";")[0].strip().lower() in PREVIEW_TYPES


def serve(att: Any, inline: bool) -> Any:
    ctype = att.content_type.split(";")[0].strip().lower()
    if inline and ctype in PREVIEW_TYPES:
        resp = blob_download(att.blob_key, att.size, att.filename, ctype, att.sha256)
        resp.headers["Content-Disposition"] = resp.headers["Content-Disposition"].replace("attachment;", "inline;", 1)
    else:
        from ..support.api import ACTIVE_TYPES

        mimetype = "application/octet-stream" if ctype in ACTIVE_TYPES or "/" not in ctype else ctype
        resp = blob_download(att.blob_key, att.size, att.filename, mimetype, att.sha256)
    resp.headers["Cache-Control"] = "private, max-age=300"
    return resp
