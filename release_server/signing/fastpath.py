"""``timestamp.json`` answered in front of Flask while the per-process cache is fresh.

Every installation fetches ``timestamp.json`` on every poll. When the cached bytes may
be served as they are (the catalog's state version was read within
``CATALOG_RECHECK_SECONDS`` and the cached timestamp agrees with it, was looked at
within that period and is not due for its refresh: exactly the conditions under which
:meth:`.serving.MetadataCache.timestamp` would answer from memory), this WSGI layer
answers a ``GET`` itself: the same bytes, ``ETag``, ``Cache-Control: no-cache``,
``304`` for a matching ``If-None-Match``, an ``X-Request-ID``, and the request and byte
counters. Anything else (another path or method, a cold or stale cache, a request log at
debug level, which the Flask route writes) goes to the app, which re-validates the cache.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask
from werkzeug.http import parse_etags

PATH = "/tuf/metadata/timestamp.json"
ROUTE = "/tuf/metadata/<name>"


class TimestampFastPath:
    """WSGI middleware around ``app.wsgi_app`` (installed by :func:`release_server.signing.init_app`)."""

    def __init__(self, app: Flask, wsgi_app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.wsgi_app = wsgi_app
        self.served = 0  # answers given here (for tests and curiosity)
        # the level the Flask route would log a success at (release_server.logs): that route writes it
        self.log_level = logging.INFO if app.config.get("LOG_HOT_PATH", False) else logging.DEBUG

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != PATH or environ.get("REQUEST_METHOD") != "GET":
            return self.wsgi_app(environ, start_response)
        from .. import metrics
        from ..logs import REQUEST_ID_HEADER, SANE_REQUEST_ID, new_request_id, request_log

        started = time.perf_counter()
        versions = self.app.extensions["catalog_cache"].fresh_versions()
        meta = None if versions is None else self.app.extensions["tuf_metadata_cache"].fresh_timestamp(versions[0])
        if meta is None or request_log.isEnabledFor(self.log_level):
            return self.wsgi_app(environ, start_response)
        given = environ.get("HTTP_X_REQUEST_ID", "")
        rid = given if given and SANE_REQUEST_ID.fullmatch(given) else new_request_id()
        etag = f'"{meta.etag}"'
        inm = environ.get("HTTP_IF_NONE_MATCH")
        if inm and parse_etags(inm).contains(meta.etag):
            status, code, body = "304 NOT MODIFIED", 304, b""
            headers = [("Cache-Control", "no-cache"), ("ETag", etag), (REQUEST_ID_HEADER, rid)]
        else:
            status, code, body = "200 OK", 200, meta.data
            headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                       ("Cache-Control", "no-cache"), ("ETag", etag), (REQUEST_ID_HEADER, rid)]
        start_response(status, headers)
        metrics.count_bytes("tuf_metadata", len(body))
        metrics.count_request("GET", ROUTE, code, time.perf_counter() - started)
        self.served += 1
        return [body]


def init_app(app: Flask) -> None:
    app.wsgi_app = TimestampFastPath(app, app.wsgi_app)  # type: ignore[method-assign]
    app.extensions["tuf_timestamp_fast_path"] = app.wsgi_app
