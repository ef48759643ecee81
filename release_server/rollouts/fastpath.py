"""The update check answered in front of Flask when everything it needs is at hand.

Every installation checks once per poll interval; at a million installations that is
the server's main load. When the catalog snapshot is current (its state version was
read within ``CATALOG_RECHECK_SECONDS``), this process's credential cache is at the
current auth version, and the body parses, this WSGI layer answers
``POST /api/v1/updates/check`` itself with :func:`.checking.answer`, the function the
Flask route calls: the same bytes, ``X-Request-ID``, last-seen note and counters. A
credential miss costs the one indexed read it costs in the route.

Everything else goes to the app unchanged, with the body already read handed back:
another path or method, a missing, malformed, unknown or revoked token, a change feed
to apply, a failed credential read, a stale catalog, a body that is not JSON, too large
or invalid (the route gives the error), and a request log at the level the route logs
successes at.
"""
from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterable
from typing import Any

import pydantic
from flask import Flask

from .. import metrics
from ..api import MAX_JSON_BODY
from ..fleet.schemas import CheckRequest
from ..wsgi_fastpath import FastPath
from . import checking

PATH = "/api/v1/updates/check"


def _is_json(content_type: str) -> bool:
    """``request.is_json`` without building a request: application/json or application/*+json."""
    mimetype = content_type.split(";", 1)[0].strip().lower()
    return mimetype == "application/json" or (mimetype.startswith("application/") and mimetype.endswith("+json"))


class CheckFastPath(FastPath):
    """WSGI middleware around ``app.wsgi_app`` (installed by :func:`init_app`)."""

    path, method = PATH, "POST"

    def answer(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        from ..logs import REQUEST_ID_HEADER, request_id_of

        started = time.perf_counter()
        extensions = self.app.extensions
        fresh = extensions["catalog_cache"].fresh_snapshot()
        header = environ.get("HTTP_AUTHORIZATION", "")
        if fresh is None or header[:7].lower() != "bearer " or not _is_json(environ.get("CONTENT_TYPE", "")):
            return self.wsgi_app(environ, start_response)
        secret = header[7:].strip()
        try:
            length = int(environ.get("CONTENT_LENGTH") or "")
        except ValueError:
            return self.wsgi_app(environ, start_response)
        if not secret.startswith("rsi_") or not 0 <= length <= MAX_JSON_BODY:
            return self.wsgi_app(environ, start_response)
        raw = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(raw)  # whatever happens next, the app can read the body again
        try:
            body = CheckRequest.model_validate_json(raw or b"null")
        except pydantic.ValidationError:
            return self.wsgi_app(environ, start_response)
        snap, auth_version = fresh
        try:  # a credential miss is one indexed read, as in the route; any trouble is the route's to report
            principal = extensions["installation_auth_cache"].peek(secret, auth_version,
                                                                    connect=extensions["db_read_engine"].connect)
        except Exception:  # noqa: BLE001
            principal = None
        if principal is None:
            return self.wsgi_app(environ, start_response)
        data = checking.answer(snap, principal, body, poll_interval=self.app.config["POLL_INTERVAL_SECONDS"],
                               buffer=extensions["seen_buffer"], auth_cache=extensions["installation_auth_cache"])
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data))),
                                  (REQUEST_ID_HEADER, request_id_of(environ.get("HTTP_X_REQUEST_ID")))])
        metrics.count_request("POST", PATH, 200, time.perf_counter() - started)
        self.served += 1
        return [data]


def init_app(app: Flask) -> None:
    app.wsgi_app = CheckFastPath(app, app.wsgi_app)  # type: ignore[method-assign]
    app.extensions["check_fast_path"] = app.wsgi_app
