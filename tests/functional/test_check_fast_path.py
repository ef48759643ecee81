"""The update check answered in front of Flask: the route's answer, side effects and errors, never stale."""
from __future__ import annotations

import json
import os
from typing import Any

import pytest
from factories import create_component, enroll, publish
from sqlalchemy import select

from release_server import close_app, create_app
from release_server.db import db
from release_server.fleet.models import InstalledComponent, Installation

PATH = "/api/v1/updates/check"


@pytest.fixture
def node(app_config: dict) -> Any:
    """A server process whose catalog state is rechecked once an hour (so its caches stay fresh)."""
    application = create_app({**app_config, "CATALOG_RECHECK_SECONDS": 3600.0})
    yield application
    close_app(application)


@pytest.fixture
def fleet(node: Any) -> dict[str, Any]:
    """A published release (server 1.0 and 1.1), one installation on 1.0 and one on 1.1."""
    from conftest import Auth

    c = node.test_client()
    staff = Auth(node).headers("admin")
    assert c.post("/api/v1/customers", json={"name": "Acme"}, headers=staff).status_code == 201
    assert create_component(c, staff, "server").status_code == 201
    for version in ("1.0", "1.1"):
        assert publish(c, staff, "server", version, channels=["stable"], changelog=f"* {version}").status_code == 201
    behind = enroll(c, staff, "Acme", name="behind", installed={"server": "1.0"})
    current = enroll(c, staff, "Acme", name="current", installed={"server": "1.1"})
    return {"client": c, "staff": staff, "behind": behind, "current": current}


def fast(app: Any) -> Any:
    return app.extensions["check_fast_path"]


def bearer(who: dict[str, Any], **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {who['token']}", **extra}


def no_route(node: Any, monkeypatch: Any) -> None:
    def refuse(**_kw: Any) -> Any:
        raise AssertionError("the Flask route was called")

    monkeypatch.setitem(node.view_functions, "api_v1.check", refuse)


@pytest.mark.parametrize("who,installed", [("current", {"server": "1.1"}), ("behind", {"server": "1.0"})],
                         ids=["nothing-new", "offer"])
def test_a_cached_installation_gets_the_routes_answer_in_front_of_flask(node: Any, fleet: dict, monkeypatch: Any,
                                                                        who: str, installed: dict) -> None:
    c, inst = fleet["client"], fleet[who]
    body = {"installed": installed, "agent_version": "2.0"}
    node.extensions["catalog_cache"].invalidate()  # the state row is due for a look: the route answers
    via_flask = c.post(PATH, json=body, headers=bearer(inst))
    assert via_flask.status_code == 200, via_flask.json
    assert fast(node).served == 0
    no_route(node, monkeypatch)
    credentials = node.extensions["installation_auth_cache"]
    credentials.clear()
    misses = credentials.misses
    r = c.post(PATH, json=body, headers=bearer(inst))  # a credential miss: read here, in one query
    assert r.status_code == 200 and fast(node).served == 1 and credentials.misses == misses + 1
    assert r.data == via_flask.data
    r = c.post(PATH, json=body, headers=bearer(inst, **{"X-Request-ID": "lb-7.1"}))  # and now a hit
    assert r.status_code == 200 and fast(node).served == 2 and credentials.misses == misses + 1
    assert r.data == via_flask.data
    assert r.headers["Content-Type"] == via_flask.headers["Content-Type"] == "application/json"
    assert r.headers["X-Request-ID"] == "lb-7.1"
    assert len(c.post(PATH, json=body, headers=bearer(inst, **{"X-Request-ID": "no spaces"}))
               .headers["X-Request-ID"]) == 32
    answer = json.loads(r.data)
    assert answer["poll_interval"] == node.config["POLL_INTERVAL_SECONDS"]
    if who == "behind":
        (offer,) = answer["offers"]
        assert offer["component"] == "server" and offer["version"] == "1.1" and offer["from_version"] == "1.0"
        assert offer["changelog"].endswith("* 1.1") and "1.0" not in offer["changelog"] and offer["downgrade"] is False
    else:
        assert answer["offers"] == []


def test_the_fast_answer_notes_the_check_like_the_route(node: Any, fleet: dict) -> None:
    c, inst = fleet["client"], fleet["current"]
    c.post(PATH, json={"installed": {"server": "1.1"}}, headers=bearer(inst))
    node.extensions["seen_buffer"].flush()
    served = fast(node).served
    # the agent reports a version it moved to by hand, and its agent version
    r = c.post(PATH, json={"installed": {"server": "1.0"}, "agent_version": "2.5"}, headers=bearer(inst))
    assert r.status_code == 200 and fast(node).served == served + 1
    assert json.loads(r.data)["offers"][0]["version"] == "1.1"  # offered from what the request says
    node.extensions["seen_buffer"].flush()
    with node.app_context():
        s = db.new_session(write=False)
        try:
            row = s.get(Installation, inst["installation_id"])
            assert row.agent_version == "2.5" and row.last_seen_at is not None and row.state == "updating"
            assert dict(s.execute(select(InstalledComponent.component, InstalledComponent.version).where(
                InstalledComponent.installation_id == inst["installation_id"])).all()) == {"server": "1.0"}
        finally:
            s.close()


def test_everything_the_fast_path_cannot_vouch_for_gets_the_routes_answer(node: Any, fleet: dict) -> None:
    c, inst = fleet["client"], fleet["current"]
    ok = {"installed": {"server": "1.1"}}
    assert c.post(PATH, json=ok, headers=bearer(inst)).status_code == 200  # after the enrollment: the route
    assert c.post(PATH, json=ok, headers=bearer(inst)).status_code == 200
    served = fast(node).served
    assert served == 1
    cases = [
        ({}, ok, None, 401, "Authorization"),
        ({"Authorization": "Bearer rsi_abcdefgh_" + "x" * 30}, ok, None, 401, "Authorization"),
        ({"Authorization": "Basic abc"}, ok, None, 401, "Authorization"),
        (bearer(inst), {"installed": {"server": "not a version"}}, None, 400, "installed"),
        (bearer(inst), {"installed": {}, "surprise": 1}, None, 400, "surprise"),
        (bearer(inst), {"installed": {}, "state": "asleep"}, None, 400, "state"),
        (bearer(inst), None, b"{not json", 400, "body"),
        (bearer(inst), None, b"[]", 400, "body"),
    ]
    for headers, body, raw, status, field in cases:
        if raw is not None:
            r = c.post(PATH, data=raw, headers=headers, content_type="application/json")
        else:
            r = c.post(PATH, json=body, headers=headers)
        assert r.status_code == status, (headers, body, raw, r.json)
        assert r.json["error"]["field"] is not None and field in r.json["error"]["field"], r.json
    r = c.post(PATH, data=json.dumps(ok), headers=bearer(inst), content_type="text/plain")
    assert r.status_code == 415 and r.json["error"]["field"] == "body"
    big = b'{"installed": {}, "agent_version": "' + b"x" * (1024 * 1024 + 10) + b'"}'
    r = c.post(PATH, data=big, headers=bearer(inst), content_type="application/json")
    assert r.status_code == 413 and r.json["error"]["field"] == "body"
    assert c.get(PATH, headers=bearer(inst)).status_code == 405
    assert fast(node).served == served  # every one of them was the route's
    assert c.post(PATH, json=ok, headers=bearer(inst)).status_code == 200
    assert fast(node).served == served + 1


def test_a_revoked_token_is_refused_at_once_in_this_process(node: Any, fleet: dict) -> None:
    c, inst = fleet["client"], fleet["current"]
    ok = {"installed": {"server": "1.1"}}
    for _ in range(2):
        assert c.post(PATH, json=ok, headers=bearer(inst)).status_code == 200
    assert fast(node).served == 1
    r = c.post(f"/api/v1/installations/{inst['installation_id']}/revoke", headers=fleet["staff"])
    assert r.status_code == 200
    refused = c.post(PATH, json=ok, headers=bearer(inst))
    assert refused.status_code == 401 and refused.json["error"]["field"] == "Authorization"
    assert fast(node).served == 1


def test_a_revocation_on_another_node_is_refused_after_the_state_check(app_config: dict, fleet: dict,
                                                                      node: Any) -> None:
    """The other node's revocation reaches this node when its catalog state is next read."""
    c, inst = fleet["client"], fleet["current"]
    ok = {"installed": {"server": "1.1"}}
    for _ in range(2):
        assert c.post(PATH, json=ok, headers=bearer(inst)).status_code == 200
    other = create_app({**app_config, "CATALOG_RECHECK_SECONDS": 3600.0})
    try:
        assert other.test_client().post(f"/api/v1/installations/{inst['installation_id']}/revoke",
                                        headers=fleet["staff"]).status_code == 200
    finally:
        close_app(other)
    node.extensions["catalog_cache"].invalidate()  # the once-per-period look at the state is due
    served = fast(node).served
    assert c.post(PATH, json=ok, headers=bearer(inst)).status_code == 401
    assert c.post(PATH, json=ok, headers=bearer(inst)).status_code == 401
    assert fast(node).served == served


def test_a_release_published_in_this_process_is_offered_at_once(node: Any, fleet: dict) -> None:
    c, inst = fleet["client"], fleet["current"]
    ok = {"installed": {"server": "1.1"}}
    for _ in range(2):
        assert json.loads(c.post(PATH, json=ok, headers=bearer(inst)).data)["offers"] == []
    assert publish(c, fleet["staff"], "server", "1.2", channels=["stable"]).status_code == 201
    assert [o["version"] for o in json.loads(c.post(PATH, json=ok, headers=bearer(inst)).data)["offers"]] == ["1.2"]
    assert [o["version"] for o in json.loads(c.post(PATH, json=ok, headers=bearer(inst)).data)["offers"]] == ["1.2"]
    assert fast(node).served >= 2


def test_fast_answers_are_counted(node: Any, fleet: dict) -> None:
    from prometheus_client import REGISTRY

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        pytest.skip("counters live in the multiprocess files here")
    c, inst = fleet["client"], fleet["current"]
    ok = {"installed": {"server": "1.1"}}
    c.post(PATH, json=ok, headers=bearer(inst))
    labels = {"method": "POST", "route": PATH, "status": "2xx"}
    requests0 = REGISTRY.get_sample_value("release_server_http_requests_total", labels) or 0
    checks0 = REGISTRY.get_sample_value("release_server_checks_total", {"result": "nothing_new"}) or 0
    served0 = fast(node).served
    c.post(PATH, json=ok, headers=bearer(inst))
    assert fast(node).served == served0 + 1
    assert REGISTRY.get_sample_value("release_server_http_requests_total", labels) == requests0 + 1
    assert REGISTRY.get_sample_value("release_server_checks_total",
                                     {"result": "nothing_new"}) == checks0 + 1


def test_with_log_hot_path_the_route_answers_and_logs(app_config: dict, caplog: Any) -> None:
    import logging

    from conftest import Auth

    caplog.set_level(logging.INFO, logger="release_server.request")
    loud = create_app({**app_config, "CATALOG_RECHECK_SECONDS": 3600.0, "LOG_HOT_PATH": True})
    try:
        c = loud.test_client()
        staff = Auth(loud).headers("admin")
        assert c.post("/api/v1/customers", json={"name": "Acme"}, headers=staff).status_code == 201
        inst = enroll(c, staff, "Acme")
        for _ in range(3):
            assert c.post(PATH, json={"installed": {}}, headers=bearer(inst)).status_code == 200
        assert fast(loud).served == 0
        assert sum(1 for r in caplog.records if getattr(r, "fields", {}).get("path") == PATH) == 3
    finally:
        close_app(loud)
