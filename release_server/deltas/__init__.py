"""Delta patches between releases (see :mod:`.services`).

``init_app`` registers the ``deltas`` commands and the worker job that makes the
patches to every component's newest release. The routes live in :mod:`.api`.
"""
from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Wire the delta package into the app (CLI commands, worker job)."""
    from .. import worker
    from . import cli, services

    app.cli.add_command(cli.deltas_group)

    def delta_job() -> None:
        from ..db import db

        for r in services.worker_job(lambda write: db.new_session(write=write)):
            app.logger.info("delta %s -> %s: %s", r.from_version, r.to_version, r.status)

    worker.register_job(app, "deltas", float(app.config.get("DELTA_INTERVAL", 60)), delta_job)
