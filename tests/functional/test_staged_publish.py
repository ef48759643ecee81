"""Publishing with a staged rollout is one step; a channel can require it; nothing reaches the whole channel."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from factories import create_component, enroll, make_tarball, publish

ROLLOUT = {"schedule": [{"percent": 10, "min_hours": 24}, {"percent": 100, "min_hours": 0}],
           "failure_threshold": 0.2, "min_attempts": 5}


@pytest.fixture
def pub(auth):
    return auth.headers("publisher")


def test_publish_with_a_rollout_creates_and_starts_it_in_the_same_step(client, pub, auth):
    assert create_component(client, pub, "server").status_code == 201
    resp = publish(client, pub, "server", "1.0", channels=["stable", "beta"], rollout=ROLLOUT)
    assert resp.status_code == 201, resp.json
    rollouts = client.get("/api/v1/rollouts", headers=pub).json["items"]
    assert sorted((r["channel"], r["state"], r["percent"]) for r in rollouts) == [
        ("beta", "running", 10.0), ("stable", "running", 10.0)]
    assert publish(client, pub, "server", "1.1", rollout={**ROLLOUT, "start": False}).status_code == 201
    (draft,) = [r for r in client.get("/api/v1/rollouts", headers=pub).json["items"] if r["version"] == "1.1"]
    assert draft["state"] == "draft"


def test_a_bad_rollout_refuses_the_whole_publish(client, pub, app):
    from release_server.storage import get_storage

    assert create_component(client, pub, "server").status_code == 201
    resp = publish(client, pub, "server", "1.0", rollout={"schedule": [{"percent": 0}]})
    assert resp.status_code == 400 and resp.json["error"]["field"].startswith("rollout")
    assert client.get("/api/v1/components/server/releases", headers=pub).json["items"] == []
    with app.app_context():
        assert list(get_storage().list("sha256/")) == []


def test_a_channel_can_require_every_release_to_start_staged(client, pub, auth):
    assert create_component(client, pub, "server").status_code == 201
    r = client.patch("/api/v1/channels/stable", json={"require_staged_rollout": True}, headers=pub)
    assert r.status_code == 200 and r.json["require_staged_rollout"] is True
    resp = publish(client, pub, "server", "1.0", channels=["stable"])
    assert resp.status_code == 400
    assert resp.json["error"]["code"] == "staged_rollout_required" and resp.json["error"]["field"] == "rollout"
    assert client.get("/api/v1/components/server/releases", headers=pub).json["items"] == []
    # beta does not require it; promoting to stable afterwards would reach every installation at once
    assert publish(client, pub, "server", "1.0", channels=["beta"]).status_code == 201
    r = client.post("/api/v1/components/server/releases/1.0/promote", json={"channel": "stable"}, headers=pub)
    assert r.status_code == 409 and r.json["error"]["code"] == "staged_rollout_required"
    assert publish(client, pub, "server", "1.1", channels=["stable"], rollout=ROLLOUT).status_code == 201
    # a fix for one customer is not offered to the channel: allowed without a rollout
    client.post("/api/v1/customers", json={"name": "Acme"}, headers=auth.headers("admin"))
    assert publish(client, pub, "server", "1.2", channels=["stable"],
                   restricted_customers=["Acme"]).status_code == 201


def test_demo_data_requires_staged_releases_on_stable(app, runner, client, auth):
    out = runner.invoke(args=["demo", "--password", "demo-pass-123"])
    assert out.exit_code == 0, out.output
    channels = {c["name"]: c for c in client.get("/api/v1/channels", headers=auth.headers("admin")).json["items"]}
    assert channels["stable"]["require_staged_rollout"] is True
    assert channels["beta"]["require_staged_rollout"] is False


def test_polling_across_a_staged_publish_never_offers_it_outside_the_first_step(app, client, pub, auth,
                                                                                live_server, tmp_path):
    """Installations poll the check endpoint without pause from other threads while the release is published."""
    from release_server.rollouts.policy import bucket

    admin = auth.headers("admin")
    assert create_component(client, pub, "server").status_code == 201
    assert publish(client, pub, "server", "1.0", channels=["stable"]).status_code == 201
    assert client.post("/api/v1/customers", json={"name": "Acme"}, headers=admin).status_code == 201
    installations = [enroll(client, admin, "Acme", name=f"site {i}", installed={"server": "1.0"})
                     for i in range(40)]
    offered: dict[str, set[str]] = {}
    errors: list[str] = []
    answered: list[float] = []
    stop = threading.Event()

    def poll(inst: dict) -> None:
        session = requests.Session()
        headers = {"Authorization": f"Bearer {inst['token']}"}
        while not stop.is_set():
            try:
                r = session.post(f"{live_server.url}/api/v1/updates/check", headers=headers, timeout=10,
                                 json={"installed": {"server": "1.0"}})
            except requests.RequestException as e:
                errors.append(str(e))
                continue
            answered.append(time.monotonic())
            if r.status_code == 200:
                for o in r.json().get("offers", []):
                    offered.setdefault(inst["installation_id"], set()).add(o["version"])
            elif r.status_code not in (204, 304):
                errors.append(f"{r.status_code} {r.text[:200]}")

    threads = [threading.Thread(target=poll, args=(inst,), daemon=True) for inst in installations[:8]]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while len(answered) < 16 and time.monotonic() < deadline:
        time.sleep(0.05)
    published_at = time.monotonic()
    artifact = tmp_path / "server-1.1.tar.gz"
    artifact.write_bytes(make_tarball({"VERSION": "1.1"}))
    env = dict(os.environ, RELEASE_SERVER_URL=live_server.url, RELEASE_SERVER_TOKEN=auth.token("publisher"),
               PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    proc = subprocess.run([sys.executable, "-m", "release_server.cli", "publish", "--component", "server",
                           "--version", "1.1", "--channel", "stable", "--rollout-schedule", "10:24,100:0",
                           "--rollout-threshold", "0.2", "--quiet", str(artifact)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "as a staged rollout" in proc.stdout
    done_at = time.monotonic()
    time.sleep(2.5)  # the servers' catalogs recheck every CATALOG_RECHECK_SECONDS
    stop.set()
    for t in threads:
        t.join(15)
    assert errors == []
    from sqlalchemy import select

    from release_server.db import db
    from release_server.releases.models import Release

    with app.app_context():
        rid = db.session.scalar(select(Release.id).where(Release.version == "1.1"))
    admitted = {i["installation_id"] for i in installations if bucket(i["installation_id"], rid) < 1000}
    got_new = {inst for inst, versions in offered.items() if "1.1" in versions}
    assert got_new <= admitted, f"offered outside the first step: {got_new - admitted}"
    (ro,) = [r for r in client.get("/api/v1/rollouts", headers=pub).json["items"] if r["version"] == "1.1"]
    assert (ro["state"], ro["percent"], ro["failure_threshold"]) == ("running", 10.0, 0.2)
    # the polls really ran before, during and after the publish
    assert any(t < published_at for t in answered) and any(t > done_at + 1.5 for t in answered)
