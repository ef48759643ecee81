"""Reports of an operator's rollback: their own outcome, no ticket, not counted against the rollout."""
from __future__ import annotations

import uuid

import pytest
from factories import create_component, enroll, publish


@pytest.fixture
def staff(auth):
    return auth.headers("admin")


@pytest.mark.parametrize("sent", [
    {"outcome": "operator_rollback"},
    {"outcome": "rolled_back", "details": {"kind": "operator_rollback"}},  # as earlier agents reported it
])
def test_operator_rollback_is_no_failure(client, staff, app, sent):
    from sqlalchemy import func, select

    from release_server.db import db
    from release_server.fleet.models import UpdateReport
    from release_server.support.models import FailureGroup, Ticket

    create_component(client, staff, "server")
    publish(client, staff, "server", "1.0", channels=["stable"])
    publish(client, staff, "server", "1.1", channels=["stable"])
    assert client.post("/api/v1/customers", json={"name": "Acme"}, headers=staff).status_code == 201
    ro = client.post("/api/v1/rollouts", headers=staff, json={
        "component": "server", "version": "1.1", "channel": "stable", "start": True, "min_attempts": 1,
        "failure_threshold": 0.5, "schedule": [{"percent": 100}]})
    assert ro.status_code == 201, ro.json
    inst = enroll(client, staff, "Acme", installed={"server": "1.1"})
    body = {"id": str(uuid.uuid4()), "component": "server", "from_version": "1.1", "to_version": "1.0", **sent}
    r = client.post("/api/v1/reports", json={"reports": [body]}, headers={"Authorization": f"Bearer {inst['token']}"})
    assert r.status_code == 200 and r.json["accepted"] == [body["id"]]
    with app.app_context():
        assert db.session.scalar(select(UpdateReport.outcome)) == "operator_rollback"
        assert db.session.scalar(select(func.count(Ticket.id))) == 0
        assert db.session.scalar(select(func.count(FailureGroup.id))) == 0
    got = client.get(f"/api/v1/rollouts/{ro.json['id']}", headers=staff).json
    assert (got["state"], got["failures"]) == ("running", 0)
    assert client.get(f"/api/v1/installations/{inst['installation_id']}", headers=staff).json["versions"]["server"] \
        == "1.0"
