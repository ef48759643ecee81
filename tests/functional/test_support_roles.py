"""Every support route against every role: staff, publisher, installation, customer user; allowed or 403."""
from __future__ import annotations

import io
import re
import uuid

import pytest
from factories import create_component, enroll, publish

from release_server.api import ROUTES

ROLES = ["admin", "support", "publisher", "installation", "customer"]
STAFF_SUPPORT = {"admin", "support"}


@pytest.fixture
def world(client, auth):
    admin, staff = auth.headers("admin"), auth.headers("support")
    client.post("/api/v1/customers", json={"name": "Acme", "contact_email": "it@acme.example"}, headers=admin)
    inst = enroll(client, admin, "Acme")
    user = client.post("/api/v1/customer-users", json={"email": "ann@acme.example", "customer": "Acme"},
                       headers=staff).json
    tok = client.post(f"/api/v1/customer-users/{user['id']}/tokens", json={}, headers=staff).json["token"]
    headers = {r: auth.headers(r) for r in ("admin", "support", "publisher")}
    headers["installation"] = {"Authorization": f"Bearer {inst['token']}"}
    headers["customer"] = {"Authorization": f"Bearer {tok}"}
    client.post("/api/v1/reports", headers=headers["installation"], json={"reports": [{
        "id": str(uuid.uuid4()), "component": "server", "to_version": "2.0", "outcome": "failed", "stage": "migrate",
        "error_code": "E1", "error_message": "boom"}]})
    group = client.get("/api/v1/failure-groups", headers=staff).json["items"][0]["id"]
    mail = client.post("/api/v1/support/mail", headers={**staff, "Content-Type": "message/rfc822"},
                       data=b"From: x@acme.example\r\nSubject: s\r\nMessage-ID: <r1@x>\r\n\r\nbody\r\n").json

    create_component(client, admin, "server")
    assert publish(client, admin, "server", "2.0.1", channels=["stable"]).status_code == 201

    def ticket(kind="incident"):
        return client.post("/api/v1/tickets", json={"subject": "t", "customer": "Acme", "kind": kind},
                           headers=staff).json["number"]

    def attachment():
        n = ticket()
        up = client.post(f"/api/v1/tickets/{n}/attachments", headers=staff, content_type="multipart/form-data",
                         data={"file": (io.BytesIO(b"log"), "a.log")}).json
        return f"/api/v1/tickets/{n}/attachments/{up['items'][0]['id']}"

    return {"headers": headers, "ticket": ticket, "attachment": attachment, "group": group, "mail": mail["mail_id"],
            "user": user["id"]}


def cases(w):
    """(method, path, body or multipart data, roles allowed); callables make fresh data per call."""
    return [
        ("POST", lambda: "/api/v1/tickets", {"subject": "hello"}, STAFF_SUPPORT | {"installation", "customer"}),
        ("GET", lambda: "/api/v1/tickets", None, STAFF_SUPPORT | {"customer"}),
        ("GET", lambda: f"/api/v1/tickets/{w['ticket']()}", None, STAFF_SUPPORT | {"installation", "customer"}),
        ("PATCH", lambda: f"/api/v1/tickets/{w['ticket']()}", {"priority": "high"}, STAFF_SUPPORT),
        ("POST", lambda: f"/api/v1/tickets/{w['ticket']()}/replies", {"body": "hi"}, STAFF_SUPPORT | {"customer"}),
        ("POST", lambda: f"/api/v1/tickets/{w['ticket']()}/notes", {"body": "hi"}, STAFF_SUPPORT),
        ("POST", lambda: f"/api/v1/tickets/{w['ticket']()}/request-info", {"body": "logs?"}, STAFF_SUPPORT),
        ("POST", lambda: f"/api/v1/tickets/{w['ticket']()}/merge", lambda: {"into": w["ticket"]()}, STAFF_SUPPORT),
        ("POST", lambda: f"/api/v1/tickets/{w['ticket']()}/attachments",
         lambda: {"file": (io.BytesIO(b"data"), "x.txt")}, STAFF_SUPPORT | {"installation", "customer"}),
        ("GET", lambda: w["attachment"](), None, STAFF_SUPPORT | {"installation", "customer"}),
        ("GET", lambda: "/api/v1/failure-groups", None, STAFF_SUPPORT | {"publisher"}),
        ("GET", lambda: f"/api/v1/failure-groups/{w['group']}", None, STAFF_SUPPORT | {"publisher"}),
        ("POST", lambda: "/api/v1/support/mail", b"From: y@acme.example\r\nSubject: s\r\n\r\nb\r\n", STAFF_SUPPORT),
        ("GET", lambda: f"/api/v1/support/mail/{w['mail']}/raw", None, STAFF_SUPPORT),
        ("POST", lambda: "/api/v1/customer-users", lambda: {"email": f"{uuid.uuid4().hex[:8]}@acme.example",
                                                            "customer": "Acme"}, STAFF_SUPPORT),
        ("POST", lambda: f"/api/v1/customer-users/{w['user']}/tokens", {"name": "t"}, STAFF_SUPPORT),
        ("POST", lambda: f"/api/v1/tickets/{w['ticket']()}/department", {"department": "development"},
         STAFF_SUPPORT),
        ("POST", lambda: f"/api/v1/tickets/{w['ticket']('development')}/review", {"outcome": "accepted"},
         STAFF_SUPPORT),
        ("GET", lambda: f"/api/v1/failure-groups/{w['group']}/fix-status", None, STAFF_SUPPORT | {"publisher"}),
        ("GET", lambda: "/api/v1/customers/Acme/fix-figures", None, STAFF_SUPPORT | {"publisher"}),
        ("POST", lambda: "/api/v1/components/server/releases/2.0.1/fixes", {"groups": [w["group"]]},
         STAFF_SUPPORT | {"publisher"}),
        ("GET", lambda: "/api/v1/components/server/releases/2.0.1/fixes", None, STAFF_SUPPORT | {"publisher"}),
        ("POST", lambda: "/api/v1/components/server/releases/2.0.1/fixes/unlink", {"groups": [w["group"]]},
         STAFF_SUPPORT | {"publisher"}),
    ]


@pytest.mark.parametrize("role", ROLES)
def test_support_routes_by_role(client, world, role):
    headers = world["headers"][role]
    for method, path_fn, body, allowed in cases(world):
        path = path_fn()
        body = body() if callable(body) else body
        if isinstance(body, bytes):
            resp = client.open(path, method=method, data=body, headers={**headers, "Content-Type": "message/rfc822"})
        elif path.endswith("/attachments") and method == "POST":
            resp = client.open(path, method=method, data=body, headers=headers, content_type="multipart/form-data")
        else:
            resp = client.open(path, method=method, json=body, headers=headers)
        if role in allowed:
            assert resp.status_code < 400, (role, method, path, resp.status_code, resp.get_data(as_text=True))
        else:
            assert resp.status_code == 403, (role, method, path, resp.status_code, resp.get_data(as_text=True))
            assert resp.json["error"]["code"] == "forbidden"
        resp.close()


def test_every_support_route_is_in_the_matrix():
    covered = {(m, re.sub(r"\{[^}]+\}|OTK-\d+|\d+", "X", p)) for m, p in (
        ("POST", "/tickets"), ("GET", "/tickets"), ("GET", "/tickets/X"), ("PATCH", "/tickets/X"),
        ("POST", "/tickets/X/replies"), ("POST", "/tickets/X/notes"), ("POST", "/tickets/X/request-info"),
        ("POST", "/tickets/X/merge"), ("POST", "/tickets/X/attachments"), ("GET", "/tickets/X/attachments/X"),
        ("GET", "/failure-groups"), ("GET", "/failure-groups/X"), ("POST", "/support/mail"),
        ("GET", "/support/mail/X/raw"), ("POST", "/customer-users"), ("POST", "/customer-users/X/tokens"),
        ("POST", "/tickets/X/department"), ("POST", "/tickets/X/review"), ("GET", "/failure-groups/X/fix-status"),
        ("GET", "/customers/X/fix-figures"), ("POST", "/components/X/releases/X/fixes"),
        ("GET", "/components/X/releases/X/fixes"), ("POST", "/components/X/releases/X/fixes/unlink"))}
    declared = {(m, re.sub(r"<[^>]+>", "X", s.rule)) for s in ROUTES if s.tag == "support" for m in s.methods}
    assert declared == covered
