"""The TUF repository: keys, metadata lifecycle, serving.

Every published release is a signed TUF target (see :mod:`.services`); the repository
is served under ``/tuf/`` (see :mod:`.views`) and can be exported for static serving.
``init_app`` registers the release hook, the routes, the ``keys``/``tuf``
commands and the periodic refresh job.

Other packages use :func:`.services.repository_ready`, :func:`.services.trusted_root_json`
and :func:`.services.target_path_for`.
"""
from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Wire the signing package into the app (hooks, routes, CLI commands, worker jobs)."""
    from .. import worker
    from . import cli, fastpath, serving, services, views

    serving.init_app(app)
    fastpath.init_app(app)
    hooks = app.extensions.setdefault("release_hooks", [])
    if services.on_release_event not in hooks:
        hooks.append(services.on_release_event)
    app.register_blueprint(views.bp)
    for cmd in (cli.keys_group, cli.tuf_group):
        app.cli.add_command(cmd)

    def refresh_job() -> None:
        from ..db import db

        roles = services.refresh(db.session)
        db.commit()
        if roles:
            app.logger.info("TUF refresh re-signed %s", ", ".join(roles))

    worker.register_job(app, "tuf-refresh", float(app.config.get("TUF_REFRESH_INTERVAL", 600)), refresh_job)

    export_dest = app.config.get("TUF_EXPORT_DEST")
    if export_dest:
        def export_job() -> None:
            from ..db import db

            services.export_tree(db.session, str(export_dest))

        worker.register_job(app, "tuf-export", float(app.config.get("TUF_EXPORT_INTERVAL", 60)), export_job)
