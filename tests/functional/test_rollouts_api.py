"""Staged rollouts, automatic halts, pins, restricted releases and fleet figures over the API."""
from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from factories import create_component, enroll, publish

from release_server.rollouts.policy import bucket


@pytest.fixture
def staff(auth):
    return auth.headers("publisher")


@pytest.fixture
def admin(auth):
    return auth.headers("admin")


@pytest.fixture
def world(client, staff, admin):
    for name in ("Acme", "Globex"):
        assert client.post("/api/v1/customers", json={"name": name}, headers=admin).status_code == 201
    create_component(client, staff, "server")
    assert publish(client, staff, "server", "1.0", channels=["stable"]).status_code == 201
    return client


def bearer(inst):
    return {"Authorization": f"Bearer {inst['token']}"}


def check(client, inst, installed):
    r = client.post("/api/v1/updates/check", json={"installed": installed}, headers=bearer(inst))
    assert r.status_code == 200, r.json
    return [(o["component"], o["version"]) for o in r.json["offers"]]


def report(client, inst, outcome, version="2.0"):
    body = {"reports": [{"id": str(uuid.uuid4()), "component": "server", "from_version": "1.0", "to_version": version,
                         "outcome": outcome, "stage": None if outcome == "success" else "health_check",
                         "error_code": None if outcome == "success" else "health_check_failed"}]}
    r = client.post("/api/v1/reports", json=body, headers=bearer(inst))
    assert r.status_code == 200, r.json


def test_rollout_lifecycle_is_staged_and_audited(world, staff, admin, app):
    client = world
    publish(client, staff, "server", "2.0", channels=["stable"])
    insts = [enroll(client, admin, "Acme", name=f"i{i}", installed={"server": "1.0"}) for i in range(12)]
    r = client.post("/api/v1/rollouts", json={"component": "server", "version": "2.0", "channel": "stable",
                                              "schedule": [{"percent": 10, "min_hours": 24},
                                                           {"percent": 50, "min_hours": 24}, {"percent": 100}]},
                    headers=staff)
    assert r.status_code == 201 and r.json["state"] == "draft"
    rid = r.json["id"]
    release_id = _release_id(app, "server", "2.0")
    # a draft offers nothing
    assert all(check(client, i, {"server": "1.0"}) == [] for i in insts)
    r = client.post(f"/api/v1/rollouts/{rid}/start", json={}, headers=staff)
    assert r.json["state"] == "running" and r.json["percent"] == 10
    for i in insts:
        expected = [("server", "2.0")] if bucket(i["installation_id"], release_id) < 1000 else []
        assert check(client, i, {"server": "1.0"}) == expected
    assert client.post(f"/api/v1/rollouts/{rid}/percentage", json={"percent": 5}, headers=staff).status_code == 400
    r = client.post(f"/api/v1/rollouts/{rid}/percentage", json={"percent": 60}, headers=staff)
    assert r.json["percent"] == 60 and r.json["phase"] == 1
    for i in insts:
        expected = [("server", "2.0")] if bucket(i["installation_id"], release_id) < 6000 else []
        assert check(client, i, {"server": "1.0"}) == expected
    assert client.post(f"/api/v1/rollouts/{rid}/pause", headers=staff).json["state"] == "paused"
    assert all(check(client, i, {"server": "1.0"}) == [] for i in insts)
    assert client.post(f"/api/v1/rollouts/{rid}/pause", headers=staff).status_code == 409
    assert client.post(f"/api/v1/rollouts/{rid}/resume", headers=staff).json["state"] == "running"
    assert client.post(f"/api/v1/rollouts/{rid}/complete", headers=staff).json["percent"] == 100
    assert all(check(client, i, {"server": "1.0"}) == [("server", "2.0")] for i in insts)
    actions = {e["action"] for e in client.get("/api/v1/audit?limit=500", headers=admin).json["items"]}
    assert {"rollout.create", "rollout.start", "rollout.widen", "rollout.pause", "rollout.resume",
            "rollout.complete"} <= actions
    assert client.post("/api/v1/rollouts", json={"component": "server", "version": "2.0", "channel": "stable"},
                       headers=staff).status_code == 409
    r = client.post("/api/v1/rollouts", json={"component": "server", "version": "2.0", "channel": "beta"},
                    headers=staff)
    assert r.status_code == 400 and r.json["error"]["field"] == "channel"


def _release_id(app, component, version):
    from release_server.db import db
    from release_server.releases.services import get_release

    with app.app_context():
        return get_release(db.session, component, version).id


def test_schedule_advances_only_while_healthy(world, staff, app):
    client = world
    publish(client, staff, "server", "2.0", channels=["stable"])
    r = client.post("/api/v1/rollouts", json={"component": "server", "version": "2.0", "start": True,
                                              "schedule": [{"percent": 10, "min_hours": 1},
                                                           {"percent": 100, "min_hours": 0}],
                                              "min_attempts": 2, "failure_threshold": 0.4}, headers=staff)
    rid = r.json["id"]
    from release_server.db import db
    from release_server.models_common import utcnow
    from release_server.rollouts import services

    with app.app_context():
        assert services.advance(db.session, utcnow() + timedelta(minutes=30)) == []
        moved = services.advance(db.session, utcnow() + timedelta(hours=2))
        db.session.commit()
        assert [m.id for m in moved] == [rid]
        ro = services.get_rollout(db.session, rid)
        assert ro.share == 10_000 and ro.phase == 1
        ro.failures, ro.attempts = 1, 2  # 50 % > 40 %: unhealthy, never advances
        ro.share, ro.phase = 1000, 0
        db.session.commit()
        assert services.advance(db.session, utcnow() + timedelta(hours=5)) == []


@pytest.mark.parametrize("last_outcome, halts", [("success", False), ("failed", True)])
def test_automatic_halt_exactly_past_the_threshold(world, staff, admin, last_outcome, halts):
    """threshold 10 %, min 20 attempts: 2/20 = 10 % is not above it; a 21st attempt failing (3/21) is."""
    client = world
    publish(client, staff, "server", "2.0", channels=["stable"])
    rid = client.post("/api/v1/rollouts", json={"component": "server", "version": "2.0", "start": True,
                                                "failure_threshold": 0.1, "min_attempts": 20},
                      headers=staff).json["id"]
    client.post(f"/api/v1/rollouts/{rid}/percentage", json={"percent": 100}, headers=staff)
    insts = [enroll(client, admin, "Acme", name=f"i{i}", installed={"server": "1.0"}) for i in range(21)]
    for inst, outcome in zip(insts, ["rolled_back"] * 2 + ["success"] * 18):
        report(client, inst, outcome)
    ro = client.get(f"/api/v1/rollouts/{rid}", headers=staff).json
    assert (ro["attempts"], ro["failures"], ro["state"]) == (20, 2, "running")
    report(client, insts[20], last_outcome)
    ro = client.get(f"/api/v1/rollouts/{rid}", headers=staff).json
    assert ro["attempts"] == 21
    if not halts:
        assert ro["state"] == "running"
        return
    assert ro["state"] == "halted" and ro["halted_at"]
    assert ro["halt_figures"]["failures"] == 3 and ro["halt_figures"]["attempts"] == 21
    assert ro["halt_figures"]["automatic"] is True
    # a halted rollout offers nothing more
    late = enroll(client, admin, "Acme", name="late", installed={"server": "1.0"})
    assert check(client, late, {"server": "1.0"}) == []


def test_restricted_release_never_leaks(world, staff, admin):
    client = world
    acme = enroll(client, admin, "Acme", name="acme-hq", installed={"server": "1.0"})
    globex = enroll(client, admin, "Globex", name="globex-hq", installed={"server": "1.0"})
    r = publish(client, staff, "server", "1.0.1+acme", channels=["stable"], restricted_customers=["Acme"])
    assert r.status_code == 201, r.json
    assert check(client, acme, {"server": "1.0"}) == [("server", "1.0.1+acme")]
    assert check(client, globex, {"server": "1.0"}) == []
    # also for one installation only
    other_acme = enroll(client, admin, "Acme", name="acme-branch", installed={"server": "1.0"})
    publish(client, staff, "server", "1.0.2", channels=["stable"],
            restricted_installations=[other_acme["installation_id"]])
    assert check(client, other_acme, {"server": "1.0"}) == [("server", "1.0.2")]
    assert check(client, globex, {"server": "1.0"}) == []
    assert check(client, acme, {"server": "1.0"}) == [("server", "1.0.1+acme")]
    r = publish(client, staff, "server", "1.0.3", restricted_customers=["Nobody Inc"])
    assert r.status_code == 404 and r.json["error"]["field"] == "restricted_customers.0"
    got = client.get("/api/v1/components/server/releases/1.0.1+acme/restrictions", headers=staff).json
    assert got == {"customers": ["Acme"], "installations": []}


def test_pins_by_installation_tag_and_customer(world, staff, admin):
    client = world
    for v in ("2.4.0", "2.4.5", "2.40.0", "3.0"):
        publish(client, staff, "server", v, channels=["stable"])
    a = enroll(client, admin, "Acme", name="a", installed={"server": "1.0"}, tags=["lts"])
    b = enroll(client, admin, "Acme", name="b", installed={"server": "1.0"})
    c = enroll(client, admin, "Globex", name="c", installed={"server": "1.0"})
    assert client.post("/api/v1/pins", json={"scope": "customer", "value": "Acme", "component": "server",
                                             "prefix": "2.4"}, headers=staff).status_code == 201
    assert check(client, b, {"server": "1.0"}) == [("server", "2.4.5")]
    assert check(client, c, {"server": "1.0"}) == [("server", "3.0")]
    client.post("/api/v1/pins", json={"scope": "tag", "value": "lts", "component": "server", "version": "2.4.0"},
                headers=staff)
    assert check(client, a, {"server": "1.0"}) == [("server", "2.4.0")]
    pin = client.post("/api/v1/pins", json={"scope": "installation", "value": a["installation_id"],
                                            "component": "server", "prefix": "3"}, headers=staff).json
    assert check(client, a, {"server": "1.0"}) == [("server", "3.0")]
    assert client.delete(f"/api/v1/pins/{pin['id']}", headers=staff).status_code == 200
    assert check(client, a, {"server": "1.0"}) == [("server", "2.4.0")]
    bad = client.post("/api/v1/pins", json={"scope": "tag", "value": "x", "component": "server", "prefix": "2.4",
                                            "version": "2.4.1"}, headers=staff)
    assert bad.status_code == 400
    bad = client.post("/api/v1/pins", json={"scope": "tag", "value": "x", "component": "server", "prefix": "v2"},
                      headers=staff)
    assert bad.status_code == 400 and bad.json["error"]["field"] == "prefix"


def test_stepping_stone_and_dependency_order_over_the_api(world, staff, admin):
    client = world
    create_component(client, staff, "db-schema")
    publish(client, staff, "db-schema", "5.0", channels=["stable"])
    publish(client, staff, "db-schema", "6.0", channels=["stable"])
    publish(client, staff, "server", "1.5", channels=["stable"])
    publish(client, staff, "server", "2.0", channels=["stable"], min_from_version="1.5",
            requires={"db-schema": ">=6"})
    inst = enroll(client, admin, "Acme", installed={"server": "1.0", "db-schema": "5.0"})
    assert check(client, inst, {"server": "1.0", "db-schema": "5.0"}) == [("db-schema", "6.0"), ("server", "1.5")]
    assert check(client, inst, {"server": "1.5", "db-schema": "5.0"}) == [("db-schema", "6.0"), ("server", "2.0")]
    assert check(client, inst, {"server": "1.5", "db-schema": "6.0"}) == [("server", "2.0")]


def test_yanked_installed_release_is_offered_the_newest_good_one(world, staff, admin):
    client = world
    publish(client, staff, "server", "1.1", channels=["stable"])
    inst = enroll(client, admin, "Acme", installed={"server": "1.1"})
    client.post("/api/v1/components/server/releases/1.1/yank", json={"reason": "data loss"}, headers=staff)
    r = client.post("/api/v1/updates/check", json={"installed": {"server": "1.1"}}, headers=bearer(inst)).json
    (offer,) = r["offers"]
    assert offer["version"] == "1.0" and offer["downgrade"] is True


def test_fleet_figures(world, staff, admin):
    client = world
    publish(client, staff, "server", "2.0", channels=["stable"])
    insts = [enroll(client, admin, "Acme", name=f"n{i}", installed={"server": "1.0"}) for i in range(3)]
    report(client, insts[0], "success")
    r = client.get("/api/v1/fleet/versions", headers=staff).json
    assert {(i["version"], i["installations"]) for i in r["items"]} == {("1.0", 2), ("2.0", 1)}
    assert r["total"] == 3 and r["stale"] == 0
    days = client.get("/api/v1/fleet/adoption?component=server&days=3", headers=staff).json["days"]
    assert len(days) == 3 and days[-1]["versions"] == {"1.0": 2, "2.0": 1}
    rid = client.post("/api/v1/rollouts", json={"component": "server", "version": "2.0", "start": True},
                      headers=staff).json["id"]
    report(client, insts[1], "rolled_back")
    fig = client.get(f"/api/v1/rollouts/{rid}/figures", headers=staff).json
    assert fig["days"][-1]["attempts"] == 2 and fig["days"][-1]["failures"] == 1
    assert client.get("/api/v1/fleet/adoption?component=nope", headers=staff).status_code == 404


def test_rollout_cli(world, staff, runner, admin):
    publish(world, staff, "server", "2.0", channels=["stable"])
    r = runner.invoke(args=["rollouts", "create", "--component", "server", "--version", "2.0",
                            "--schedule", "5:24,50:24,100:0", "--start"])
    assert r.exit_code == 0, r.output
    assert "running, 5%" in r.output
    rid = r.output.split()[1].rstrip(":")
    assert "running, 25%" in runner.invoke(args=["rollouts", "set", rid, "25"]).output
    assert "paused" in runner.invoke(args=["rollouts", "pause", rid]).output
    r = runner.invoke(args=["rollouts", "pause", rid])
    assert r.exit_code == 1 and "cannot pause a rollout that is paused" in r.output
    r = runner.invoke(args=["rollouts", "halt", rid, "--reason", "bad reports"])
    assert r.exit_code == 0 and "halted: bad reports" in r.output
    r = runner.invoke(args=["rollouts", "create", "--component", "server", "--version", "2.0", "--schedule", "x"])
    assert r.exit_code == 2
    assert runner.invoke(args=["pins", "add", "--scope", "tag", "--value", "lts", "--component", "server",
                               "--prefix", "2.4"]).exit_code == 0
    assert '"pin": "2.4"' in runner.invoke(args=["pins", "list"]).output
    actions = [e["action"] for e in world.get("/api/v1/audit?limit=100", headers=admin).json["items"]]
    assert actions.count("rollout.create") == 1 and "rollout.halt" in actions and "pin.add" in actions
