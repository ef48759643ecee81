"""Tickets through the API: numbers, life cycle, replies and notes, clarification, merge, search,
attachments, and who may see what (staff, customer users, installations). On SQLite and PostgreSQL."""
from __future__ import annotations

import io
import re
import threading
from datetime import timedelta

import pytest
from factories import enroll


def _outbox(app, **where):
    from sqlalchemy import select

    from release_server.db import db
    from release_server.support.models import MailMessage

    with app.app_context():
        stmt = select(MailMessage).where(MailMessage.direction == "out").order_by(MailMessage.id)
        for key, value in where.items():
            stmt = stmt.where(getattr(MailMessage, key) == value)
        return list(db.session.scalars(stmt))


def _audit_actions(app):
    from release_server.accounts.services import list_audit
    from release_server.db import db

    with app.app_context():
        return [(e.action, e.target) for e in list_audit(db.session, limit=500)]


def _shift(app, number, **fields):
    """Move a ticket's timestamps into the past (a fake clock for the day-based rules)."""
    from release_server.db import db
    from release_server.support.services import find_ticket

    with app.app_context():
        t = find_ticket(db.session, number)
        for key, delta in fields.items():
            setattr(t, key, getattr(t, key) - delta)
        db.commit()


@pytest.fixture
def desk(client, auth):
    """Two customers, staff headers, a customer user token for Acme."""
    staff = auth.headers("support")
    admin = auth.headers("admin")
    assert client.post("/api/v1/customers", json={"name": "Acme", "contact_email": "it@acme.example",
                                                  "mail_domains": ["acme.example"]}, headers=admin).status_code == 201
    assert client.post("/api/v1/customers", json={"name": "Globex", "contact_email": "ops@globex.example"},
                       headers=admin).status_code == 201
    user = client.post("/api/v1/customer-users", json={"email": "Ann@Acme.example", "name": "Ann", "customer": "Acme"},
                       headers=staff)
    assert user.status_code == 201, user.json
    assert user.json["email"] == "ann@acme.example"
    tok = client.post(f"/api/v1/customer-users/{user.json['id']}/tokens", json={"name": "laptop"}, headers=staff)
    assert tok.status_code == 201 and tok.json["token"].startswith("rsc_")
    return {"staff": staff, "admin": admin, "ann": {"Authorization": f"Bearer {tok.json['token']}"}}


def _open(client, headers, **body):
    body = {"subject": "Invoice export fails", "description": "Since Monday the export stops.", **body}
    resp = client.post("/api/v1/tickets", json=body, headers=headers)
    assert resp.status_code == 201, resp.json
    return resp.json


def test_numbers_are_sequential_prefixed_and_quoted_in_mail(client, app, desk):
    first = _open(client, desk["staff"], customer="Acme", requester_email="bob@acme.example")
    second = _open(client, desk["ann"])
    assert re.fullmatch(r"OTK-\d{6}", first["number"])
    assert int(second["number"][4:]) == int(first["number"][4:]) + 1
    # every later message quotes the number; lookups accept the short forms too
    for ref in (first["number"], first["number"].lower(), str(int(first["number"][4:])), "OTK-" +
                str(int(first["number"][4:]))):
        assert client.get(f"/api/v1/tickets/{ref}", headers=desk["staff"]).json["number"] == first["number"]
    mails = _outbox(app, kind="registered")
    assert [m.to_addr for m in mails] == ["bob@acme.example", "ann@acme.example"]
    assert all(m.subject.startswith(f"[{t['number']}] ") for m, t in zip(mails, (first, second)))
    assert first["number"] in mails[0].body and mails[0].auto_generated


def test_numbers_stay_unique_under_concurrent_creation(app, client, desk):
    from release_server.db import db
    from release_server.support import services

    numbers, errors = [], []

    def make(n):
        try:
            with app.app_context():
                for _ in range(n):
                    t = services.create_ticket(db.session, services.SYSTEM, subject="x", notify=False)
                    numbers.append(t.number)
                    db.commit()
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=make, args=(10,)) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(numbers) == 60 and len(set(numbers)) == 60


def test_life_cycle_with_clarification_and_processed_comment(client, app, desk):
    t = _open(client, desk["ann"], kind="problem", description="The application does not start.")
    n = t["number"]
    assert t["status"] == "new" and t["source"] == "api" and t["customer"] == "Acme"
    assert t["requester_email"] == "ann@acme.example"

    r = client.post(f"/api/v1/tickets/{n}/request-info", json={"body": "Please send the event logs."},
                    headers=desk["staff"])
    assert r.status_code == 200 and r.json["status"] == "waiting_for_customer"
    ask = _outbox(app, kind="request_info")
    assert len(ask) == 1 and ask[0].to_addr == "ann@acme.example" and "event logs" in ask[0].body
    assert not ask[0].auto_generated  # a person wrote it

    r = client.post(f"/api/v1/tickets/{n}/replies", json={"body": "Logs attached."}, headers=desk["ann"])
    assert r.status_code == 201 and r.json["status"] == "in_progress"

    r = client.patch(f"/api/v1/tickets/{n}", json={"status": "processed", "comment": "Fixed by hotfix 2.4.1."},
                     headers=desk["staff"])
    assert r.status_code == 200 and r.json["status"] == "processed" and r.json["processed_at"]
    done = _outbox(app, kind="processed")
    assert len(done) == 1 and "Fixed by hotfix 2.4.1." in done[0].body

    kinds = [e["kind"] for e in client.get(f"/api/v1/tickets/{n}", headers=desk["staff"]).json["timeline"]]
    assert kinds[0] == "created" and "request_info" in kinds and "customer_message" in kinds and "reply" in kinds
    actions = _audit_actions(app)
    assert ("ticket.request_info", f"ticket:{n}") in actions and ("ticket.update", f"ticket:{n}") in actions


def test_reply_on_processed_reopens_within_window_else_opens_linked_ticket(client, app, desk):
    n = _open(client, desk["ann"])["number"]
    client.patch(f"/api/v1/tickets/{n}", json={"status": "processed"}, headers=desk["staff"])
    r = client.post(f"/api/v1/tickets/{n}/replies", json={"body": "Still broken."}, headers=desk["ann"])
    assert r.json["number"] == n and r.json["status"] == "new"  # reopened, back to the queue (no assignee)

    client.patch(f"/api/v1/tickets/{n}", json={"status": "processed", "assignee": "support-user"},
                 headers=desk["staff"])
    _shift(app, n, processed_at=timedelta(days=app.config["REOPEN_DAYS"] + 1))
    r = client.post(f"/api/v1/tickets/{n}/replies", json={"body": "It happened again."}, headers=desk["ann"])
    assert r.status_code == 201
    new = r.json
    assert new["number"] != n and new["previous_ticket"] == n and new["status"] == "new"
    old = client.get(f"/api/v1/tickets/{n}", headers=desk["staff"]).json
    assert old["status"] == "processed" and old["timeline"][-1]["kind"] == "follow_up"


def test_waiting_for_customer_goes_back_in_progress_on_reply(client, desk):
    n = _open(client, desk["ann"])["number"]
    client.patch(f"/api/v1/tickets/{n}", json={"assignee": "support-user"}, headers=desk["staff"])
    client.post(f"/api/v1/tickets/{n}/request-info", json={"body": "Which version?"}, headers=desk["staff"])
    r = client.post(f"/api/v1/tickets/{n}/replies", json={"body": "2.4.0"}, headers=desk["ann"])
    assert r.json["status"] == "in_progress" and r.json["assignee"] == "support-user"


def test_auto_close_job_closes_old_processed_tickets_and_mails(client, app, desk):
    old = _open(client, desk["ann"])["number"]
    recent = _open(client, desk["ann"])["number"]
    for n in (old, recent):
        client.patch(f"/api/v1/tickets/{n}", json={"status": "processed"}, headers=desk["staff"])
    _shift(app, old, processed_at=timedelta(days=app.config["AUTO_CLOSE_DAYS"] + 1))
    jobs = {j.name: j for j in app.extensions["worker_jobs"]}
    with app.app_context():
        jobs["support-auto-close"].run()
    assert client.get(f"/api/v1/tickets/{old}", headers=desk["staff"]).json["status"] == "closed"
    assert client.get(f"/api/v1/tickets/{recent}", headers=desk["staff"]).json["status"] == "processed"
    closed = _outbox(app, kind="auto_closed")
    assert len(closed) == 1 and closed[0].auto_generated and old in closed[0].subject


def test_internal_notes_and_internal_attachments_are_hidden_from_customers(client, desk):
    n = _open(client, desk["ann"])["number"]
    client.post(f"/api/v1/tickets/{n}/notes", json={"body": "Customer runs an old DB schema."}, headers=desk["staff"])
    client.post(f"/api/v1/tickets/{n}/replies", json={"body": "We are on it."}, headers=desk["staff"])
    internal = client.post(f"/api/v1/tickets/{n}/attachments", headers=desk["staff"],
                           data={"internal": "true", "file": (io.BytesIO(b"secret analysis"), "analysis.txt")},
                           content_type="multipart/form-data")
    assert internal.status_code == 201 and internal.json["items"][0]["public"] is False
    staff_view = client.get(f"/api/v1/tickets/{n}", headers=desk["staff"]).json
    cust_view = client.get(f"/api/v1/tickets/{n}", headers=desk["ann"]).json
    assert any(e["kind"] == "note" for e in staff_view["timeline"])
    assert not any(e["kind"] == "note" or not e["public"] for e in cust_view["timeline"])
    assert "We are on it." in [e["body"] for e in cust_view["timeline"]]
    assert cust_view["attachments"] == []
    att_id = internal.json["items"][0]["id"]
    assert client.get(f"/api/v1/tickets/{n}/attachments/{att_id}", headers=desk["ann"]).status_code == 404
    # a customer user finds nothing in the notes by search either
    assert client.get("/api/v1/tickets?q=schema", headers=desk["ann"]).json["total"] == 0
    assert client.get("/api/v1/tickets?q=schema", headers=desk["staff"]).json["total"] == 1


def test_customers_see_and_create_only_their_own_tickets(client, auth, desk):
    acme = _open(client, desk["ann"])["number"]
    globex = _open(client, desk["staff"], customer="Globex", subject="Globex only")["number"]
    assert client.get(f"/api/v1/tickets/{globex}", headers=desk["ann"]).status_code == 404
    listed = client.get("/api/v1/tickets", headers=desk["ann"]).json
    assert [t["number"] for t in listed["items"]] == [acme]
    # the customer field is ignored: customers always file for themselves
    r = client.post("/api/v1/tickets", json={"subject": "x", "customer": "Globex"}, headers=desk["ann"])
    assert r.status_code == 201 and r.json["customer"] == "Acme"
    # customer users may not do staff things
    for method, path, body in (("PATCH", f"/api/v1/tickets/{acme}", {"status": "closed"}),
                               ("POST", f"/api/v1/tickets/{acme}/notes", {"body": "x"}),
                               ("POST", f"/api/v1/tickets/{acme}/request-info", {"body": "x"}),
                               ("GET", "/api/v1/failure-groups", None),
                               ("GET", "/api/v1/components", None)):
        resp = client.open(path, method=method, json=body, headers=desk["ann"])
        assert resp.status_code == 403, (path, resp.status_code)
    assert client.post(f"/api/v1/tickets/{globex}/replies", json={"body": "x"},
                       headers=desk["ann"]).status_code == 404
    bad = {"Authorization": "Bearer rsc_aaaaaaaa_" + "x" * 30}
    assert client.get("/api/v1/tickets", headers=bad).status_code == 401


def test_installation_opens_ticket_and_uploads_diagnostics_for_its_own_customer(client, app, auth, desk):
    inst = enroll(client, desk["admin"], "Acme", name="berlin")
    other = enroll(client, desk["admin"], "Globex", name="paris")
    ih = {"Authorization": f"Bearer {inst['token']}"}
    r = client.post("/api/v1/tickets", json={"subject": "Agent: update keeps failing", "kind": "problem",
                                             "description": "report-issue from the agent"}, headers=ih)
    assert r.status_code == 201, r.json
    t = r.json
    assert t["source"] == "agent" and t["customer"] == "Acme" and t["installation_id"] == inst["installation_id"]
    assert t["requester_email"] == "it@acme.example"
    bundle = b"\x1f\x8b" + b"diagnostics" * 1000
    up = client.post(f"/api/v1/tickets/{t['number']}/attachments", headers=ih, content_type="multipart/form-data",
                     data={"file": [(io.BytesIO(bundle), "diag-bundle.tar.gz"),
                                    (io.BytesIO(b"\x89PNG\r\n\x1a\nxx"), "screen.png")]})
    assert up.status_code == 201, up.json
    assert [a["filename"] for a in up.json["items"]] == ["diag-bundle.tar.gz", "screen.png"]
    # by number, within its own customer only
    staff_ticket = _open(client, desk["staff"], customer="Acme")["number"]
    assert client.post(f"/api/v1/tickets/{staff_ticket}/attachments", headers=ih, content_type="multipart/form-data",
                       data={"file": (io.BytesIO(b"log"), "agent.log")}).status_code == 201
    oh = {"Authorization": f"Bearer {other['token']}"}
    assert client.post(f"/api/v1/tickets/{staff_ticket}/attachments", headers=oh, content_type="multipart/form-data",
                       data={"file": (io.BytesIO(b"log"), "agent.log")}).status_code == 404
    # installations may not list, reply or change
    assert client.get("/api/v1/tickets", headers=ih).status_code == 403
    assert client.patch(f"/api/v1/tickets/{staff_ticket}", json={"status": "closed"}, headers=ih).status_code == 403
    # the staff sees the files and downloads them as attachments
    detail = client.get(f"/api/v1/tickets/{t['number']}", headers=desk["staff"]).json
    att = detail["attachments"][0]
    dl = client.get(att["url"], headers=desk["staff"])
    assert dl.status_code == 200 and dl.data == bundle
    assert dl.headers["Content-Disposition"].startswith("attachment;")
    assert dl.headers["X-Content-Type-Options"] == "nosniff"
    dl.close()


def test_attachment_limits_and_safe_download_headers(client, app, desk):
    app.config.update(MAX_ATTACHMENT_SIZE=1000, MAX_ATTACHMENTS_PER_TICKET=2)
    n = _open(client, desk["ann"])["number"]
    big = client.post(f"/api/v1/tickets/{n}/attachments", headers=desk["ann"], content_type="multipart/form-data",
                      data={"file": (io.BytesIO(b"x" * 1001), "big.log")})
    assert big.status_code == 413 and big.json["error"]["code"] == "attachment_too_large"
    html = b"<html><script>alert(1)</script></html>"
    ok = client.post(f"/api/v1/tickets/{n}/attachments", headers=desk["ann"], content_type="multipart/form-data",
                     data={"file": (io.BytesIO(html), "../../evil page.html", "text/html")})
    assert ok.status_code == 201
    item = ok.json["items"][0]
    assert "/" not in item["filename"] and ".." not in item["filename"]
    dl = client.get(item["url"], headers=desk["ann"])
    assert dl.status_code == 200 and dl.data == html
    assert dl.headers["Content-Type"] == "application/octet-stream"  # never rendered as HTML
    assert dl.headers["Content-Disposition"].startswith("attachment;")
    assert dl.headers["X-Content-Type-Options"] == "nosniff"
    dl.close()
    assert client.post(f"/api/v1/tickets/{n}/attachments", headers=desk["ann"], content_type="multipart/form-data",
                       data={"file": (io.BytesIO(b"two"), "two.txt")}).status_code == 201
    third = client.post(f"/api/v1/tickets/{n}/attachments", headers=desk["ann"], content_type="multipart/form-data",
                        data={"file": (io.BytesIO(b"three"), "three.txt")})
    assert third.status_code == 409 and third.json["error"]["code"] == "too_many_attachments"
    missing = client.post(f"/api/v1/tickets/{n}/attachments", headers=desk["ann"], content_type="multipart/form-data",
                          data={"other": "x"})
    assert missing.status_code in (400, 409)


def test_staff_changes_merge_and_search(client, app, desk):
    a = _open(client, desk["ann"], subject="Printing of invoices hangs")["number"]
    b = _open(client, desk["staff"], customer="Acme", subject="Invoices do not print", kind="service")["number"]
    c = _open(client, desk["staff"], customer="Globex", subject="Globex printing")["number"]
    r = client.patch(f"/api/v1/tickets/{b}", json={"kind": "development", "priority": "high",
                                                  "assignee": "support-user"}, headers=desk["staff"])
    assert r.status_code == 200
    assert (r.json["kind"], r.json["priority"], r.json["assignee"]) == ("development", "high", "support-user")
    assert client.patch(f"/api/v1/tickets/{b}", json={"assignee": "nobody"}, headers=desk["staff"]).status_code == 404
    bad = client.patch(f"/api/v1/tickets/{b}", json={"kind": "wish"}, headers=desk["staff"])
    assert bad.status_code == 400 and bad.json["error"]["field"] == "kind"

    # filters
    def numbers(query, who="staff"):
        resp = client.get(f"/api/v1/tickets?{query}", headers=desk[who])
        assert resp.status_code == 200, resp.json
        return sorted(t["number"] for t in resp.json["items"])

    assert numbers("q=invoice") == sorted([a, b])
    assert numbers("q=PRINT") == sorted([a, b, c])
    assert numbers("customer=Globex") == [c]
    assert numbers("kind=development") == [b]
    assert numbers(f"number={a}") == [a]
    assert numbers("status=new&status=in_progress") == sorted([a, b, c])
    assert numbers("assignee=support-user") == [b]
    assert client.get("/api/v1/tickets?status=bogus", headers=desk["staff"]).status_code == 400

    # merge the duplicate b into a
    client.post(f"/api/v1/tickets/{b}/notes", json={"body": "dup note"}, headers=desk["staff"])
    m = client.post(f"/api/v1/tickets/{b}/merge", json={"into": a}, headers=desk["staff"])
    assert m.status_code == 200 and m.json["number"] == a
    assert "dup note" in [e["body"] for e in m.json["timeline"]]
    src = client.get(f"/api/v1/tickets/{b}", headers=desk["staff"]).json
    assert src["status"] == "closed" and src["merged_into"] == a
    assert client.post(f"/api/v1/tickets/{c}/merge", json={"into": a}, headers=desk["staff"]).status_code == 409
    assert client.post(f"/api/v1/tickets/{a}/merge", json={"into": a}, headers=desk["staff"]).status_code == 409
    # a reply to the merged duplicate lands on the surviving ticket
    r = client.post(f"/api/v1/tickets/{b}/replies", json={"body": "any news?"}, headers=desk["ann"])
    assert r.json["number"] == a
    actions = _audit_actions(app)
    assert ("ticket.merge", f"ticket:{b}") in actions


def test_invalid_transitions_and_inputs_change_nothing(client, desk):
    n = _open(client, desk["ann"])["number"]
    client.patch(f"/api/v1/tickets/{n}", json={"status": "closed"}, headers=desk["staff"])
    r = client.patch(f"/api/v1/tickets/{n}", json={"status": "processed"}, headers=desk["staff"])
    assert r.status_code == 409 and r.json["error"]["code"] == "invalid_status_transition"
    assert client.post(f"/api/v1/tickets/{n}/request-info", json={"body": "x"},
                       headers=desk["staff"]).status_code == 409
    assert client.post(f"/api/v1/tickets/{n}/notes", json={"body": "   "}, headers=desk["staff"]).status_code == 400
    assert client.post("/api/v1/tickets", json={"subject": ""}, headers=desk["staff"]).status_code == 400
    assert client.post("/api/v1/tickets", json={"subject": "x", "customer": "Nope"},
                       headers=desk["staff"]).status_code == 404
    assert client.post("/api/v1/tickets", json={"subject": "x", "requester_email": "not-mail"},
                       headers=desk["staff"]).status_code == 400
    assert client.get("/api/v1/tickets/OTK-999999", headers=desk["staff"]).status_code == 404
    assert client.get("/api/v1/tickets/garbage", headers=desk["staff"]).status_code == 404
    assert client.get(f"/api/v1/tickets/{n}", headers=desk["staff"]).json["status"] == "closed"
    # a staff reply reopens a closed ticket
    assert client.post(f"/api/v1/tickets/{n}/replies", json={"body": "Reopening."},
                       headers=desk["staff"]).json["status"] == "in_progress"


def test_unassigned_queue_ticket_gets_a_customer(client, desk):
    n = _open(client, desk["staff"], requester_email="stranger@example.org")["number"]
    assert [t["number"] for t in client.get("/api/v1/tickets?queue=unassigned",
                                            headers=desk["staff"]).json["items"]] == [n]
    r = client.patch(f"/api/v1/tickets/{n}", json={"customer": "Globex"}, headers=desk["staff"])
    assert r.json["customer"] == "Globex"
    assert client.get("/api/v1/tickets?queue=unassigned", headers=desk["staff"]).json["total"] == 0


def _internal_ticket(app, subject="Rollout of server 2.0 halted: 31% failures"):
    from release_server.db import db
    from release_server.support import services

    with app.app_context():
        t = services.create_ticket(db.session, services.SYSTEM, subject=subject, description="internal figures",
                                   kind="problem", internal=True, notify=False)
        db.commit()
        return t.number


def test_merge_never_shows_a_customer_an_internal_or_foreign_ticket(client, app, desk):
    internal = _internal_ticket(app)
    mine = _open(client, desk["ann"], subject="Export broken")["number"]
    globex = _open(client, desk["staff"], customer="Globex", subject="Globex export")["number"]
    queued = _open(client, desk["staff"], requester_email="stranger@example.org", subject="From a stranger")["number"]
    for source, target in ((mine, internal), (internal, mine), (mine, globex), (mine, queued), (queued, mine)):
        r = client.post(f"/api/v1/tickets/{source}/merge", json={"into": target}, headers=desk["staff"])
        assert r.status_code == 409, (source, target, r.json)
        assert r.json["error"]["code"] == "invalid_merge" and r.json["error"]["field"] == "into"
    # nothing changed: the internal ticket still has no customer, the customer's ticket is open
    assert client.get(f"/api/v1/tickets/{internal}", headers=desk["staff"]).json["customer"] is None
    assert client.get(f"/api/v1/tickets/{mine}", headers=desk["staff"]).json["merged_into"] is None
    # the customer's reply answers with their own ticket, never with the internal one
    r = client.post(f"/api/v1/tickets/{mine}/replies", json={"body": "any news?"}, headers=desk["ann"])
    assert r.status_code == 201 and r.json["number"] == mine
    assert "halted" not in r.text and "internal figures" not in r.text


def test_a_merge_chain_into_a_hidden_ticket_is_not_followed(client, app, desk):
    """A chain left by older merges (into an internal ticket) stops where the customer's view ends."""
    from release_server.db import db
    from release_server.support import services

    internal = _internal_ticket(app)
    mine = _open(client, desk["ann"], subject="Export broken")["number"]
    with app.app_context():  # as an unrestricted merge left it
        src, dst = services.find_ticket(db.session, mine), services.find_ticket(db.session, internal)
        src.merged_into_id, src.status = dst.id, "closed"
        src.closed_at = services.utcnow()
        db.commit()
    r = client.post(f"/api/v1/tickets/{mine}/replies", json={"body": "still broken"}, headers=desk["ann"])
    assert r.status_code == 201, r.json
    assert r.json["number"] != internal and "halted" not in r.text and "internal figures" not in r.text
    detail = client.get(f"/api/v1/tickets/{internal}", headers=desk["staff"]).json
    assert detail["customer"] is None
    assert "still broken" not in [e["body"] for e in detail["timeline"]]
    # the portal's reply goes the same way
    from release_server.support import customers

    with app.app_context():
        user = customers.get_customer_user(db.session, "ann@acme.example")
        customers.set_password(db.session, user, "correct horse battery")
        db.commit()
    ann = app.test_client()
    form = ann.get("/portal/login").text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    assert ann.post("/portal/login", data={"email": "ann@acme.example", "password": "correct horse battery",
                                           "csrf_token": csrf}).status_code == 302
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', ann.get(f"/portal/tickets/{mine}").text).group(1)
    page = ann.post(f"/portal/tickets/{mine}/reply", data={"body": "and again", "csrf_token": csrf})
    assert page.status_code == 302 and internal not in page.headers["Location"]
    detail = client.get(f"/api/v1/tickets/{internal}", headers=desk["staff"]).json
    assert "and again" not in [e["body"] for e in detail["timeline"]]


def test_an_installation_files_requests_as_its_customers_contacts_only(client, app, desk):
    inst = enroll(client, desk["admin"], "Acme", name="berlin")
    ih = {"Authorization": f"Bearer {inst['token']}"}
    before = len(_outbox(app))
    for victim in ("victim@elsewhere.example", "boss@acme.example", "ops@globex.example"):
        r = client.post("/api/v1/tickets", json={"subject": "Hello", "requester_email": victim}, headers=ih)
        assert r.status_code == 400, r.json
        assert r.json["error"]["field"] == "requester_email"
    assert len(_outbox(app)) == before  # nothing was mailed
    assert client.get("/api/v1/tickets?customer=Acme", headers=desk["staff"]).json["total"] == 0
    # the customer's contact address and its portal users are its contacts
    for contact in ("it@acme.example", "ann@acme.example"):
        r = client.post("/api/v1/tickets", json={"subject": "Hello", "requester_email": contact}, headers=ih)
        assert r.status_code == 201 and r.json["requester_email"] == contact
    assert {m.to_addr for m in _outbox(app)[before:]} <= {"it@acme.example", "ann@acme.example"}
