"""Paying the hot path's one-time costs before a process takes its first request.

A fresh server process (a gunicorn worker, which builds its own app after the fork)
would otherwise pay them on its first update check: SQLAlchemy configuring every
mapper, compiling the check path's statements, opening the first database connection
and loading the offer catalog. Under load that made the first check in a new worker
take several hundred milliseconds. :func:`warm` does that work in the app factory
(``WARM_CACHES``, on by default; the command line turns it off, as its commands do not
serve checks):

* every mapper is configured;
* the catalog snapshot is loaded (the rollouts' releases, gates and pins);
* the credential query and the change-feed query are compiled by running them once
  (with a token prefix that cannot exist), on a connection left in the pool;
* the TUF ``timestamp.json`` bytes are read and hashed.

Nothing it caches is trusted for longer than usual: the catalog's and the timestamp's
state versions are looked at again by the first request (their recheck period starts
over), so a change committed between the warm-up and the first request is seen at once.
A database that is not there yet or not migrated (``release-server init`` on a new
instance, a test's app built before its schema) leaves the caches cold, and the first
request warms them as before.
"""
from __future__ import annotations

import logging
import os
import time

from flask import Flask
from sqlalchemy.exc import SQLAlchemyError

log = logging.getLogger(__name__)


def _database_missing(app: Flask) -> bool:
    """An SQLite file that does not exist yet: connecting would create it, so leave it alone."""
    engine = app.extensions["db_engine"]
    if engine.dialect.name != "sqlite":
        return False
    path = engine.url.database
    return not path or path == ":memory:" or not os.path.exists(path)


def warm(app: Flask) -> dict[str, float]:
    """Warm the caches behind the check and ``timestamp.json``; returns what took how long (seconds)."""
    from sqlalchemy.orm import configure_mappers

    took: dict[str, float] = {}
    t0 = time.perf_counter()
    configure_mappers()
    took["mappers"] = time.perf_counter() - t0
    if _database_missing(app):
        return took
    from .db import db
    from .fleet.auth import get_auth_cache, load_principal
    from .rollouts.catalog import get_cache
    from .errors import ReleaseServerError
    from .signing.serving import get_cache as get_metadata_cache

    with app.app_context():
        try:
            t0 = time.perf_counter()
            catalog = get_cache()
            catalog.snapshot(db.session)
            took["catalog"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            load_principal(db.session, "rsi_00000000_" + "0" * 32)  # no such prefix: compiles the query
            auth = get_auth_cache()
            auth.catch_up(db.session, catalog.versions(db.session)[1])
            took["credentials"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            try:
                get_metadata_cache().timestamp(lambda: db.session, catalog.versions(db.session)[0])
                took["timestamp"] = time.perf_counter() - t0
            except (ReleaseServerError, OSError) as e:  # no TUF repository yet
                log.debug("timestamp.json not cached: %s", e)
            db.session.rollback()
        except SQLAlchemyError as e:  # no schema yet: the first request loads what it needs
            log.debug("caches left cold: %s", str(e).splitlines()[0])
            db.rollback()
        finally:
            # the first request looks at the state row again (its recheck period starts over)
            get_cache().invalidate()
            get_metadata_cache().expire_check()
    return took
