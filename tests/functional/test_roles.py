"""Every API route checks its role: each role against each route group, allowed and refused."""
from __future__ import annotations

import pytest
from factories import create_component, publish

from release_server.api import ROUTES

# (method, path, json body) per route group; paths refer to data made in the fixture.
GROUPS = {
    "releases-read": [
        ("GET", "/api/v1/components", None),
        ("GET", "/api/v1/channels", None),
        ("GET", "/api/v1/components/server/releases", None),
        ("GET", "/api/v1/components/server/releases/1.0", None),
        ("GET", "/api/v1/components/server/releases/1.0/artifact", None),
        ("GET", "/api/v1/components/server/changelog?to=1.0", None),
        ("GET", "/api/v1/components/server/releases/1.0/deltas", None),
    ],
    "releases-write": [
        ("POST", "/api/v1/components", {"name": "web"}),
        ("POST", "/api/v1/channels", {"name": "lts"}),
        ("PATCH", "/api/v1/channels/beta", {"require_staged_rollout": False}),
        ("POST", "/api/v1/components/server/releases/1.0/promote", {"channel": "stable"}),
        ("POST", "/api/v1/components/server/releases/1.0/yank", {"reason": "bad"}),
        ("POST", "/api/v1/components/server/releases/1.0/unyank", None),
        ("POST", "/api/v1/components/server/releases/1.0/deltas", {}),
    ],
    "fleet-read": [
        ("GET", "/api/v1/customers", None),
        ("GET", "/api/v1/installations", None),
        ("GET", "/api/v1/installations/{inst}", None),
        ("GET", "/api/v1/installations/{inst}/reports", None),
    ],
    "fleet-write": [
        ("POST", "/api/v1/customers", {"name": "Other Org"}),
        ("POST", "/api/v1/customers/Acme/enrollment-tokens", {"max_uses": 1}),
        ("GET", "/api/v1/customers/Acme/enrollment-tokens", None),
        ("DELETE", "/api/v1/enrollment-tokens/{enroll_prefix}", None),
        ("POST", "/api/v1/installations/{inst}/revoke", None),
    ],
    "installation-settings": [
        ("PATCH", "/api/v1/installations/{inst}", {"tags": ["pilot"]}),
    ],
    "agent": [
        ("POST", "/api/v1/updates/check", {"installed": {"server": "1.0"}}),
        ("POST", "/api/v1/reports", {"reports": [{"id": "6f1c2b1e-8d7a-4c1e-9a53-0d4f1c2b3a4d", "component": "server",
                                                  "to_version": "1.0", "outcome": "success"}]}),
    ],
    "rollouts-read": [
        ("GET", "/api/v1/rollouts", None),
        ("GET", "/api/v1/rollouts/{rollout}", None),
        ("GET", "/api/v1/rollouts/{rollout}/figures", None),
        ("GET", "/api/v1/pins", None),
        ("GET", "/api/v1/components/server/releases/1.0/restrictions", None),
        ("GET", "/api/v1/fleet/versions", None),
        ("GET", "/api/v1/fleet/adoption?component=server", None),
        ("GET", "/api/v1/fleet/transfer", None),
    ],
    "rollouts-write": [
        ("POST", "/api/v1/rollouts", {"component": "server", "version": "1.0", "channel": "beta"}),
        ("POST", "/api/v1/rollouts/{rollout}/start", {"percent": 10}),
        ("POST", "/api/v1/rollouts/{rollout}/percentage", {"percent": 50}),
        ("POST", "/api/v1/rollouts/{rollout}/pause", None),
        ("POST", "/api/v1/rollouts/{rollout}/resume", None),
        ("POST", "/api/v1/rollouts/{rollout}/complete", None),
        ("POST", "/api/v1/rollouts/{rollout2}/halt", {"reason": "test"}),
        ("POST", "/api/v1/rollouts/{rollout2}/resume", {"reason": "cause fixed"}),
        ("POST", "/api/v1/rollouts/{rollout2}/yank", {"reason": "test"}),
        ("POST", "/api/v1/components/server/releases/1.0/restrictions", {"customers": []}),
    ],
    "pins": [
        ("POST", "/api/v1/pins", {"scope": "tag", "value": "lts", "component": "server", "prefix": "1"}),
        ("DELETE", "/api/v1/pins/{pin}", None),
    ],
    "accounts": [
        ("POST", "/api/v1/users", {"username": "newbie", "password": "long enough pass", "role": "support"}),
        ("POST", "/api/v1/tokens", {"name": "t", "role": "support"}),
        ("GET", "/api/v1/tokens", None),
        ("GET", "/api/v1/audit", None),
    ],
}
ALLOWED = {
    "releases-read": {"admin", "publisher", "support"},
    "releases-write": {"admin", "publisher"},
    "accounts": {"admin"},
    "fleet-read": {"admin", "publisher", "support"},
    "fleet-write": {"admin", "support"},
    "installation-settings": {"admin", "support", "publisher"},
    "agent": {"installation"},
    "rollouts-read": {"admin", "publisher", "support"},
    "rollouts-write": {"admin", "publisher"},
    "pins": {"admin", "publisher", "support"},
}
ROLES = ["admin", "publisher", "support", "installation"]
#: a claimed component's signing routes: what each role may reach (the component here is not claimed, so an
#: allowed call may still be refused for that reason, never as forbidden)
SIGNING = [
    ("GET", "/api/v1/components/server/signing", None, {"admin", "publisher", "support"}),
    ("POST", "/api/v1/components/server/signing/signatures", {"signatures": []}, {"admin", "publisher"}),
    ("POST", "/api/v1/components/server/signing/proposals", {"action": "renew", "role": {}}, {"admin", "publisher"}),
    ("DELETE", "/api/v1/components/server/signing/pending", None, {"admin", "publisher"}),
]


@pytest.fixture
def seeded(client, auth):
    admin = auth.headers("admin")
    create_component(client, admin, "server")
    assert publish(client, admin, "server", "1.0").status_code == 201
    return client


@pytest.fixture
def fleet(seeded, auth):
    """A customer with an enrolled installation; returns the installation's headers and path values."""
    from factories import enroll

    admin = auth.headers("admin")
    seeded.post("/api/v1/customers", json={"name": "Acme"}, headers=admin)
    inst = enroll(seeded, admin, "Acme")
    spare = seeded.post("/api/v1/customers/Acme/enrollment-tokens", json={}, headers=admin).json
    # a draft rollout on stable and a running one to halt, and a pin to remove
    seeded.post("/api/v1/components/server/releases/1.0/promote", json={"channel": "stable"}, headers=admin)
    publish(seeded, admin, "server", "1.1", channels=["stable"])
    ro = seeded.post("/api/v1/rollouts", json={"component": "server", "version": "1.0", "channel": "stable"},
                     headers=admin).json
    ro2 = seeded.post("/api/v1/rollouts", json={"component": "server", "version": "1.1", "channel": "stable",
                                                "start": True}, headers=admin).json
    pin = seeded.post("/api/v1/pins", json={"scope": "tag", "value": "x", "component": "server", "prefix": "1"},
                      headers=admin).json
    return {"headers": {"Authorization": f"Bearer {inst['token']}"},
            "values": {"inst": inst["installation_id"], "enroll_prefix": spare["prefix"], "rollout": ro["id"],
                       "rollout2": ro2["id"], "pin": pin["id"]}}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("group", list(GROUPS))
def test_role_against_route_group(seeded, fleet, auth, role, group):
    headers = fleet["headers"] if role == "installation" else auth.headers(role)
    for method, template, body in GROUPS[group]:
        path = template.format(**fleet["values"])
        resp = seeded.open(path, method=method, json=body, headers=headers)
        if role in ALLOWED[group]:
            assert resp.status_code < 400, (role, method, path, resp.status_code, resp.get_data(as_text=True))
        else:
            assert resp.status_code == 403, (role, method, path, resp.status_code, resp.get_data(as_text=True))
            assert resp.json["error"]["code"] == "forbidden"
        resp.close()


@pytest.mark.parametrize("role", ROLES)
def test_signing_routes_by_role(seeded, fleet, auth, role):
    headers = fleet["headers"] if role == "installation" else auth.headers(role)
    for method, path, body, allowed in SIGNING:
        resp = seeded.open(path, method=method, json=body, headers=headers)
        if role in allowed:
            assert resp.status_code != 403 and resp.status_code < 500, (role, method, path, resp.status_code)
        else:
            assert resp.status_code == 403 and resp.json["error"]["code"] == "forbidden", (role, method, path)
        resp.close()


def test_publish_allowed_for_publisher_refused_for_support(seeded, auth, app):
    assert publish(seeded, auth.headers("publisher"), "server", "1.1").status_code == 201
    r = publish(seeded, auth.headers("support"), "server", "1.2")
    assert r.status_code == 403
    from release_server.storage import get_storage

    with app.app_context():
        assert len(list(get_storage().list("sha256/"))) == 2


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"},
                                     {"Authorization": "Bearer rst_aaaaaaaa_" + "x" * 30}])
def test_missing_or_bad_credentials_are_401(seeded, headers):
    r = seeded.get("/api/v1/components", headers=headers)
    assert r.status_code == 401 and r.json["error"]["field"] == "Authorization"


def test_revoked_and_expired_tokens_are_refused(client, auth, app):
    from datetime import timedelta

    from release_server.accounts import services
    from release_server.db import db
    from release_server.models_common import utcnow

    admin = auth.headers("admin")
    created = client.post("/api/v1/tokens", json={"name": "ci", "role": "publisher"}, headers=admin).json
    assert created["token"].startswith(f"rst_{created['prefix']}_")
    h = {"Authorization": f"Bearer {created['token']}"}
    assert client.get("/api/v1/components", headers=h).status_code == 200
    listed = client.get("/api/v1/tokens", headers=admin).json["items"]
    assert all("token" not in t for t in listed)  # the secret is never shown again
    assert client.delete(f"/api/v1/tokens/{created['prefix']}", headers=admin).json["revoked_at"]
    assert client.get("/api/v1/components", headers=h).status_code == 401
    with app.app_context():
        issued = services.issue_token(db.session, name="old", role="support", expires_at=utcnow() - timedelta(1))
        db.commit()
    assert client.get("/api/v1/components", headers={"Authorization": f"Bearer {issued.secret}"}).status_code == 401


def test_every_declared_route_is_covered_by_a_group():
    covered = set()
    for entries in GROUPS.values():
        for method, path, _ in entries:
            covered.add((method, path.split("?")[0]))
    covered |= {(method, path) for method, path, _, _ in SIGNING}
    import re

    for spec in ROUTES:
        if spec.tag == "support":
            continue  # every support route against every role: tests/functional/test_support_roles.py
        for method in spec.methods:
            if spec.rule in ("/components/<component>/releases",) and method == "POST":
                continue  # publish: its own test above
            if spec.rule == "/tokens/<prefix>":
                continue  # revoke: covered in test_revoked_and_expired_tokens_are_refused
            if spec.rule == "/enroll":
                continue  # public: anyone with an enrollment token (tests/functional/test_fleet_api.py)
            pattern = "^/api/v1" + re.sub(r"<[^>]+>", "[^/]+", spec.rule) + "$"
            assert any(m == method and re.match(pattern, p) for m, p in covered), (method, spec.rule)


@pytest.mark.parametrize("role, allowed", [("admin", True), ("support", True), ("publisher", False)])
def test_unreadable_mail_console_pages_by_role(app, client, auth, role, allowed):
    import re

    from release_server.accounts import services as accounts
    from release_server.db import db

    with app.app_context():
        accounts.create_user(db.session, f"{role}-person", "correct horse battery", role)
        db.commit()
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/console/login").text).group(1)
    assert client.post("/console/login", data={"username": f"{role}-person", "password": "correct horse battery",
                                               "csrf_token": token}).status_code == 302
    r = client.post("/api/v1/support/mail", data=b"\x00not mail", headers={**auth.headers("support"),
                                                                           "Content-Type": "message/rfc822"})
    assert r.status_code == 422
    listing = client.get("/console/mail/unreadable")
    mail_id = int(r.json["error"]["message"].rsplit(" ", 1)[-1])
    raw = client.get(f"/console/mail/unreadable/{mail_id}/raw")
    for resp in (listing, raw):
        assert resp.status_code == (200 if allowed else 403)
        resp.close()
    anonymous = app.test_client().get(f"/console/mail/unreadable/{mail_id}/raw")
    assert anonymous.status_code == 302 and "/console/login" in anonymous.headers["Location"]
def test_operator_endpoints_outside_the_api(client, app):
    """/healthz and /readyz answer anyone (load balancers); /metrics loopback or its token only."""
    away = {"environ_base": {"REMOTE_ADDR": "203.0.113.9"}}
    assert client.get("/healthz", **away).status_code == 200
    assert client.get("/readyz", **away).status_code in (200, 503)
    assert client.get("/metrics", **away).status_code == 403
    assert client.get("/metrics").status_code == 200
    app.config["METRICS_TOKEN"] = "t0ken-for-metrics"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer t0ken-for-metrics"}, **away).status_code == 200
    rules = {r.rule for r in app.url_map.iter_rules()}
    assert {"/healthz", "/readyz", "/metrics"} <= rules
