"""Shared fixtures: the app on each database/storage pairing, clients, tokens, real servers.

The ``app`` fixture is parametrised over two deployments: the embedded default
(SQLite + local disk) and the scale-out one (PostgreSQL + S3 through moto's standalone
server over HTTP). Tests that need PostgreSQL or S3 skip when they are not reachable,
unless REQUIRE_POSTGRES=1 / REQUIRE_S3=1 is set, which turns those skips into failures.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from release_server import close_app

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _required(var: str) -> bool:
    return os.environ.get(var, "") not in ("", "0", "false")


def skip_or_fail(var: str, reason: str) -> None:
    if _required(var):
        pytest.fail(f"{reason} ({var}=1 makes this a failure)")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- PostgreSQL

@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test run, migrated to head."""
    try:
        admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text("select 1"))
    except Exception as e:  # noqa: BLE001 - any failure means "not available"
        skip_or_fail("REQUIRE_POSTGRES", f"PostgreSQL not reachable at {PG_ADMIN_URL}: {e.__class__.__name__}")
    name = f"rs_test_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    from release_server.db import make_engine
    from release_server.migrations import upgrade

    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    yield url
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


class PgReset:
    """Restores a PostgreSQL database to its just-migrated content between tests."""

    def __init__(self, url: str) -> None:
        from release_server.db import make_engine

        self.engine = make_engine(url)
        insp = sa.inspect(self.engine)
        self.tables = [t for t in insp.get_table_names() if t != "alembic_version"]
        meta = sa.MetaData()
        meta.reflect(self.engine)
        self.meta = meta
        with self.engine.connect() as conn:
            self.seed = {t: [dict(r._mapping) for r in conn.execute(meta.tables[t].select())] for t in self.tables}

    def reset(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.text("TRUNCATE " + ", ".join(f'"{t}"' for t in self.tables) + " RESTART IDENTITY CASCADE"))
            for table in self.meta.sorted_tables:
                rows = self.seed.get(table.name)
                if rows:
                    conn.execute(table.insert(), rows)
            for table in self.meta.sorted_tables:
                pk = list(table.primary_key.columns)
                if len(pk) == 1 and isinstance(pk[0].type, sa.Integer) and self.seed.get(table.name):
                    conn.execute(sa.text(
                        f"SELECT setval(pg_get_serial_sequence('\"{table.name}\"', '{pk[0].name}'), "
                        f"(SELECT max(\"{pk[0].name}\") FROM \"{table.name}\"))"))


@pytest.fixture(scope="session")
def pg_reset(pg_database: str) -> Iterator[PgReset]:
    r = PgReset(pg_database)
    yield r
    r.engine.dispose()


# ---------------------------------------------------------------- S3 (moto server)

@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's standalone S3 server, over HTTP on 127.0.0.1."""
    try:
        import moto.server  # noqa: F401
    except ImportError:
        skip_or_fail("REQUIRE_S3", "moto[server] is not installed")
    port = free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "wb")
    env = dict(os.environ, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test")
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            requests.get(url + "/moto-api/", timeout=1)
            break
        except requests.RequestException:
            if proc.poll() is not None:
                break
            time.sleep(0.2)
    else:
        proc.kill()
        skip_or_fail("REQUIRE_S3", "moto server did not start")
    if proc.poll() is not None:
        skip_or_fail("REQUIRE_S3", "moto server exited at start")
    yield url
    proc.terminate()
    proc.wait(10)
    log.close()


def s3_config(endpoint: str, bucket: str) -> dict[str, Any]:
    return {"STORAGE_BACKEND": "s3", "S3_ENDPOINT_URL": endpoint, "S3_BUCKET": bucket,
            "S3_ACCESS_KEY_ID": "test", "S3_SECRET_ACCESS_KEY": "test", "S3_REGION": "us-east-1",
            "S3_MULTIPART_CHUNK_SIZE": 5 * 1024 * 1024}


def make_bucket(endpoint: str) -> str:
    from release_server.storage.s3 import S3Storage

    bucket = f"t-{uuid.uuid4().hex[:12]}"
    S3Storage(bucket=bucket, endpoint_url=endpoint, access_key_id="test", secret_access_key="test",
              create_bucket=True)
    return bucket


# ---------------------------------------------------------------- SQLite template

@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from release_server.db import make_engine
    from release_server.migrations import upgrade

    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return path


# ---------------------------------------------------------------- the app

BACKENDS = ["sqlite-local", "postgres-s3"]


def build_config(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> dict[str, Any]:
    instance = tmp_path / "instance"
    instance.mkdir(exist_ok=True)
    config: dict[str, Any] = {"INSTANCE_PATH": str(instance), "TESTING": True, "SECRET_KEY": "test-secret",
                              "CATALOG_RECHECK_SECONDS": 0.0,
                              "STORAGE_PATH": str(tmp_path / "blobs")}
    if backend == "sqlite-local":
        db_path = instance / "release-server.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), db_path)
        config["DATABASE_URL"] = f"sqlite:///{db_path}"
    else:
        url = request.getfixturevalue("pg_database")
        request.getfixturevalue("pg_reset").reset()
        endpoint = request.getfixturevalue("s3_endpoint")
        config["DATABASE_URL"] = url
        config.update(s3_config(endpoint, make_bucket(endpoint)))
    return config


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def app_config(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> dict[str, Any]:
    return build_config(request, backend, tmp_path)


@pytest.fixture
def app(app_config: dict[str, Any]) -> Iterator[Any]:
    from release_server import create_app

    application = create_app(dict(app_config))
    yield application
    close_app(application)


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


@pytest.fixture
def runner(app: Any) -> Any:
    return app.test_cli_runner()


class Auth:
    """Creates staff users with tokens and builds Authorization headers."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._tokens: dict[str, str] = {}

    def token(self, role: str) -> str:
        if role not in self._tokens:
            from release_server.accounts import services
            from release_server.db import db

            with self.app.app_context():
                user = services.create_user(db.session, f"{role}-user", "correct horse battery", role)
                issued = services.issue_token(db.session, name=f"{role} token", role=role, user=user)
                db.commit()
                self._tokens[role] = issued.secret
        return self._tokens[role]

    def headers(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(role)}"}


@pytest.fixture
def auth(app: Any) -> Auth:
    return Auth(app)


# ---------------------------------------------------------------- a real server process

class LiveServer:
    """A gunicorn process serving the app on 127.0.0.1, configured through the environment."""

    def __init__(self, config: dict[str, Any], log_path: Path, workers: int = 2, threads: int | None = None) -> None:
        self.config = config
        self.log_path = log_path
        self.workers = workers
        self.threads = threads
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RELEASE_SERVER_")}
        env.pop("DATABASE_URL", None)
        for key, value in self.config.items():
            if key == "INSTANCE_PATH":
                env["RELEASE_SERVER_INSTANCE_PATH"] = str(value)
            elif key == "TESTING":
                continue
            else:
                env[f"RELEASE_SERVER_{key}"] = str(value).lower() if isinstance(value, bool) else str(value)
        env["RELEASE_SERVER_PUBLIC_URL"] = self.url
        env["PYTHONPATH"] = str(ROOT)
        return env

    def start(self) -> LiveServer:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--config", "python:release_server.gunicorn_conf",  # as scripts/run
             "--workers", str(self.workers), "--bind", f"127.0.0.1:{self.port}",
             *(["--threads", str(self.threads)] if self.threads else []), "release_server:create_app()"],
            stdout=log, stderr=subprocess.STDOUT, env=self.env(), cwd=str(ROOT))
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited at start:\n{self.log_path.read_text()[-4000:]}")
            try:
                if requests.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not answer:\n{self.log_path.read_text()[-4000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


@pytest.fixture
def live_server(app: Any, app_config: dict[str, Any], tmp_path: Path) -> Iterator[LiveServer]:
    """The same app as the ``app`` fixture (same database and storage), served by gunicorn."""
    server = LiveServer(app_config, tmp_path / "server.log").start()
    yield server
    server.stop()
