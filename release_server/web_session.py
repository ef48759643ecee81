"""Cookie sessions for the web pages only: API requests never open or write one."""
from __future__ import annotations

from flask import Flask, Request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface


class ApiAwareSessionInterface(SecureCookieSessionInterface):
    """The default signed-cookie session, skipped for ``/api/`` and ``/tuf/`` (bearer tokens only)."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        path = request.path
        if path.startswith("/api/") or path.startswith("/tuf/"):
            return None  # Flask substitutes a null session
        return super().open_session(app, request)
