"""The TUF repository: keys, metadata lifecycle, serving (filled in by the signing package)."""
from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Wire the signing package into the app (hooks, routes, CLI commands)."""
