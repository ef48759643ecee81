"""Tickets in the console and the customer portal: the support process end to end, isolation, attachments."""
from __future__ import annotations

import io
import re
import uuid
from typing import Any

import pytest

from factories import create_component, enroll, publish

PASSWORD = "correct horse battery"
PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00\x90wS\xde\x00\x00"
       b"\x00\x0cIDATx\x9cc\xf8\xcf\xc0\x00\x00\x03\x01\x01\x00\xc9\xfe\x92\xef\x00\x00\x00\x00IEND\xaeB`\x82")


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def login(client: Any, url: str, **fields: str) -> Any:
    page = client.get(url)
    return client.post(url, data={**fields, "csrf_token": csrf_of(page.text)})


def post(client: Any, url: str, data: dict, page: str, **kw: Any) -> Any:
    return client.post(url, data={**data, "csrf_token": csrf_of(client.get(page).text)}, **kw)


@pytest.fixture
def world(app: Any, client: Any, auth: Any) -> dict[str, Any]:
    """Two customers with a portal user each, an installation of the first, a failed update (-> a ticket)."""
    from release_server.accounts import services as accounts
    from release_server.db import db
    from release_server.fleet import services as fleet
    from release_server.support import customers

    headers = auth.headers("admin")
    create_component(client, headers, "server")
    assert publish(client, headers, "server", "2.0.0", channels=["stable"]).status_code == 201
    with app.app_context():
        accounts.create_user(db.session, "sue", PASSWORD, "support")
        a = fleet.create_customer(db.session, "Acme", "it@acme.example", ["acme.example"])
        b = fleet.create_customer(db.session, "Globex", "it@globex.example", ["globex.example"])
        customers.create_customer_user(db.session, a, "ann@acme.example", "Ann", PASSWORD)
        customers.create_customer_user(db.session, b, "bob@globex.example", "Bob", PASSWORD)
        db.commit()
    inst = enroll(client, headers, "Acme", name="acme-main", installed={"server": "1.0.0"})
    resp = client.post("/api/v1/reports", headers={"Authorization": f"Bearer {inst['token']}"}, json={"reports": [{
        "id": str(uuid.uuid4()), "component": "server", "from_version": "1.0.0", "to_version": "2.0.0",
        "outcome": "rolled_back", "stage": "post-install", "error_code": "migration_failed",
        "error_message": "relation <x> missing", "log_tail": "ERROR: <script>alert(1)</script>"}]})
    assert resp.status_code == 200, resp.json
    number = client.get("/api/v1/tickets?customer=Acme", headers=headers).json["items"][0]["number"]
    return {"number": number, "installation": inst["installation_id"], "headers": headers}


def staff(app: Any) -> Any:
    c = app.test_client()
    assert login(c, "/console/login", username="sue", password=PASSWORD).status_code == 302
    return c


def customer(app: Any, email: str) -> Any:
    c = app.test_client()
    assert login(c, "/portal/login", email=email, password=PASSWORD).status_code == 302
    return c


def test_failure_ticket_request_info_customer_reply_processed(app: Any, world: dict) -> None:
    number = world["number"]
    sue, ann = staff(app), customer(app, "ann@acme.example")
    page = sue.get(f"/console/tickets/{number}")
    assert page.status_code == 200
    assert "Failure group #" in page.text and "acme-main" in page.text and "migration_failed" in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text and "<script>alert(1)" not in page.text
    # an empty request is refused next to its field
    resp = post(sue, f"/console/tickets/{number}/request-info", {"body": " "}, f"/console/tickets/{number}")
    assert resp.status_code == 400 and 'id="compose-body-error"' in resp.text and 'value="request_info" id="compose-mode-info" data-send="Ask the customer" checked' in resp.text
    resp = post(sue, f"/console/tickets/{number}/request-info", {"body": "Please send the server log."},
                f"/console/tickets/{number}")
    assert resp.status_code == 302
    resp = post(sue, f"/console/tickets/{number}/note", {"body": "secret staff note"}, f"/console/tickets/{number}")
    assert resp.status_code == 302
    # the customer sees the question, not the internal note nor the internal failure report
    page = ann.get(f"/portal/tickets/{number}")
    assert page.status_code == 200
    assert "Please send the server log." in page.text and "Waiting for customer" in page.text
    assert "secret staff note" not in page.text and "ev-failure_report" not in page.text
    resp = ann.post(f"/portal/tickets/{number}/reply", data={
        "body": "Here it is.", "csrf_token": csrf_of(page.text),
        "files": (io.BytesIO(b"2024-05-12 ERROR boom\n"), "server.log")}, content_type="multipart/form-data")
    assert resp.status_code == 302
    page = sue.get(f"/console/tickets/{number}")
    assert "Here it is." in page.text and "server.log" in page.text and "In progress" in page.text
    resp = post(sue, f"/console/tickets/{number}/process", {"body": "Fixed in 2.0.1, installed tonight."},
                f"/console/tickets/{number}")
    assert resp.status_code == 302
    page = ann.get(f"/portal/tickets/{number}")
    assert 'id="ticket-status">Processed<' in page.text and "Fixed in 2.0.1" in page.text
    listing = ann.get("/portal/")
    assert number in listing.text and "Processed" in listing.text
    from release_server.accounts.models import AuditEvent
    from release_server.db import db

    with app.app_context():
        actions = [e.action for e in db.session.query(AuditEvent).filter(AuditEvent.actor == "sue")]
    assert {"ticket.request_info", "ticket.note", "ticket.update"} <= set(actions)


def test_a_customer_cannot_open_another_customers_ticket(app: Any, client: Any, world: dict) -> None:
    bob = customer(app, "bob@globex.example")
    number = world["number"]
    assert bob.get(f"/portal/tickets/{number}").status_code == 404
    page = bob.get("/portal/")
    resp = bob.post(f"/portal/tickets/{number}/reply", data={"body": "hi", "csrf_token": csrf_of(page.text)})
    assert resp.status_code == 404
    assert number not in bob.get("/portal/").text
    assert bob.get(f"/portal/tickets/{number}/attachments/1").status_code == 404
    # the API refuses too, with the same 404
    from release_server.db import db
    from release_server.support import customers

    with app.app_context():
        user = customers.get_customer_user(db.session, "bob@globex.example")
        _token, secret = customers.issue_token(db.session, user, "test")
        db.commit()
    resp = client.get(f"/api/v1/tickets/{number}", headers={"Authorization": f"Bearer {secret}"})
    assert resp.status_code == 404
    # a customer session is no staff session
    assert bob.get("/console/tickets").status_code == 302


def test_portal_request_with_a_screenshot_and_safe_attachments(app: Any, world: dict) -> None:
    ann = customer(app, "ann@acme.example")
    page = ann.get("/portal/tickets/new")
    for kind in ("incident", "problem", "service", "development"):
        assert f'value="{kind}"' in page.text
    # errors next to the fields, values kept
    resp = ann.post("/portal/tickets/new", data={"kind": "bogus", "subject": "", "description": "keep me",
                                                 "csrf_token": csrf_of(page.text)})
    assert resp.status_code == 400
    assert 'id="f-kind-error"' in resp.text and 'id="f-subject-error"' in resp.text and "keep me" in resp.text
    resp = ann.post("/portal/tickets/new", data={
        "kind": "development", "subject": "<b>Export</b> to CSV", "description": "Please add it.",
        "installation": world["installation"], "csrf_token": csrf_of(page.text),
        "files": [(io.BytesIO(PNG), "screen.png", "image/png"),
                  (io.BytesIO(b"<script>alert(1)</script>"), "page.html", "text/html")]},
        content_type="multipart/form-data")
    assert resp.status_code == 302
    number = resp.headers["Location"].rsplit("/", 1)[1]
    detail = ann.get(f"/portal/tickets/{number}")
    assert "&lt;b&gt;Export&lt;/b&gt; to CSV" in detail.text and "Development request" in detail.text
    links = re.findall(r'href="(/portal/tickets/[^"]+/attachments/\d+)"', detail.text)
    assert len(links) == 2
    png = ann.get(links[0] + "?inline=1")
    png.close()
    assert png.status_code == 200 and png.mimetype == "image/png"
    assert png.headers["X-Content-Type-Options"] == "nosniff" and png.headers["Content-Disposition"].startswith("inline")
    assert "sandbox" in png.headers["Content-Security-Policy"]
    html = ann.get(links[1] + "?inline=1")
    html.close()
    assert html.mimetype == "application/octet-stream" and html.headers["Content-Disposition"].startswith("attachment")
    # staff see it in the queue, find it by number and by text
    sue = staff(app)
    assert sue.get(f"/console/tickets?q={number.split('-')[1].lstrip('0')}&status=all").status_code == 200
    resp = sue.get(f"/console/tickets?q={number}")
    assert resp.status_code == 302 and resp.headers["Location"].endswith(f"/console/tickets/{number}")
    listing = sue.get("/console/tickets?q=Export&status=all")
    assert number in listing.text and world["number"] not in listing.text
    page = sue.get(f"/console/tickets/{number}")
    assert 'class="preview"' in page.text


def test_staff_assign_and_change_kind_and_priority(app: Any, world: dict) -> None:
    sue = staff(app)
    number = world["number"]
    url = f"/console/tickets/{number}"
    assert post(sue, f"{url}/assign", {"assignee": "sue"}, url).status_code == 302
    resp = post(sue, f"{url}/assign", {"assignee": "nobody-here"}, url)
    assert resp.status_code == 400 and 'id="assign-user-error"' in resp.text
    assert post(sue, f"{url}/change", {"kind": "problem", "priority": "urgent"}, url).status_code == 302
    resp = post(sue, f"{url}/change", {"kind": "nonsense", "priority": "urgent"}, url)
    assert resp.status_code == 400 and 'id="change-kind-error"' in resp.text
    page = sue.get(url)
    assert "Priority: Urgent" in page.text and "Problem" in page.text
    mine = sue.get("/console/tickets?assignee=me")
    assert number in mine.text
    assert sue.get("/console/tickets/OTK-999999").status_code == 404


def test_customer_installations_show_versions_and_pending_updates(app: Any, client: Any, world: dict) -> None:
    ann = customer(app, "ann@acme.example")
    page = ann.get("/portal/installations")
    assert page.status_code == 200 and "acme-main" in page.text and "1.0.0" in page.text
    # server 2.0.0 is on stable and nothing holds it back: it is pending, with its changelog
    assert "Pending updates" in page.text and "2.0.0" in page.text
    bob = customer(app, "bob@globex.example")
    assert "acme-main" not in bob.get("/portal/installations").text


def test_portal_login_failures_and_rate_limit(app: Any, world: dict) -> None:
    c = app.test_client()
    resp = login(c, "/portal/login", email="ann@acme.example", password="wrong")
    assert resp.status_code == 401 and 'id="f-password-error"' in resp.text
    for _ in range(app.config["LOGIN_MAX_FAILURES"] - 1):
        login(c, "/portal/login", email="ann@acme.example", password="wrong")
    resp = login(c, "/portal/login", email="ann@acme.example", password=PASSWORD)
    assert resp.status_code == 429
    # open redirects are refused
    c2 = app.test_client()
    resp = login(c2, "/portal/login", email="bob@globex.example", password=PASSWORD, next="https://evil.example/")
    assert resp.status_code == 302 and resp.headers["Location"] == "/"
