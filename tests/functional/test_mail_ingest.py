"""Inbound mail through POST /api/v1/support/mail: new tickets, threading, the loop guard, bounces,
attachments, duplicates and unparseable input. On SQLite and PostgreSQL."""
from __future__ import annotations

from email.message import EmailMessage
from email.utils import make_msgid

import pytest
from factories import timeline_in


@pytest.fixture
def desk(client, auth):
    admin = auth.headers("admin")
    client.post("/api/v1/customers", json={"name": "Acme", "contact_email": "it@acme.example",
                                           "mail_domains": ["acme.example"]}, headers=admin)
    client.post("/api/v1/customers", json={"name": "Globex", "contact_email": "ops@globex.example"}, headers=admin)
    return {"staff": auth.headers("support"), "admin": admin}


def mail(sender="bob@acme.example", subject="Invoice export fails", body="The export stops at 50 %.", *,
         headers=None, attachments=(), msgid=None):
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "support@localhost"
    msg["Subject"] = subject
    msg["Message-ID"] = msgid or make_msgid(domain="client.example")
    for k, v in (headers or {}).items():
        msg[k] = v
    msg.set_content(body)
    for name, data, ctype in attachments:
        maintype, subtype = ctype.split("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return msg.as_bytes()


def post(client, desk, raw, expect=201):
    r = client.post("/api/v1/support/mail", data=raw, headers={**desk["staff"], "Content-Type": "message/rfc822"})
    assert r.status_code == expect, r.get_data(as_text=True)
    return r.json


def ticket(client, desk, number):
    return client.get(f"/api/v1/tickets/{number}", headers=desk["staff"]).json


def outbox(app):
    from sqlalchemy import select

    from release_server.db import db
    from release_server.support.models import MailMessage

    with app.app_context():
        return list(db.session.scalars(select(MailMessage).where(MailMessage.direction == "out")
                                       .order_by(MailMessage.id)))


def test_known_contact_opens_ticket_for_customer_and_gets_the_number(client, app, desk):
    r = post(client, desk, mail("Bob <bob@acme.example>"))
    assert r["outcome"] == "created" and r["auto_answer"] is True
    t = ticket(client, desk, r["ticket"])
    assert (t["customer"], t["source"], t["requester_email"]) == ("Acme", "mail", "bob@acme.example")
    assert "The export stops" in t["description"]
    [m] = outbox(app)
    assert m.to_addr == "bob@acme.example" and m.subject == f"[{r['ticket']}] Invoice export fails"
    assert m.kind == "registered" and m.auto_generated
    # contact address (exact), a customer user, and the mail domain all identify the customer
    assert ticket(client, desk, post(client, desk, mail("ops@globex.example"))["ticket"])["customer"] == "Globex"
    client.post("/api/v1/customer-users", json={"email": "eve@gmail.example", "customer": "Globex"},
                headers=desk["staff"])
    assert ticket(client, desk, post(client, desk, mail("eve@gmail.example"))["ticket"])["customer"] == "Globex"


def test_unknown_sender_lands_in_the_unassigned_queue(client, desk):
    r = post(client, desk, mail("stranger@example.org", subject="Question about licences"))
    assert r["outcome"] == "created" and "unassigned" in r["detail"]
    queue = client.get("/api/v1/tickets?queue=unassigned", headers=desk["staff"]).json["items"]
    assert [t["number"] for t in queue] == [r["ticket"]]
    assert queue[0]["customer"] is None


def test_threading_by_number_and_by_our_message_id_with_trimmed_reply(client, app, desk):
    first = post(client, desk, mail())
    n = first["ticket"]
    client.post(f"/api/v1/tickets/{n}/request-info", json={"body": "Please send the export log."},
                headers=desk["staff"])
    ours = [m for m in outbox(app) if m.kind == "request_info"][0]
    # a reply that quotes our text, threaded by In-Reply-To only (the subject lost the number)
    quoted = "Here is the log.\n\nOn Mon, Support wrote:\n> Please send the export log.\n"
    r = post(client, desk, mail(subject="Re: your question", body=quoted,
                                headers={"In-Reply-To": f"<{ours.message_id}>"},
                                attachments=[("export.log", b"ERROR at line 7\n", "text/plain")]))
    assert (r["outcome"], r["ticket"]) == ("appended", n)
    t = ticket(client, desk, n)
    assert t["status"] == "in_progress"  # it was waiting for the customer
    msg = [e for e in t["timeline"] if e["kind"] == "customer_message"][-1]
    assert msg["body"].strip() == "Here is the log." and msg["public"]
    assert [a["filename"] for a in t["attachments"]] == ["export.log"]
    # by [OTK-n] in the subject, from another address of the same customer (mail domain)
    r = post(client, desk, mail("carol@acme.example", subject=f"RE: [{n}] Invoice export fails", body="Me too."))
    assert (r["outcome"], r["ticket"]) == ("appended", n)
    # replies to an existing ticket get no automatic answer
    assert [m.kind for m in outbox(app)] == ["registered", "request_info"]
    # the raw message is kept and can be downloaded by staff
    raw = client.get(f"/api/v1/support/mail/{r['mail_id']}/raw", headers=desk["staff"])
    assert raw.status_code == 200 and b"Me too." in raw.data
    raw.close()


def test_guessed_number_from_a_stranger_does_not_write_into_the_ticket(client, desk):
    n = post(client, desk, mail())["ticket"]
    r = post(client, desk, mail("mallory@evil.example", subject=f"[{n}] hello"))
    assert r["outcome"] == "created" and r["ticket"] != n
    assert not any(e["body"] == "The export stops at 50 %." and e["author"] == "mallory@evil.example"
                   for e in ticket(client, desk, n)["timeline"])


def test_reply_to_processed_ticket_reopens_or_opens_linked_ticket(client, app, desk):
    n = post(client, desk, mail())["ticket"]
    client.patch(f"/api/v1/tickets/{n}", json={"status": "processed", "comment": "Fixed."}, headers=desk["staff"])
    r = post(client, desk, mail(subject=f"Re: [{n}] Invoice export fails", body="Still failing."))
    assert (r["outcome"], r["ticket"]) == ("appended", n)
    assert ticket(client, desk, n)["status"] == "new"
    client.patch(f"/api/v1/tickets/{n}", json={"status": "processed"}, headers=desk["staff"])
    from datetime import timedelta

    from release_server.db import db
    from release_server.support.services import find_ticket

    with app.app_context():
        t = find_ticket(db.session, n)
        t.processed_at -= timedelta(days=app.config["REOPEN_DAYS"] + 1)
        db.commit()
    r = post(client, desk, mail(subject=f"Re: [{n}] Invoice export fails", body="Again, months later."))
    assert r["outcome"] == "follow_up" and r["ticket"] != n
    assert ticket(client, desk, r["ticket"])["previous_ticket"] == n


@pytest.mark.parametrize("extra", [{"Auto-Submitted": "auto-replied"}, {"Precedence": "bulk", "Auto-Submitted":
                                                                        "auto-generated"}])
def test_auto_submitted_mail_gets_no_answer(client, app, desk, extra):
    r = post(client, desk, mail("bob@acme.example", subject="Out of office", headers=extra))
    assert r["outcome"] == "created" and r["auto_answer"] is False
    assert outbox(app) == []


def test_auto_reply_on_a_thread_is_an_internal_note_and_reopens_nothing(client, app, desk):
    n = post(client, desk, mail())["ticket"]
    client.post(f"/api/v1/tickets/{n}/request-info", json={"body": "Logs please"}, headers=desk["staff"])
    r = post(client, desk, mail(subject=f"Automatic reply: [{n}] Invoice export fails", body="I am away.",
                                headers={"Auto-Submitted": "auto-replied"}))
    assert r["outcome"] == "auto_reply"
    t = ticket(client, desk, n)
    assert t["status"] == "waiting_for_customer"
    note = t["timeline"][-1]
    assert note["kind"] == "auto_reply" and not note["public"]
    assert len(outbox(app)) == 2  # registered + request_info, nothing answered the auto-reply


def test_mailer_daemon_is_never_answered(client, app, desk):
    r = post(client, desk, mail("MAILER-DAEMON@mx.example.org", subject="Warning: delayed mail"))
    assert r["auto_answer"] is False
    assert outbox(app) == []


def test_bounce_of_our_mail_becomes_an_internal_note(client, app, desk):
    n = post(client, desk, mail("bob@acme.example"))["ticket"]
    ours = outbox(app)[0]
    bounce = (
        "From: MAILER-DAEMON@mx.acme.example\r\nTo: support@localhost\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\nAuto-Submitted: auto-replied\r\n"
        f"Message-ID: <bounce1@mx.acme.example>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nThe mail system: <bob@acme.example>: mailbox unknown\r\n"
        "--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.acme.example\r\n\r\n"
        "Final-Recipient: rfc822; bob@acme.example\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "--b\r\nContent-Type: message/rfc822\r\n\r\n"
        f"From: support@localhost\r\nTo: bob@acme.example\r\nSubject: {ours.subject}\r\n"
        f"Message-ID: <{ours.message_id}>\r\n\r\nYour request has been registered.\r\n--b--\r\n").encode()
    r = post(client, desk, bounce)
    assert (r["outcome"], r["ticket"], r["auto_answer"]) == ("bounce", n, False)
    t = ticket(client, desk, n)
    assert t["timeline"][-1]["kind"] == "bounce" and not t["timeline"][-1]["public"]
    assert t["timeline"][-1]["body"].startswith("Delivery failure (mailer-daemon@mx.acme.example): Undelivered")
    ru = timeline_in(app, "ru", n)[-1]
    assert ru.startswith("Письмо не доставлено (mailer-daemon@mx.acme.example): Undelivered")
    assert "mailbox unknown" in ru
    assert len(outbox(app)) == 1
    assert client.get("/api/v1/tickets", headers=desk["staff"]).json["total"] == 1  # no ticket from the bounce


def test_duplicate_message_id_is_stored_once(client, desk):
    raw = mail(msgid="<same-id@client.example>")
    first = post(client, desk, raw)
    again = post(client, desk, raw, expect=200)
    assert again["outcome"] == "duplicate" and again["ticket"] == first["ticket"]
    assert client.get("/api/v1/tickets", headers=desk["staff"]).json["total"] == 1


def test_unparseable_input_is_kept_and_refused_with_422(client, app, desk):
    r = client.post("/api/v1/support/mail", data=b"\x00\x01 this is not a mail at all",
                    headers={**desk["staff"], "Content-Type": "message/rfc822"})
    assert r.status_code == 422 and r.json["error"]["code"] == "unparseable_mail"
    from sqlalchemy import select

    from release_server.db import db
    from release_server.storage import get_storage
    from release_server.support.models import MailMessage

    with app.app_context():
        [m] = db.session.scalars(select(MailMessage).where(MailMessage.status == "unparseable"))
        assert get_storage().read(m.blob_key) == b"\x00\x01 this is not a mail at all"
    assert client.post("/api/v1/support/mail", data=b"", headers={**desk["staff"], "Content-Type":
                       "message/rfc822"}).status_code == 400


def test_mail_limits_and_roles(client, app, desk, auth):
    app.config.update(MAX_MAIL_SIZE=2000, MAX_ATTACHMENTS_PER_TICKET=1)
    big = client.post("/api/v1/support/mail", data=mail(body="x" * 3000),
                      headers={**desk["staff"], "Content-Type": "message/rfc822"})
    assert big.status_code == 413
    r = post(client, desk, mail(attachments=[("a.txt", b"a", "text/plain"), ("b.txt", b"b", "text/plain")]))
    t = ticket(client, desk, r["ticket"])
    assert [a["filename"] for a in t["attachments"]] == ["a.txt"]
    assert any(e["kind"] == "note" and "b.txt" in e["body"] for e in t["timeline"])
    ru = [b for b in timeline_in(app, "ru", r["ticket"]) if "b.txt" in b]
    assert ru == ["Вложения не сохранены (они остались в исходном письме): b.txt (у обращения уже 1 вложений)"]
    assert client.post("/api/v1/support/mail", data=mail(), headers={**auth.headers("publisher"),
                       "Content-Type": "message/rfc822"}).status_code == 403


def test_the_sender_is_matched_by_index_among_many_customers(app):
    """Mail finds its customer in a few indexed lookups: by user, contact, earlier requester, then domain."""
    from sqlalchemy import event

    from release_server.db import db
    from release_server.fleet import services as fleet
    from release_server.support.mailin import identify_customer

    with app.app_context():
        for i in range(300):
            fleet.create_customer(db.session, f"Customer {i}", f"it@c{i}.example", [f"C{i}.Example", f"@mail.c{i}.example"])
        db.commit()
        db.session.expunge_all()
        statements = []

        def count(conn, cursor, statement, *rest):  # noqa: ANN001, ANN002
            statements.append(statement)

        event.listen(db.engine, "before_cursor_execute", count)
        try:
            found = identify_customer(db.session, "Ann <ann@MAIL.c299.example>")
        finally:
            event.remove(db.engine, "before_cursor_execute", count)
        assert found is not None and found.name == "Customer 299"
        scans = [s for s in statements if "FROM customers" in s and "WHERE" not in s]
        assert scans == []  # not every customer read to find one
        assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) <= 5
        assert identify_customer(db.session, "it@c7.example").name == "Customer 7"  # contact address
        assert identify_customer(db.session, "IT@C7.example").name == "Customer 7"  # whatever the case
        assert identify_customer(db.session, "x@c8.example").name == "Customer 8"  # a domain, stored lower-case
        assert identify_customer(db.session, "x@unknown.example") is None
