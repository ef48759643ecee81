"""The Flask application: :func:`create_app` and the classes it builds it from."""
from __future__ import annotations

import os
from typing import Any

from flask import Flask
from werkzeug.routing import IntegerConverter

from . import instance_path_default


class DatabaseIdConverter(IntegerConverter):
    """``<int:...>`` in routes: only ids a database integer column can hold (others: 404)."""

    def __init__(self, map: Any, *args: Any, **kwargs: Any) -> None:  # noqa: A002
        kwargs.setdefault("max", 2**31 - 1)
        super().__init__(map, *args, **kwargs)


def close_app(app: Flask) -> None:
    """Release what an application holds: write its pending last-seen times, then close its connections.

    For a process that builds an application and goes on without it (a script, a second
    node in one process); the flush comes first so no write opens a connection afterwards.
    """
    buffer = app.extensions.get("seen_buffer")
    if buffer is not None:
        buffer.stop()
    engine = app.extensions.get("db_engine")
    if engine is not None:
        engine.dispose()
class ReleaseServerFlask(Flask):
    """Flask, with the coroutine test of each hook and view made once, not on every request.

    Flask asks ``inspect.iscoroutinefunction`` about every before/after/teardown hook and
    the view on each request; the answer never changes for a function, so it is kept.
    """

    _SYNC_CACHE_MAX = 4096

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ensured: dict[Any, Any] = {}

    def ensure_sync(self, func: Any) -> Any:
        try:
            return self._ensured[func]
        except KeyError:
            pass
        except TypeError:  # unhashable: asked every time
            return super().ensure_sync(func)
        wrapped = super().ensure_sync(func)
        if len(self._ensured) < self._SYNC_CACHE_MAX:
            self._ensured[func] = wrapped
        return wrapped


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the application: defaults < ``instance/config.toml`` < environment < ``test_config``."""
    from . import api, db as db_mod, storage
    from .config import finalise, load_config
    from .uploads import UploadRequest
    from .web_session import ApiAwareSessionInterface

    from .errors import InstanceNotFoundError

    test_config = dict(test_config or {})
    from .private_files import private_dirs, secure_instance

    instance = test_config.pop("INSTANCE_PATH", None)
    if instance:  # named by the caller (a test, a script): created if need be
        private_dirs(instance)
    else:  # found as documented; only `release-server init` creates it
        instance = instance_path_default()
        if not os.path.isdir(instance):
            raise InstanceNotFoundError(instance)
    app = ReleaseServerFlask("release_server", instance_path=instance, instance_relative_config=True)
    app.request_class = UploadRequest
    app.url_map.converters["int"] = DatabaseIdConverter
    app.session_interface = ApiAwareSessionInterface()

    config = load_config(instance)
    config.update(test_config)
    finalise(config, instance)
    secure_instance(config, instance)
    # Before anything imports prometheus-client: under gunicorn, counters go to files shared by the workers.
    from .metrics_dir import prepare_multiprocess_dir

    prepare_multiprocess_dir(instance)
    app.config.update(config)
    app.config.setdefault("MAX_FORM_MEMORY_SIZE", 2 * 1024 * 1024)
    app.json.sort_keys = False  # type: ignore[attr-defined]

    db_mod.db.init_app(app)
    storage.init_app(app)
    api.init_app(app)

    from .fleet import auth as fleet_auth
    from .fleet import lastseen
    from .rollouts import catalog

    from .rollouts import cli as rollouts_cli

    catalog.init_app(app)
    fleet_auth.init_app(app)
    lastseen.init_app(app)
    rollouts_cli.init_app(app)

    from . import signing, worker

    worker.init_app(app)
    signing.init_app(app)

    from .rollouts import fastpath as check_fast_path

    check_fast_path.init_app(app)

    from . import deltas

    deltas.init_app(app)

    from . import support

    support.init_app(app)

    from . import web

    web.init_app(app)

    from . import demo, server_cli

    server_cli.init_app(app)
    demo.init_app(app)

    from . import doctor, health, logs, metrics

    logs.configure(fmt=str(app.config.get("LOG_FORMAT", "text")).lower(), level=str(app.config.get("LOG_LEVEL", "INFO")),
                   verbose=bool(app.config.get("LOG_LIBRARIES", False)))
    logs.init_app(app)
    metrics.init_app(app)
    health.init_app(app)
    doctor.init_app(app)
    proxies = int(app.config.get("TRUSTED_PROXIES", 0) or 0)
    if proxies > 0:  # the client address and scheme as the trusted proxies saw them (never more hops)
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies)  # type: ignore[method-assign]
    if app.config.get("WARM_CACHES", True):
        from .warmup import warm

        warm(app)
    return app
