"""Where prometheus-client keeps the counters of a multi-process server (no prometheus import here).

prometheus-client decides at import time whether it runs in multiprocess mode, from
``PROMETHEUS_MULTIPROC_DIR``; the app factory calls :func:`prepare_multiprocess_dir`
before anything imports :mod:`release_server.metrics`.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_multiprocess_dir(instance: str) -> str | None:
    """Under gunicorn, point prometheus-client at a directory for this server run (once per master).

    Returns the directory in use, or None outside gunicorn with no directory configured.
    Directories of gunicorn masters that are no longer running are removed.
    """
    if os.environ.get(MULTIPROC_ENV):
        os.makedirs(os.environ[MULTIPROC_ENV], exist_ok=True)
        return os.environ[MULTIPROC_ENV]
    if not os.environ.get("SERVER_SOFTWARE", "").startswith("gunicorn"):
        return None
    base = Path(instance) / "metrics"
    base.mkdir(parents=True, exist_ok=True)
    master = os.getppid()
    for old in base.iterdir():
        if old.name.isdigit() and int(old.name) != master and not _alive(int(old.name)):
            shutil.rmtree(old, ignore_errors=True)
    path = base / str(master)
    path.mkdir(exist_ok=True)
    os.environ[MULTIPROC_ENV] = str(path)
    return str(path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


