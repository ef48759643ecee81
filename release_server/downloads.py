"""Sending stored files to clients without tying a worker to the transfer's CPU.

Every download (release artifacts, TUF target files, ticket attachments) goes through
:func:`blob_response`, which picks the cheapest way the deployment has:

* ``DOWNLOAD_ACCEL_REDIRECT`` set (a proxy such as nginx in front, local-disk storage):
  the answer carries no body, only ``X-Accel-Redirect: <prefix><storage key>``; the
  proxy serves the file from its ``internal`` location (ranges, slow clients and all)
  and the application thread is free at once.
* local-disk storage: the file is handed to the server's ``wsgi.file_wrapper`` so that
  gunicorn sends it with ``sendfile(2)``. A single-range request (a resumed download)
  keeps that path: the file is positioned at the range's start and the response's
  ``Content-Length`` bounds what is sent, instead of Werkzeug's range wrapper copying
  every block through Python.
* other storage (S3): streamed in blocks, ranges too (presigned redirects are decided by the caller).

The worker model that makes a slow client harmless (threads, so a transfer holds one
thread, not a process) is set in :mod:`release_server.gunicorn_conf`.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from flask import Response, current_app, request, send_file
from werkzeug.exceptions import RequestedRangeNotSatisfiable
from werkzeug.http import http_date, is_resource_modified

from .storage import get_storage

BLOCK = 1024 * 1024


def _bounded(chunks: Iterator[bytes], length: int) -> Iterator[bytes]:
    """The first ``length`` bytes of ``chunks``."""
    left = length
    try:
        for chunk in chunks:
            if len(chunk) >= left:
                yield chunk[:left]
                return
            left -= len(chunk)
            yield chunk
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


def _file_chunks(path: Path, start: int) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        fh.seek(start)
        while chunk := fh.read(BLOCK):
            yield chunk


def requested_span(size: int, etag: str, last_modified: str | None) -> tuple[int, int] | None:
    """The single byte range (start, stop) to answer with a 206, or None to answer in full (or 304).

    Raises RequestedRangeNotSatisfiable (416) for a range outside the object or a
    multi-range request.
    """
    environ = request.environ
    if "HTTP_RANGE" not in environ or request.method not in ("GET", "HEAD"):
        return None
    if "HTTP_IF_RANGE" in environ and is_resource_modified(environ, etag, last_modified=last_modified,
                                                           ignore_if_range=False):
        return None  # the client holds part of another version: send it whole
    if not is_resource_modified(environ, etag, last_modified=last_modified):
        return None  # a 304 is cheaper still
    rng = request.range
    span = rng.range_for_length(size) if rng is not None else None
    if span is None:
        raise RequestedRangeNotSatisfiable(length=size)
    return span


def _partial(body: Any, span: tuple[int, int], size: int, etag: str, mimetype: str) -> Response:
    start, stop = span
    resp = Response(body, status=206, mimetype=mimetype, direct_passthrough=True)
    resp.headers["Content-Length"] = str(stop - start)
    resp.headers["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
    resp.headers["Accept-Ranges"] = "bytes"
    resp.set_etag(etag)
    return resp


def _local_range(path: Path, span: tuple[int, int]) -> Any:
    """The body of a 206 from a local file, still sent with sendfile where the server can."""
    start, stop = span
    wrapper = request.environ.get("wsgi.file_wrapper")
    if wrapper is None:
        return _bounded(_file_chunks(path, start), stop - start)
    fh = open(path, "rb")
    fh.seek(start)
    # PEP 3333: the server sends no more than Content-Length; gunicorn sendfile()s from the file's position
    return wrapper(fh, BLOCK)


def _attachment_header(filename: str, inline: bool = False) -> str:
    ascii_name = filename.encode("ascii", "replace").decode().replace('"', "_").replace("?", "_").replace("\\", "_")
    kind = "inline" if inline else "attachment"
    if ascii_name == filename:
        return f'{kind}; filename="{ascii_name}"'
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}"


def blob_response(key: str, *, size: int | None, etag: str, mimetype: str = "application/octet-stream",
                  download_name: str | None = None, max_age: int | None = None) -> Response:
    """The response that sends stored object ``key`` (``size`` bytes, strong ETag ``etag``).

    ``size`` None means "as stored" (asked of the storage): what a TUF target serves, so that
    a client verifies the bytes storage really holds.

    ``download_name`` makes it an attachment with that file name; ``max_age`` sets a
    public cache lifetime. Conditional requests (``If-None-Match``) and single byte
    ranges are answered on every path.
    """
    storage = get_storage()
    local = storage.local_path(key)
    accel = current_app.config.get("DOWNLOAD_ACCEL_REDIRECT")
    resp: Response
    if local is not None and accel:
        resp = Response(b"", mimetype=mimetype)
        resp.set_etag(etag)
        if is_resource_modified(request.environ, etag):
            resp.headers["X-Accel-Redirect"] = accel.rstrip("/") + "/" + quote(key)
        else:
            resp.status_code = 304
        if download_name is not None:
            resp.headers["Content-Disposition"] = _attachment_header(download_name)
    elif local is not None:
        st = os.stat(local)
        size = st.st_size
        last_modified = http_date(st.st_mtime)
        span = requested_span(size, etag, last_modified)
        if span is not None:
            resp = _partial(_local_range(local, span), span, size, etag, mimetype)
            resp.headers["Last-Modified"] = last_modified
        else:
            resp = send_file(local, mimetype=mimetype, conditional=True, etag=etag, max_age=max_age)
            resp.headers["Accept-Ranges"] = "bytes"
        if download_name is not None:
            resp.headers["Content-Disposition"] = _attachment_header(download_name)
    else:
        if size is None:
            size = storage.size(key)
        span = requested_span(size, etag, None)
        if span is not None:
            resp = _partial(_bounded(storage.iter_chunks(key, start=span[0]), span[1] - span[0]), span, size, etag,
                            mimetype)
        else:
            resp = Response(storage.iter_chunks(key), mimetype=mimetype, direct_passthrough=True)
            resp.headers["Content-Length"] = str(size)
            resp.headers["Accept-Ranges"] = "bytes"
            resp.set_etag(etag)
            resp = resp.make_conditional(request)
        if download_name is not None:
            resp.headers["Content-Disposition"] = _attachment_header(download_name)
    if max_age is not None:
        resp.headers["Cache-Control"] = f"public, max-age={max_age}"
    return resp
