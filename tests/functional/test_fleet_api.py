"""Enrollment, installations, the check endpoint and update reports over the API."""
from __future__ import annotations

import time
import uuid

import pytest
from factories import create_component, enroll, publish


@pytest.fixture
def staff(auth):
    return auth.headers("admin")


@pytest.fixture
def acme(client, staff):
    assert client.post("/api/v1/customers", json={"name": "Acme", "contact_email": "it@acme.example"},
                       headers=staff).status_code == 201
    return "Acme"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_enrollment_token_limits(client, staff, acme):
    tok = client.post("/api/v1/customers/Acme/enrollment-tokens", json={"max_uses": 1}, headers=staff).json
    assert tok["token"].startswith("rse_") and tok["uses"] == 0
    body = {"enrollment_token": tok["token"], "name": "hq", "installed": {"server": "1.0"}}
    first = client.post("/api/v1/enroll", json=body)
    assert first.status_code == 201
    assert first.json["token"].startswith("rsi_") and first.json["customer"] == "Acme"
    again = client.post("/api/v1/enroll", json=body)
    assert again.status_code == 401 and again.json["error"]["field"] == "enrollment_token"
    assert "used up" in again.json["error"]["message"]
    bad = client.post("/api/v1/enroll", json={**body, "enrollment_token": "rse_abcdefgh_" + "x" * 30})
    assert bad.status_code == 401
    tok2 = client.post("/api/v1/customers/Acme/enrollment-tokens", json={}, headers=staff).json
    assert client.delete(f"/api/v1/enrollment-tokens/{tok2['prefix']}", headers=staff).status_code == 200
    r = client.post("/api/v1/enroll", json={**body, "enrollment_token": tok2["token"]})
    assert r.status_code == 401 and "revoked" in r.json["error"]["message"]
    past = client.post("/api/v1/customers/Acme/enrollment-tokens", json={"expires_at": "2001-01-01T00:00:00Z"},
                       headers=staff)
    assert past.status_code == 400 and past.json["error"]["field"] == "expires_at"


@pytest.mark.parametrize("patch, field", [
    ({"channel": "Nope!"}, "channel"), ({"installed": {"server": "x.y"}}, "installed"),
    ({"maintenance_window": "25:00-26:00"}, "maintenance_window"), ({"name": ""}, "name"),
])
def test_enroll_bad_input(client, staff, acme, patch, field):
    tok = client.post("/api/v1/customers/Acme/enrollment-tokens", json={}, headers=staff).json
    r = client.post("/api/v1/enroll", json={"enrollment_token": tok["token"], "name": "hq", **patch})
    assert r.status_code == 400 and r.json["error"]["field"].startswith(field)


def test_check_offers_newest_on_channel_with_changelog(client, staff, acme):
    create_component(client, staff, "server")
    for v, ch in (("1.0", ["stable"]), ("1.1", ["stable"]), ("1.2", ["stable"]), ("2.0b1", ["beta"])):
        publish(client, staff, "server", v, channels=ch, changelog=f"Changes of {v}")
    inst = enroll(client, staff, "Acme", installed={"server": "1.0"})
    h = bearer(inst["token"])
    r = client.post("/api/v1/updates/check", json={"installed": {"server": "1.0"}}, headers=h)
    assert r.status_code == 200
    (offer,) = r.json["offers"]
    assert offer["version"] == "1.2" and offer["from_version"] == "1.0"
    assert offer["target_path"] == "server/server-1.2.tar.gz" and offer["length"] > 0
    assert "Changes of 1.2" in offer["changelog"] and "Changes of 1.1" in offer["changelog"]
    assert "Changes of 1.0" not in offer["changelog"]
    assert r.json["poll_interval"] > 0
    nothing = client.post("/api/v1/updates/check", json={"installed": {"server": "1.2"}}, headers=h)
    assert nothing.json["offers"] == []
    # the installation's token works only for installation routes
    assert client.get("/api/v1/components", headers=h).status_code == 403


def test_check_rejects_bad_input_and_staff_tokens(client, staff, acme):
    inst = enroll(client, staff, "Acme")
    h = bearer(inst["token"])
    r = client.post("/api/v1/updates/check", json={"installed": {"server": "not-a-version"}}, headers=h)
    assert r.status_code == 400 and r.json["error"]["field"].startswith("installed")
    assert client.post("/api/v1/updates/check", json={}, headers=staff).status_code == 403
    assert client.post("/api/v1/updates/check", json={}).status_code == 401


def report(**kw):
    base = {"id": str(uuid.uuid4()), "component": "server", "from_version": "1.0", "to_version": "1.1",
            "outcome": "success", "duration_seconds": 3.5}
    base.update(kw)
    return base


def test_reports_are_idempotent_and_update_inventory(client, staff, acme, app):
    create_component(client, staff, "server")
    publish(client, staff, "server", "1.1")
    inst = enroll(client, staff, "Acme", installed={"server": "1.0"})
    h = bearer(inst["token"])
    ok = report()
    failed = report(from_version="1.1", to_version="1.2", outcome="rolled_back", stage="health_check", error_code="health_check_failed",
                    log_tail="x" * 1000)
    r = client.post("/api/v1/reports", json={"reports": [ok, failed]}, headers=h)
    assert r.status_code == 200
    assert sorted(r.json["accepted"]) == sorted([ok["id"], failed["id"]]) and r.json["duplicates"] == []
    again = client.post("/api/v1/reports", json={"reports": [ok, ok]}, headers=h)
    assert again.json["accepted"] == [] and again.json["duplicates"] == [ok["id"], ok["id"]]
    got = client.get(f"/api/v1/installations/{inst['installation_id']}", headers=staff).json
    assert got["versions"] == {"server": "1.1"}
    reps = client.get(f"/api/v1/installations/{inst['installation_id']}/reports", headers=staff).json["items"]
    assert len(reps) == 2 and {x["outcome"] for x in reps} == {"success", "rolled_back"}
    bad = client.post("/api/v1/reports", json={"reports": [report(outcome="exploded")]}, headers=h)
    assert bad.status_code == 400 and bad.json["error"]["field"].startswith("reports.0.outcome")


def test_revoked_installation_refused_within_cache_lifetime(app, client, staff, acme):
    app.extensions["catalog_cache"].recheck_seconds = 0.5
    inst = enroll(client, staff, "Acme")
    h = bearer(inst["token"])
    assert client.post("/api/v1/updates/check", json={}, headers=h).status_code == 200  # now cached
    assert client.post(f"/api/v1/installations/{inst['installation_id']}/revoke", headers=staff).status_code == 200
    deadline = time.monotonic() + 5
    status = 200
    while time.monotonic() < deadline:
        status = client.post("/api/v1/updates/check", json={}, headers=h).status_code
        if status == 401:
            break
        time.sleep(0.1)
    assert status == 401


def test_installation_filters_and_settings(client, staff, acme):
    a = enroll(client, staff, "Acme", name="a", installed={"server": "1.0"}, tags=["pilot"])
    enroll(client, staff, "Acme", name="b", installed={"server": "2.0"})
    r = client.get("/api/v1/installations?component=server&version=1.0", headers=staff).json
    assert [i["name"] for i in r["items"]] == ["a"]
    assert [i["name"] for i in client.get("/api/v1/installations?tag=pilot", headers=staff).json["items"]] == ["a"]
    r = client.patch(f"/api/v1/installations/{a['installation_id']}", json={"channel": "beta", "tags": ["x"]},
                     headers=staff)
    assert r.status_code == 200 and r.json["channel"] == "beta" and r.json["tags"] == ["x"]
    r = client.patch(f"/api/v1/installations/{a['installation_id']}", json={"channel": "nightly"}, headers=staff)
    assert r.status_code == 404 and r.json["error"]["field"] == "channels"
    assert client.get("/api/v1/installations/nope", headers=staff).status_code == 404
    r = client.get("/api/v1/installations?health=up_to_date", headers=staff).json
    assert r["total"] == 2
