"""Gunicorn settings for the release server (``gunicorn -c python:release_server.gunicorn_conf``).

Threaded workers (``gthread``, with the closing linger moved off the event loop: see
:mod:`release_server.gunicorn_worker`): a download occupies one thread, not a whole process,
and the file itself goes out with ``sendfile(2)`` (see :mod:`release_server.downloads`),
so tens of slow clients fetching large artifacts leave every other thread free for
checks, reports and pages. Measured with ``scripts/bench/mass_download.py`` on a loaded
2-core machine: with 2 sync workers, 6 clients reading at 2 MB/s held every check for
about 9.5 s; with 2 workers x 64 threads and 40 such clients, checks stayed within about
2x their latency without downloads. Behind nginx, ``DOWNLOAD_ACCEL_REDIRECT`` hands the
transfer to the proxy and a thread is held only for the few milliseconds of the answer.

Environment: ``WORKERS`` (processes, default 2), ``THREADS`` (per process, default 64:
the number of transfers a process carries at once without queuing other requests),
``BIND`` (default ``127.0.0.1:8000``; a ``--bind`` on the command line wins),
``GUNICORN_TIMEOUT`` (seconds a silent worker is given before it is restarted; the
threaded worker reports in between transfers, so it need not cover a download).

Each worker's database pool is sized from its thread count (``post_fork`` passes the
effective ``--threads`` to the app as ``REQUEST_THREADS``; see :mod:`release_server.db`):
up to ``THREADS + DATABASE_POOL_EXTRA`` connections per worker, so a thread never waits
for another's connection. On PostgreSQL that is ``WORKERS x (THREADS + 4)`` connections
per node at most (2 x 68 = 136 with the defaults, above PostgreSQL's default
``max_connections`` of 100): raise ``max_connections`` (200 covers one node with the
defaults, the worker process and the command line), lower ``THREADS``, or put PgBouncer
in front. ``when_ready`` logs a warning when the server's ``max_connections`` is too low
for this node alone.
"""
from __future__ import annotations

import os
from typing import Any

wsgi_app = "release_server:create_app()"
bind = [os.environ.get("BIND", "127.0.0.1:8000")]
workers = int(os.environ.get("WORKERS", "2"))
worker_class = "release_server.gunicorn_worker.ThreadWorker"  # gthread, see release_server.gunicorn_worker
threads = int(os.environ.get("THREADS", "64"))
# connections a process keeps open (idle keep-alive ones included)
worker_connections = int(os.environ.get("WORKER_CONNECTIONS", "1000"))
keepalive = 5
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "120"))
graceful_timeout = 30
accesslog = os.environ.get("ACCESS_LOG", "-") or None
sendfile = True


def post_fork(server: Any, worker: Any) -> None:
    """In the new worker, before it builds the app: its pool is sized from its threads."""
    os.environ["RELEASE_SERVER_REQUEST_THREADS"] = str(max(1, int(worker.cfg.threads)))


def when_ready(server: Any) -> None:
    """Warn when PostgreSQL cannot take the connections this node's workers may open."""
    from release_server.db import check_connection_budget

    cfg = server.cfg
    message = check_connection_budget(cfg.workers, max(1, int(cfg.threads)))
    if message:
        server.log.warning(message)
