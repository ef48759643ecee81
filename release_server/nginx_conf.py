"""nginx's main configuration for an nginx this project starts itself (``scripts/cluster``, tests, benchmarks).

A production nginx has its own ``/etc/nginx/nginx.conf`` and includes the shipped site files
from ``deploy/nginx/``; an nginx started beside a cluster, a test or a benchmark needs a main
file of its own that keeps every path (pid, logs, temporary bodies) in one working folder,
so that it runs next to the system's nginx and without privileges.
"""
from __future__ import annotations

import os
from pathlib import Path

_TEMP_DIRS = ("body", "proxy", "fastcgi", "uwsgi", "scgi")


def write_main_config(work: Path, http_body: str, *, error_log: Path | None = None, workers: int = 1,
                      connections: int = 1024) -> Path:
    """Write ``work/nginx.conf`` whose ``http`` block holds ``http_body``; return its path."""
    work.mkdir(parents=True, exist_ok=True)
    for d in _TEMP_DIRS:
        (work / d).mkdir(exist_ok=True)
    user = "user root;\n" if os.geteuid() == 0 else ""  # as root, workers would otherwise run as nobody
    temp = "".join(f"    {d}_temp_path {work}/{d};\n" for d in ("proxy", "fastcgi", "uwsgi", "scgi"))
    body = "\n".join("    " + line if line.strip() else "" for line in http_body.strip("\n").splitlines())
    conf = work / "nginx.conf"
    conf.write_text(f"""{user}daemon off;
worker_processes {workers};
pid {work}/nginx.pid;
error_log {error_log or work / 'error.log'} warn;
events {{ worker_connections {connections}; }}
http {{
    include /etc/nginx/mime.types;
    access_log off;
    client_body_temp_path {work}/body;
{temp}{body}
}}
""")
    return conf
