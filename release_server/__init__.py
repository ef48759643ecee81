"""The release server: a Flask application built by :func:`create_app`.

The package imports nothing heavy itself, so a client command (``release-server
publish``) starts without Flask: :func:`create_app` and the application's classes
live in :mod:`.application` and are loaded the first time they are asked for here.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .application import DatabaseIdConverter, ReleaseServerFlask, close_app, create_app

__version__ = "0.1.0"
__all__ = ["DatabaseIdConverter", "ReleaseServerFlask", "close_app", "create_app", "instance_path_default"]

_APPLICATION = frozenset({"DatabaseIdConverter", "ReleaseServerFlask", "close_app", "create_app"})


def instance_path_default() -> str:
    """Where the instance is: ``RELEASE_SERVER_INSTANCE_PATH``, else ``./instance`` (absolute)."""
    return os.path.abspath(os.environ.get("RELEASE_SERVER_INSTANCE_PATH") or "instance")


def __getattr__(name: str) -> Any:
    if name in _APPLICATION:
        from . import application

        return getattr(application, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
