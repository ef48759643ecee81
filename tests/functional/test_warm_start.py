"""A new server process is ready for the fleet before its first request; the hot path stays light.

The app factory warms the check path (catalog, credential query, timestamp), the
database pool is sized from the process's request threads, and the check and TUF
metadata routes log their successful answers at debug while still being counted.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytest
from factories import create_component, enroll, publish
from sqlalchemy import event

from release_server import create_app
from release_server.db import db


@pytest.fixture
def staff(auth: Any) -> dict[str, str]:
    return auth.headers("admin")


@pytest.fixture
def acme(client: Any, staff: dict[str, str]) -> str:
    assert client.post("/api/v1/customers", json={"name": "Acme"}, headers=staff).status_code == 201
    return "Acme"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def statements(engine: Any, out: list[str]) -> Any:
    def on(conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001
        out.append(statement)

    event.listen(engine, "before_cursor_execute", on)
    return lambda: event.remove(engine, "before_cursor_execute", on)


def offered(client: Any, token: str, installed: dict[str, str]) -> list[str]:
    r = client.post("/api/v1/updates/check", json={"installed": installed}, headers=bearer(token))
    assert r.status_code == 200, r.json
    return [o["version"] for o in r.json["offers"]]


# ---------------------------------------------------------------- warm start


def test_app_creation_warms_the_catalog_so_the_first_check_loads_nothing(app_config: dict, client: Any,
                                                                         staff: dict, acme: str,
                                                                         monkeypatch: Any) -> None:
    create_component(client, staff, "server")
    publish(client, staff, "server", "1.0", channels=["stable"])
    publish(client, staff, "server", "1.1", channels=["stable"])
    inst = enroll(client, staff, "Acme", installed={"server": "1.0"})
    fresh = create_app(dict(app_config))  # a new worker: the app is built before it accepts
    try:
        snap = fresh.extensions["catalog_cache"]._snapshot
        assert snap is not None
        assert sorted(str(r.version) for r in snap.catalog.by_component["server"]) == ["1.0", "1.1"]
        assert fresh.extensions["installation_auth_cache"].applied_version is not None

        from release_server.rollouts import catalog

        def no_load(*_a: Any, **_k: Any) -> Any:
            raise AssertionError("the first check loaded the catalog")

        monkeypatch.setattr(catalog, "load_catalog", no_load)
        seen: list[str] = []
        stop = statements(fresh.extensions["db_engine"], seen)
        try:
            assert offered(fresh.test_client(), inst["token"], {"server": "1.0"}) == ["1.1"]
        finally:
            stop()
        # the state row (read per request here: the tests' recheck period is 0) and the token's one
        # indexed query: nothing about releases, rollouts or pins
        selects = [s for s in seen if s.lstrip().upper().startswith("SELECT")]
        assert sum("FROM installations" in s for s in selects) == 1, selects
        assert all("FROM installations" in s or "FROM catalog_state" in s for s in selects), selects
    finally:
        fresh.extensions["seen_buffer"].stop()
        fresh.extensions["db_engine"].dispose()


def test_a_release_published_after_the_warm_up_is_offered_at_the_first_check(app_config: dict, client: Any,
                                                                             staff: dict, acme: str) -> None:
    create_component(client, staff, "server")
    publish(client, staff, "server", "1.0", channels=["stable"])
    inst = enroll(client, staff, "Acme", installed={"server": "1.0"})
    # a long recheck period: only the warm-up's "look again at the first request" makes this pass
    fresh = create_app({**app_config, "CATALOG_RECHECK_SECONDS": 3600.0})
    try:
        assert fresh.extensions["catalog_cache"]._snapshot is not None
        assert publish(client, staff, "server", "1.1", channels=["stable"]).status_code == 201
        assert offered(fresh.test_client(), inst["token"], {"server": "1.0"}) == ["1.1"]
    finally:
        fresh.extensions["seen_buffer"].stop()
        fresh.extensions["db_engine"].dispose()


def test_a_token_revoked_after_the_warm_up_is_refused_at_the_first_check(app_config: dict, client: Any,
                                                                        staff: dict, acme: str) -> None:
    inst = enroll(client, staff, "Acme")
    fresh = create_app({**app_config, "CATALOG_RECHECK_SECONDS": 3600.0})
    try:
        assert client.post(f"/api/v1/installations/{inst['installation_id']}/revoke",
                           headers=staff).status_code == 200
        r = fresh.test_client().post("/api/v1/updates/check", json={}, headers=bearer(inst["token"]))
        assert r.status_code == 401
    finally:
        fresh.extensions["seen_buffer"].stop()
        fresh.extensions["db_engine"].dispose()


def test_the_timestamp_is_warmed_and_looked_at_again_by_the_first_request(app_config: dict, app: Any,
                                                                         client: Any, tmp_path: Path) -> None:
    from release_server.signing import ceremony

    with app.app_context():
        ceremony.local_trial(db.session, tmp_path / "root-keys")
        db.commit()
    served = client.get("/tuf/metadata/timestamp.json")
    assert served.status_code == 200
    fresh = create_app({**app_config, "CATALOG_RECHECK_SECONDS": 3600.0})
    try:
        cached = fresh.extensions["tuf_metadata_cache"]._timestamp
        assert cached is not None and cached.meta.data == served.data
        assert cached.checked_at == float("-inf")  # the first request reads the row again
        r = fresh.test_client().get("/tuf/metadata/timestamp.json")
        assert r.status_code == 200 and r.data == served.data
    finally:
        fresh.extensions["seen_buffer"].stop()
        fresh.extensions["db_engine"].dispose()


def test_warming_can_be_turned_off_and_the_command_line_does_not_warm(app_config: dict, client: Any,
                                                                    staff: dict, monkeypatch: Any) -> None:
    create_component(client, staff, "server")
    publish(client, staff, "server", "1.0", channels=["stable"])
    cold = create_app({**app_config, "WARM_CACHES": False})
    try:
        assert cold.extensions["catalog_cache"]._snapshot is None
    finally:
        cold.extensions["db_engine"].dispose()
    from release_server import server_cli as cli

    monkeypatch.setenv("RELEASE_SERVER_INSTANCE_PATH", app_config["INSTANCE_PATH"])
    monkeypatch.setenv("DATABASE_URL", app_config["DATABASE_URL"])
    for key, value in app_config.items():
        if key not in ("INSTANCE_PATH", "DATABASE_URL", "TESTING") and isinstance(value, str):
            monkeypatch.setenv(f"RELEASE_SERVER_{key}", value)
    made = cli._create_app()
    try:
        assert made.config["WARM_CACHES"] is False
        assert made.extensions["catalog_cache"]._snapshot is None
    finally:
        made.extensions["db_engine"].dispose()


def test_an_unmigrated_database_leaves_the_caches_cold(tmp_path: Path) -> None:
    # no schema yet (`release-server init` on a new instance, an app built before its migrations)
    app = create_app({"INSTANCE_PATH": str(tmp_path / "i"), "SECRET_KEY": "x",
                      "DATABASE_URL": f"sqlite:///{tmp_path / 'new.db'}"})
    try:
        assert app.extensions["catalog_cache"]._snapshot is None
        assert app.extensions["tuf_metadata_cache"]._timestamp is None
    finally:
        app.extensions["db_engine"].dispose()


# ---------------------------------------------------------------- the pool


def test_pool_limits_follow_the_request_threads() -> None:
    from release_server.db import pool_limits

    assert pool_limits(64) == (10, 58)  # 64 threads + 4 background connections at most
    assert pool_limits(1) == (5, 0)
    assert pool_limits(8, pool_size=2, extra=0) == (2, 6)


def test_the_app_pool_holds_one_connection_per_request_thread(app_config: dict) -> None:
    app = create_app({**app_config, "REQUEST_THREADS": 64, "WARM_CACHES": False})
    try:
        pool = app.extensions["db_engine"].pool
        assert pool.size() == 10 and pool._max_overflow == 58
    finally:
        app.extensions["db_engine"].dispose()


def test_gunicorn_workers_size_their_pool_from_their_threads(monkeypatch: Any) -> None:
    from types import SimpleNamespace

    from release_server import gunicorn_conf

    monkeypatch.delenv("RELEASE_SERVER_REQUEST_THREADS", raising=False)
    gunicorn_conf.post_fork(None, SimpleNamespace(cfg=SimpleNamespace(threads=48)))
    assert os.environ["RELEASE_SERVER_REQUEST_THREADS"] == "48"
    from release_server.config import load_config

    assert load_config("/nonexistent")["REQUEST_THREADS"] == 48


def test_connection_budget_against_postgresql(app: Any, app_config: dict, backend: str,
                                              monkeypatch: Any) -> None:
    from release_server.db import check_connection_budget, connection_budget

    budget = connection_budget(app.extensions["db_engine"], 2, 64)
    monkeypatch.setenv("RELEASE_SERVER_INSTANCE_PATH", app_config["INSTANCE_PATH"])
    monkeypatch.setenv("DATABASE_URL", app_config["DATABASE_URL"])
    if backend == "sqlite-local":
        assert budget is None
        assert check_connection_budget(100, 1000) is None
        return
    needed, allowed = budget
    assert needed == 2 * (64 + 4) and allowed > 0
    warning = check_connection_budget(allowed, 64)  # more workers than connections: certainly too many
    assert warning is not None and "max_connections" in warning
    assert check_connection_budget(1, 1) is None


# ---------------------------------------------------------------- the request log on the hot path


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def of(self, path: str) -> list[logging.LogRecord]:
        return [r for r in self.records if r.name == "release_server.request" and r.fields["path"] == path]


@pytest.fixture
def request_log() -> Any:
    handler = Records()
    logger = logging.getLogger("release_server.request")
    old = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old)


def test_hot_path_successes_are_logged_at_debug_and_failures_at_info(app: Any, client: Any, staff: dict,
                                                                   acme: str, request_log: Records,
                                                                   tmp_path: Path) -> None:
    from release_server.signing import ceremony

    with app.app_context():
        ceremony.local_trial(db.session, tmp_path / "root-keys")
        db.commit()
    inst = enroll(client, staff, "Acme")
    assert client.post("/api/v1/updates/check", json={}, headers=bearer(inst["token"])).status_code == 200
    assert client.post("/api/v1/updates/check", json={}, headers=bearer("rsi_nope")).status_code == 401
    assert client.get("/tuf/metadata/timestamp.json").status_code == 200
    assert client.get("/tuf/metadata/99.snapshot.json").status_code == 404
    assert client.get("/api/v1/customers", headers=staff).status_code == 200
    checks = request_log.of("/api/v1/updates/check")
    assert [(r.levelno, r.fields["status"]) for r in checks] == [(logging.DEBUG, 200), (logging.INFO, 401)]
    assert [r.levelno for r in request_log.of("/tuf/metadata/timestamp.json")] == [logging.DEBUG]
    assert [r.levelno for r in request_log.of("/tuf/metadata/99.snapshot.json")] == [logging.INFO]
    assert [r.levelno for r in request_log.of("/api/v1/customers")] == [logging.INFO]  # not the hot path
    assert checks[0].fields["request_id"] and checks[0].fields["route"] == "/api/v1/updates/check"


def test_log_hot_path_success_at_info(app_config: dict, app: Any, client: Any, request_log: Records,
                                      tmp_path: Path) -> None:
    from release_server.signing import ceremony

    with app.app_context():
        ceremony.local_trial(db.session, tmp_path / "root-keys")
        db.commit()
    loud = create_app({**app_config, "LOG_HOT_PATH": True})
    try:
        assert loud.test_client().get("/tuf/metadata/timestamp.json").status_code == 200
        assert [x.levelno for x in request_log.of("/tuf/metadata/timestamp.json")] == [logging.INFO]
    finally:
        loud.extensions["seen_buffer"].stop()
        loud.extensions["db_engine"].dispose()


def test_quiet_hot_path_requests_still_carry_a_request_id_and_are_counted(app: Any, client: Any, staff: dict,
                                                                         acme: str) -> None:
    from prometheus_client import REGISTRY

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        pytest.skip("counters live in the multiprocess files here")
    inst = enroll(client, staff, "Acme")
    labels = {"method": "POST", "route": "/api/v1/updates/check", "status": "2xx"}
    before = REGISTRY.get_sample_value("release_server_http_requests_total", labels) or 0
    r = client.post("/api/v1/updates/check", json={}, headers={**bearer(inst["token"]), "X-Request-ID": "lb-1"})
    assert r.status_code == 200 and r.headers["X-Request-ID"] == "lb-1"
    r = client.post("/api/v1/updates/check", json={}, headers=bearer(inst["token"]))
    assert len(r.headers["X-Request-ID"]) == 32
    after = REGISTRY.get_sample_value("release_server_http_requests_total", labels)
    assert after == before + 2


def test_the_coroutine_test_of_a_hook_is_made_once(app: Any) -> None:
    calls = []

    def hook() -> None:
        calls.append(1)

    assert app.ensure_sync(hook) is hook
    assert app._ensured[hook] is hook
    assert app.ensure_sync(hook) is hook


def test_a_credential_miss_is_one_statement_outside_any_transaction(app_config: dict, client: Any, staff: dict,
                                                                   acme: str) -> None:
    a = enroll(client, staff, "Acme", name="a")
    b = enroll(client, staff, "Acme", name="b")
    fresh = create_app({**app_config, "CATALOG_RECHECK_SECONDS": 3600.0})
    try:
        fc = fresh.test_client()
        assert fc.post("/api/v1/updates/check", json={}, headers=bearer(a["token"])).status_code == 200
        seen: list[str] = []
        stop = statements(fresh.extensions["db_engine"], seen)
        try:  # the state row is fresh now: b's check reads only its credentials, on a bare connection
            assert fc.post("/api/v1/updates/check", json={}, headers=bearer(b["token"])).status_code == 200
        finally:
            stop()
        assert len(seen) == 1 and "FROM installations" in seen[0], seen  # no BEGIN (SQLite), no session
    finally:
        fresh.extensions["seen_buffer"].stop()
        fresh.extensions["db_engine"].dispose()
