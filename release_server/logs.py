"""Logging: one structured line per request and per worker job, secrets kept out.

:func:`init_app` gives every request an id (a sane incoming ``X-Request-ID`` is kept,
otherwise a new one is made), echoes it in the ``X-Request-ID`` response header and, when
the request ends, logs one line on the ``release_server.request`` logger with the method,
path (never the query string), route, status, duration, response size and request id.
The fleet's hot path (the routes declared with :func:`hot_path`: the update check and
TUF metadata, asked by every installation on every poll) logs its successful answers at
debug instead: at info level a fleet's polls would be most of the log and a good share
of each answer's CPU time. Their failures (status 400 and above) are logged at info like
any other request, and every request is still counted in the metrics
(:mod:`release_server.metrics`). ``LOG_HOT_PATH`` set to true logs them at info too.
A line's fields are built only when its level is enabled.
A worker job logs one line on ``release_server.job`` through :func:`job_context`.

:func:`configure` sets up the process's handler when nothing else did: text lines, or
one JSON object per line when ``LOG_FORMAT`` is ``json``, at ``LOG_LEVEL``. Libraries
(python-tuf, securesystemslib, Alembic, botocore, ...) log at warning and above unless
``verbose`` is asked for (``release-server -v``). Every formatted line goes through
:func:`redact`, which masks API tokens, enrollment and installation tokens, bearer
credentials and password or secret fields, whatever logged them.
"""
from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

from flask import Flask, Response, g, request

REQUEST_ID_HEADER = "X-Request-ID"
SANE_REQUEST_ID = _SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/+=-]{0,127}")

#: Loggers of libraries kept at warning unless verbose.
LIBRARY_LOGGERS = ("tuf", "securesystemslib", "alembic", "botocore", "boto3", "s3transfer", "urllib3",
                   "werkzeug", "babel")

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
job_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("job", default=None)

_REDACTIONS: list[tuple[re.Pattern[str], str]] = [
    # our own token formats: rst_ (staff API), rsi_ (installation), rse_ (enrollment), rsc_ / rsp_ (others)
    (re.compile(r"\b(rs[a-z])_([A-Za-z0-9]{4,16})_[A-Za-z0-9_\-]{8,}"), r"\1_\2_[redacted]"),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/\-]+=*"), r"\1 [redacted]"),
    (re.compile(r"(?i)((?:password|passwd|secret|token|api[_-]?key|authorization)[\"']?\s*[:=]\s*[\"']?)"
                r"[^\s\"',;&}]+"), r"\1[redacted]"),
]


def redact(text: str) -> str:
    """Mask credentials in a log line."""
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = getattr(record, "fields", None)
        if fields:
            line += " " + " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
        elif request_id_var.get():
            line += f" request_id={request_id_var.get()}"
        return redact(line)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the record's fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if request_id_var.get():
            out["request_id"] = request_id_var.get()
        if job_var.get():
            out["job"] = job_var.get()
        out.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return redact(json.dumps(out, default=str, ensure_ascii=False))


def make_formatter(fmt: str) -> logging.Formatter:
    return JsonFormatter() if fmt == "json" else TextFormatter()


_configured_handler: logging.Handler | None = None


def configure(*, fmt: str = "text", level: str = "INFO", verbose: bool = False,
              stream: Any = None, force: bool = False) -> None:
    """Install the process's log handler (once, unless ``force``) and the library log levels."""
    global _configured_handler
    root = logging.getLogger()
    if _configured_handler is None and (force or not root.handlers):
        handler = logging.StreamHandler(stream or sys.stderr)
        root.addHandler(handler)
        _configured_handler = handler
    if _configured_handler is not None:
        _configured_handler.setFormatter(make_formatter(fmt))
        root.setLevel(level.upper())
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.WARNING)


def quiet_libraries(verbose: bool = False) -> None:
    """Libraries at warning (or everything when verbose); used by the command line."""
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.WARNING)


# ---------------------------------------------------------------- requests

request_log = logging.getLogger("release_server.request")
job_log = logging.getLogger("release_server.job")


def new_request_id() -> str:
    return os.urandom(16).hex()  # 128 random bits, as uuid4().hex without building a UUID


def request_id_of(given: str | None) -> str:
    """The request id to answer with: the caller's when it is sane, else a new one."""
    if given and _SANE_REQUEST_ID.fullmatch(given):
        return given
    return new_request_id()


def _incoming_request_id() -> str:
    return request_id_of(request.headers.get(REQUEST_ID_HEADER, ""))


#: Endpoints whose successful answers are logged at debug (see the module docstring).
HOT_PATH_ENDPOINTS: set[str] = set()


def hot_path(endpoint: str) -> None:
    """Declare ``endpoint`` (``blueprint.view``) part of the fleet's hot path."""
    HOT_PATH_ENDPOINTS.add(endpoint)


def request_started() -> float | None:
    """When this request started (``time.perf_counter()``), for whatever measures its duration."""
    return g.get("_request_started")


def init_app(app: Flask) -> None:
    hot_level = logging.INFO if app.config.get("LOG_HOT_PATH", False) else logging.DEBUG

    @app.before_request
    def _start() -> None:
        g._request_started = time.perf_counter()
        g.request_id = rid = _incoming_request_id()
        g._request_id_token = request_id_var.set(rid)

    @app.after_request
    def _finish(response: Response) -> Response:
        rid = g.get("request_id")
        if rid is None:  # a request that failed before _start
            rid = _incoming_request_id()
        response.headers[REQUEST_ID_HEADER] = rid
        status = response.status_code
        level = hot_level if status < 400 and request.endpoint in HOT_PATH_ENDPOINTS else logging.INFO
        if not request_log.isEnabledFor(level):
            return response
        started = g.get("_request_started")
        duration_ms = round((time.perf_counter() - started) * 1000, 2) if started else None
        rule = request.url_rule.rule if request.url_rule is not None else None
        method, path = request.method, request.path
        request_log.log(level, "%s %s %s", method, path, status, extra={"fields": {
            "request_id": rid, "method": method, "path": path, "route": rule,
            "status": status, "duration_ms": duration_ms,
            "bytes": response.content_length, "remote_addr": request.remote_addr,
        }})
        return response

    @app.teardown_request
    def _reset(_exc: BaseException | None) -> None:
        token = g.pop("_request_id_token", None)
        if token is not None:
            try:
                request_id_var.reset(token)
            except ValueError:  # set in another context (streamed response)
                request_id_var.set(None)


@contextmanager
def job_context(name: str) -> Iterator[Callable[[bool, float], None]]:
    """Tag log lines with the job's name and run id; the yielded function logs the job's one line."""
    run_id = uuid.uuid4().hex[:12]
    token = job_var.set(name)
    rid = request_id_var.set(f"job-{run_id}")

    def done(ok: bool, duration: float) -> None:
        job_log.log(logging.INFO if ok else logging.WARNING, "job %s %s in %.2fs", name,
                    "done" if ok else "failed", duration,
                    extra={"fields": {"job": name, "run_id": run_id, "ok": ok, "duration_s": round(duration, 3)}})

    try:
        yield done
    finally:
        request_id_var.reset(rid)
        job_var.reset(token)
