"""``timestamp.json`` answered in front of Flask while the cache is fresh: same answer, counted, never stale."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from factories import create_component, publish

from release_server import create_app
from release_server.db import db

PATH = "/tuf/metadata/timestamp.json"


@pytest.fixture
def repo(app: Any, tmp_path: Path) -> None:
    from release_server.signing import ceremony

    with app.app_context():
        ceremony.local_trial(db.session, tmp_path / "root-keys")
        db.commit()


@pytest.fixture
def node(app_config: dict, repo: None) -> Any:
    """A server process whose catalog and timestamp are rechecked once an hour (so the cache stays fresh)."""
    application = create_app({**app_config, "CATALOG_RECHECK_SECONDS": 3600.0})
    yield application
    application.extensions["seen_buffer"].stop()
    application.extensions["db_engine"].dispose()


def fast(app: Any) -> Any:
    return app.extensions["tuf_timestamp_fast_path"]


def test_a_fresh_timestamp_is_answered_in_front_of_flask_with_the_same_answer(node: Any, monkeypatch: Any) -> None:
    c = node.test_client()
    node.extensions["tuf_metadata_cache"].expire_check()  # the first request goes through the route
    via_flask = c.get(PATH)
    assert via_flask.status_code == 200 and fast(node).served == 0

    def no_route(**_kw: Any) -> Any:
        raise AssertionError("the Flask route was called")

    monkeypatch.setitem(node.view_functions, "tuf.metadata", no_route)
    r = c.get(PATH, headers={"X-Request-ID": "lb-7.1"})
    assert fast(node).served == 1
    assert r.status_code == 200 and r.data == via_flask.data
    assert json.loads(r.data)["signed"]["_type"] == "timestamp"
    for h in ("Content-Type", "Content-Length", "Cache-Control", "ETag"):
        assert r.headers[h] == via_flask.headers[h], h
    assert r.headers["X-Request-ID"] == "lb-7.1"
    bad = c.get(PATH, headers={"X-Request-ID": "no spaces allowed"})
    assert len(bad.headers["X-Request-ID"]) == 32
    not_modified = c.get(PATH, headers={"If-None-Match": via_flask.headers["ETag"]})
    assert not_modified.status_code == 304 and not_modified.data == b""
    assert not_modified.headers["ETag"] == via_flask.headers["ETag"]
    assert c.get(PATH, headers={"If-None-Match": '"other"'}).status_code == 200
    assert fast(node).served == 4


def test_a_cache_due_for_a_look_goes_through_the_route(node: Any) -> None:
    c = node.test_client()
    node.extensions["tuf_metadata_cache"].expire_check()
    assert c.get(PATH).status_code == 200 and fast(node).served == 0
    assert c.get(PATH).status_code == 200 and fast(node).served == 1
    node.extensions["catalog_cache"].invalidate()  # the catalog state is due for a look
    assert c.get(PATH).status_code == 200 and fast(node).served == 1
    assert c.get(PATH).status_code == 200 and fast(node).served == 2
    # HEAD and other methods are the route's
    assert c.head(PATH).status_code == 200 and c.post(PATH).status_code == 405
    assert fast(node).served == 2


def test_a_metadata_change_in_this_process_is_served_at_once(node: Any, auth: Any) -> None:
    c = node.test_client()
    before = c.get(PATH)
    c.get(PATH)
    staff = {"Authorization": f"Bearer {auth.token('admin')}"}
    create_component(c, staff, "server")
    assert publish(c, staff, "server", "1.0", channels=["stable"]).status_code == 201
    after = c.get(PATH)
    assert after.status_code == 200
    assert json.loads(after.data)["signed"]["version"] > json.loads(before.data)["signed"]["version"]
    with node.app_context():
        from release_server.signing import services

        assert after.data == services.metadata_bytes("timestamp.json")


def test_answers_in_front_of_flask_are_counted(node: Any) -> None:
    from prometheus_client import REGISTRY

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        pytest.skip("counters live in the multiprocess files here")
    c = node.test_client()
    c.get(PATH)
    labels = {"method": "GET", "route": "/tuf/metadata/<name>", "status": "2xx"}
    requests0 = REGISTRY.get_sample_value("release_server_http_requests_total", labels) or 0
    bytes0 = REGISTRY.get_sample_value("release_server_bytes_served_total", {"route": "tuf_metadata"}) or 0
    served0 = fast(node).served
    r = c.get(PATH)
    assert fast(node).served == served0 + 1
    assert REGISTRY.get_sample_value("release_server_http_requests_total", labels) == requests0 + 1
    assert REGISTRY.get_sample_value("release_server_bytes_served_total",
                                     {"route": "tuf_metadata"}) == bytes0 + len(r.data)


def test_with_log_hot_path_the_route_answers_and_logs(app_config: dict, repo: None, caplog: Any) -> None:
    import logging

    caplog.set_level(logging.INFO, logger="release_server.request")
    loud = create_app({**app_config, "CATALOG_RECHECK_SECONDS": 3600.0, "LOG_HOT_PATH": True})
    try:
        c = loud.test_client()
        for _ in range(3):
            assert c.get(PATH).status_code == 200
        assert fast(loud).served == 0
        logged = [r for r in caplog.records if r.name == "release_server.request" and r.fields["path"] == PATH]
        assert len(logged) == 3 and all(r.levelno == logging.INFO for r in logged)
    finally:
        loud.extensions["seen_buffer"].stop()
        loud.extensions["db_engine"].dispose()
