"""The delta API: make and list patches to a release; bad input is a 4xx that changes nothing."""
from __future__ import annotations

import random

import pytest
from factories import create_component, make_tarball, publish

LIB = random.Random(5).randbytes(100_000)


@pytest.fixture
def tuf_repo(app, tmp_path):
    from release_server.db import db
    from release_server.signing import ceremony

    with app.app_context():
        ceremony.local_trial(db.session, tmp_path / "root-keys")
        db.commit()


def seed(client, headers):
    create_component(client, headers, "server")
    for v in ("1.0", "1.1"):
        assert publish(client, headers, "server", v, artifact=make_tarball({"lib.so": LIB, "v": v})).status_code == 201


def test_generate_then_list(client, auth, tuf_repo):
    pub = auth.headers("publisher")
    seed(client, pub)
    resp = client.post("/api/v1/components/server/releases/1.1/deltas", json={}, headers=pub)
    assert resp.status_code == 200, resp.json
    [item] = resp.json["items"]
    assert item["from_version"] == "1.0" and item["status"] == "ready"
    assert item["target_path"] == "server/deltas/1.0-1.1.rsdpatch"
    assert item["length"] < item["full_length"] * 0.8
    listed = client.get("/api/v1/components/server/releases/1.1/deltas", headers=auth.headers("support"))
    assert listed.status_code == 200 and listed.json["items"] == resp.json["items"]
    audit = client.get("/api/v1/audit", headers=auth.headers("admin")).json["items"]
    assert any(a["action"] == "release.deltas" for a in audit)


def test_bad_input_names_the_field_and_changes_nothing(client, auth, tuf_repo):
    pub = auth.headers("publisher")
    seed(client, pub)
    for body, field in (({"from_versions": ["9.9"]}, "from_versions"), ({"from_versions": ["1.1"]}, "from_versions"),
                        ({"from_versions": "1.0"}, "from_versions"), ({"force": "maybe"}, "force")):
        resp = client.post("/api/v1/components/server/releases/1.1/deltas", json=body, headers=pub)
        assert resp.status_code == 400, (body, resp.json)
        assert resp.json["error"]["field"] == field
    assert client.get("/api/v1/components/server/releases/1.1/deltas", headers=pub).json["items"] == []
    resp = client.post("/api/v1/components/server/releases/7.0/deltas", json={}, headers=pub)
    assert resp.status_code == 404 and resp.json["error"]["code"] == "unknown_release"
    resp = client.get("/api/v1/components/nope/releases/1.0/deltas", headers=pub)
    assert resp.status_code == 404


def test_report_byte_figures_are_validated(client, auth):
    from factories import enroll

    admin = auth.headers("admin")
    create_component(client, admin, "server")
    publish(client, admin, "server", "1.0")
    client.post("/api/v1/customers", json={"name": "Acme"}, headers=admin)
    inst = enroll(client, admin, "Acme")
    headers = {"Authorization": f"Bearer {inst['token']}"}
    report = {"id": "6f1c2b1e-8d7a-4c1e-9a53-0d4f1c2b3a4d", "component": "server", "to_version": "1.0",
              "outcome": "success", "bytes_downloaded": -1, "bytes_full": 10}
    resp = client.post("/api/v1/reports", json={"reports": [report]}, headers=headers)
    assert resp.status_code == 400 and "bytes_downloaded" in resp.json["error"]["field"]
    resp = client.post("/api/v1/reports", json={"reports": [{**report, "bytes_downloaded": 4}]}, headers=headers)
    assert resp.status_code in (200, 201, 202), resp.json
    figures = client.get("/api/v1/fleet/transfer", headers=admin).json
    assert figures["total"] == {"component": None, "version": None, "updates": 1, "bytes_downloaded": 4,
                                "bytes_full": 10, "bytes_saved": 6}
