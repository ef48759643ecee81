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

import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask
from werkzeug.http import parse_etags

from ..wsgi_fastpath import FastPath

PATH = "/tuf/metadata/timestamp.json"
ROUTE = "/tuf/metadata/<name>"


class TimestampFastPath(FastPath):
    """WSGI middleware around ``app.wsgi_app`` (installed by :func:`release_server.signing.init_app`)."""

    path, method = PATH, "GET"

    def answer(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        from .. import metrics
        from ..logs import REQUEST_ID_HEADER, request_id_of

        started = time.perf_counter()
        versions = self.app.extensions["catalog_cache"].fresh_versions()
        meta = None if versions is None else self.app.extensions["tuf_metadata_cache"].fresh_timestamp(versions[0])
        if meta is None:
            return self.wsgi_app(environ, start_response)
        rid = request_id_of(environ.get("HTTP_X_REQUEST_ID"))
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
