"""Serving the TUF repository: ``/tuf/metadata/...`` and ``/tuf/targets/...``.

Thin: each route asks :mod:`.services` for the bytes and sets the caching headers.
``timestamp.json`` is ``no-cache`` (and re-signed on the spot when close to expiry);
versioned metadata and hash-prefixed targets never change, so they are cached for a year
as immutable. Every response carries an ETag and answers conditional requests.
"""
from __future__ import annotations

import hashlib
import re

from flask import Blueprint, Response, request, send_file

from .. import metrics
from ..db import db
from ..storage import get_storage
from . import services
from .errors import MetadataNotFoundError

bp = Blueprint("tuf", __name__, url_prefix="/tuf")

METADATA_NAME = re.compile(r"^(timestamp|[1-9][0-9]{0,9}\.(root|snapshot|targets|bins-[0-9a-f]{1,4}))\.json$")
IMMUTABLE = "public, max-age=31536000, immutable"


def _json_response(data: bytes, cache_control: str) -> Response:
    resp = Response(data, mimetype="application/json")
    resp.headers["Cache-Control"] = cache_control
    resp.set_etag(hashlib.sha256(data).hexdigest())
    resp = resp.make_conditional(request)
    metrics.count_bytes("tuf_metadata", resp.content_length if resp.status_code == 200 else 0)
    return resp


@bp.get("/metadata/<name>")
def metadata(name: str) -> Response:
    if not METADATA_NAME.match(name):
        raise MetadataNotFoundError(name)
    if name == "timestamp.json":
        data = services.timestamp_bytes(db.session, write_session=lambda: db.new_session(write=True))
        return _json_response(data, "no-cache")
    return _json_response(services.metadata_bytes(name), IMMUTABLE)


@bp.get("/targets/<path:name>")
def target(name: str) -> Response:
    loc = services.locate_target(db.session, name)
    storage = get_storage()
    local = storage.local_path(loc.storage_key)
    if local is not None:
        resp = send_file(local, mimetype="application/octet-stream", conditional=True, etag=loc.sha256,
                         max_age=31536000)
    else:
        size = storage.size(loc.storage_key)
        resp = Response(storage.iter_chunks(loc.storage_key), mimetype="application/octet-stream",
                        direct_passthrough=True)
        resp.headers["Content-Length"] = str(size)
        resp.set_etag(loc.sha256)
        resp = resp.make_conditional(request)
    resp.headers["Cache-Control"] = IMMUTABLE
    metrics.count_bytes("tuf_target", resp.content_length if resp.status_code in (200, 206) else 0)
    return resp
