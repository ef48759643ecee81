"""The frame of a WSGI layer that answers one hot route in front of Flask when it can.

Subclasses name the route (``path``, ``method``) and implement :meth:`FastPath.answer`,
which either answers or hands the request to the app (``self.wsgi_app``). Any other
request, and every request while the request log would record the route's successes
(``LOG_HOT_PATH``: the Flask route writes that log line), goes to the app untouched.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask


class FastPath:
    path = ""
    method = "GET"

    def __init__(self, app: Flask, wsgi_app: Callable[..., Iterable[bytes]]) -> None:
        from .logs import request_log

        self.app = app
        self.wsgi_app = wsgi_app
        self.served = 0  # answers given here (for tests and curiosity)
        self._request_log = request_log
        # the level the Flask route would log a success at (release_server.logs)
        self.log_level = logging.INFO if app.config.get("LOG_HOT_PATH", False) else logging.DEBUG

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if (environ.get("PATH_INFO") != self.path or environ.get("REQUEST_METHOD") != self.method
                or self._request_log.isEnabledFor(self.log_level)):
            return self.wsgi_app(environ, start_response)
        return self.answer(environ, start_response)

    def answer(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        raise NotImplementedError
