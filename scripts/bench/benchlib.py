"""Helpers shared by the download, TUF and upload benchmarks: servers, CPU time, percentiles.

CPU time is summed over a server's whole process tree (the gunicorn master and its
workers, or nginx and its workers), user plus system, read with psutil before and
after a measured round; on a shared machine it is far steadier than wall-clock rates.
"""
from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree_cpu(pid: int) -> float:
    """User + system CPU seconds of a process and all its live descendants."""
    return sum(tree_cpu_split(pid))


def tree_cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process and all its live descendants."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0, 0.0
    user = system = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            user += t.user
            system += t.system
        except psutil.NoSuchProcess:
            pass
    return user, system


def server_env(instance: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELEASE_SERVER_")}
    env.pop("DATABASE_URL", None)
    env.update(RELEASE_SERVER_INSTANCE_PATH=str(instance), PYTHONPATH=f"{ROOT}:{ROOT / 'scripts' / 'bench'}",
               ACCESS_LOG="")
    env.update(extra)
    return env


def start_gunicorn(target: str, port: int, env: dict[str, str], args: Sequence[str] = (),
                   health: str = "/healthz", log: Path | None = None) -> subprocess.Popen:
    """gunicorn with the shipped settings (release_server.gunicorn_conf) unless ``args`` override them."""
    out = open(log, "ab") if log else subprocess.DEVNULL
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "--config", "python:release_server.gunicorn_conf",
                             "--bind", f"127.0.0.1:{port}", "--log-level", "warning", *args, target],
                            env=env, cwd=str(ROOT), stdout=out, stderr=subprocess.STDOUT)
    wait_http(port, health, proc)
    return proc


def wait_http(port: int, path: str, proc: subprocess.Popen | None = None, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            if conn.getresponse().status < 500:
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing answers on port {port}")


def stop(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def percentile(values: Sequence[float], p: float) -> float:
    if not values:
        return float("nan")
    xs = sorted(values)
    k = min(len(xs) - 1, max(0, int(round(p / 100 * (len(xs) - 1)))))
    return xs[k]


def load_line() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} / {five:.1f} (1 / 5 min) on {os.cpu_count()} CPUs"


def _load_worker(port: int, method: str, path: str, headers: dict[str, str], body: bytes | None, seconds: float,
                 interval: float, q) -> None:  # noqa: ANN001
    ok = errors = 0
    latencies: list[float] = []
    conn = None
    start = time.monotonic()
    deadline = start + seconds
    n = 0
    while time.monotonic() < deadline:
        if interval:
            wait = start + n * interval - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        n += 1
        t0 = time.perf_counter()
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            if resp.status < 400:
                ok += 1
                latencies.append(time.perf_counter() - t0)
            else:
                errors += 1
            if resp.getheader("Connection", "").lower() == "close":
                conn.close()
                conn = None
        except OSError:
            errors += 1
            latencies.append(time.perf_counter() - t0)
            conn = None
    q.put((ok, errors, latencies))


def run_load(port: int, path: str, seconds: float, clients: int, *, method: str = "GET",
             headers: dict[str, str] | None = None, body: bytes | None = None,
             rate_per_client: float = 0.0) -> tuple[int, int, list[float]]:
    """``clients`` processes sending requests over keep-alive connections for ``seconds``.

    ``rate_per_client`` > 0 paces each client (an open-loop load of that many requests a
    second), else each sends as fast as answers come. Returns (ok, errors, latencies)."""
    import multiprocessing as mp

    q = mp.Queue()
    interval = 1.0 / rate_per_client if rate_per_client else 0.0
    procs = [mp.Process(target=_load_worker, args=(port, method, path, headers or {}, body, seconds, interval, q))
             for _ in range(clients)]
    for p in procs:
        p.start()
    results = [q.get() for _ in procs]
    for p in procs:
        p.join()
    lat: list[float] = []
    for r in results:
        lat.extend(r[2])
    return sum(r[0] for r in results), sum(r[1] for r in results), lat


def write_nginx_conf(work: Path, port: int, root: Path, upstream_port: int, blobs: Path) -> Path:
    """A minimal nginx main configuration around the shipped server snippet (deploy/nginx)."""
    from release_server.nginx_conf import write_main_config

    return write_main_config(work, f"""sendfile on;
keepalive_requests 100000;
upstream release_servers {{ server 127.0.0.1:{upstream_port}; }}
server {{
    listen 127.0.0.1:{port};
    root {root};
    set $release_server_blobs {blobs};
    include {ROOT / 'deploy' / 'nginx' / 'release-server.conf'};
}}""")


# ---------------------------------------------------------------- a large fleet in PostgreSQL

BENCH_PASSWORD = "correct horse battery"


def create_pg_database(admin_url: str, prefix: str) -> str:
    """A new, empty PostgreSQL database next to ``admin_url``'s; returns its URL."""
    import uuid

    import sqlalchemy as sa

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(admin_url.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return admin_url.rsplit("/", 1)[0] + "/" + name


def drop_pg_databases(admin_url: str, urls: Iterable[str]) -> None:
    import sqlalchemy as sa

    admin = sa.create_engine(admin_url.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for url in urls:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)'))
    admin.dispose()


def seeded_app(url: str, instance: Path, components: Iterable[str]) -> tuple[Any, int, str]:
    """An application on the database at ``url``, its schema made and :func:`seed_catalog`'s catalog committed.

    Returns (the application, the customer's id, the admin's API token)."""
    from release_server import create_app
    from release_server.db import db
    from release_server.migrations import upgrade

    app = create_app({"INSTANCE_PATH": str(instance), "DATABASE_URL": url})
    with app.app_context():
        upgrade(db.engine)
        customer_id, staff = seed_catalog(db.session, components)
        db.session.commit()
    return app, customer_id, staff


def seed_catalog(session: Any, components: Iterable[str]) -> tuple[int, str]:
    """Releases 1.0.0-1.2.0 of each component, a customer and an admin (``bench-admin``, :data:`BENCH_PASSWORD`).

    Returns (the customer's id, the admin's API token); the caller commits."""
    import io

    from release_server.accounts import services as accounts
    from release_server.fleet import services as fleet
    from release_server.releases import services as rel
    from release_server.releases.schemas import PublishMetadata
    from release_server.storage import get_storage

    for comp in components:
        rel.create_component(session, comp)
        for minor in range(3):
            blob = get_storage().put_stream(io.BytesIO(f"{comp} 1.{minor}".encode()))
            plan = rel.plan_publish(session, comp, PublishMetadata(version=f"1.{minor}.0", channels=["stable"]))
            rel.create_release(session, plan, blob, f"{comp}-1.{minor}.0.tar.gz", "bench")
    cust = fleet.create_customer(session, "Fleet Corp")
    user = accounts.create_user(session, "bench-admin", BENCH_PASSWORD, "admin")
    staff = accounts.issue_token(session, name="bench", role="admin", user=user).secret
    session.flush()
    return cust.id, staff
