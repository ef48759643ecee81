"""Serving the TUF repository: ``/tuf/metadata/...`` and ``/tuf/targets/...``.

Thin: metadata comes from the per-process cache of :mod:`.serving`, target files from
:func:`release_server.downloads.blob_response` (sendfile, ranges, proxy hand-off); each
route sets the caching headers.
``timestamp.json`` is ``no-cache`` (and re-signed on the spot when close to expiry);
versioned metadata and hash-prefixed targets never change, so they are cached for a year
as immutable. Every response carries an ETag and answers conditional requests.
"""
from __future__ import annotations

import re

from flask import Blueprint, Response, request

from .. import logs, metrics
from ..db import db
from ..downloads import blob_response
from ..rollouts import catalog
from . import serving, services
from .serving import CachedMetadata
from .errors import MetadataNotFoundError

bp = Blueprint("tuf", __name__, url_prefix="/tuf")

# a claimed component's role is named for the component (letters, digits, '.', '_', '-')
METADATA_NAME = re.compile(r"(timestamp|[1-9][0-9]{0,9}\.[a-z0-9][a-z0-9._-]{0,63})\.json")
IMMUTABLE = "public, max-age=31536000, immutable"
logs.hot_path(f"{bp.name}.metadata")  # every installation asks for timestamp.json on every poll


def _json_response(meta: CachedMetadata, cache_control: str) -> Response:
    if request.if_none_match.contains(meta.etag):
        resp = Response(status=304)
    else:
        resp = Response(meta.data, mimetype="application/json")
    resp.headers["Cache-Control"] = cache_control
    resp.headers["ETag"] = f'"{meta.etag}"'
    metrics.count_bytes("tuf_metadata", len(meta.data) if resp.status_code == 200 else 0)
    return resp


@bp.get("/metadata/<name>")
def metadata(name: str) -> Response:
    if not METADATA_NAME.fullmatch(name):
        raise MetadataNotFoundError(name)
    cache = serving.get_cache()
    if name == "timestamp.json":
        state_version = catalog.get_cache().versions(lambda: db.session)[0]
        meta = cache.timestamp(lambda: db.session, state_version,
                               write_session=lambda: db.new_session(write=True))
        return _json_response(meta, "no-cache")
    return _json_response(cache.immutable(name), IMMUTABLE)


@bp.get("/targets/<path:name>")
def target(name: str) -> Response:
    loc = services.locate_target(db.session, name)
    resp = blob_response(loc.storage_key, size=None, etag=loc.sha256, max_age=31536000)
    resp.headers["Cache-Control"] = IMMUTABLE
    metrics.count_bytes("tuf_target", resp.content_length if resp.status_code in (200, 206) else 0)
    return resp
