"""Outbound mail end to end: ticket actions -> outbox -> worker job -> a real SMTP server (aiosmtpd),
threading of the customer's answer back onto the ticket, and an SMTP outage that loses nothing."""
from __future__ import annotations

import socket
from datetime import timedelta
from email import message_from_bytes, policy

import pytest
from aiosmtpd.controller import Controller


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Inbox:
    def __init__(self) -> None:
        self.messages = []

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, ANN201
        self.messages.append((list(envelope.rcpt_tos), message_from_bytes(envelope.content, policy=policy.default)))
        return "250 OK"


@pytest.fixture
def smtp_port():
    return free_port()


@pytest.fixture
def app_config(app_config, smtp_port):
    return {**app_config, "MAIL_BACKEND": "smtp", "SMTP_HOST": "127.0.0.1", "SMTP_PORT": smtp_port,
            "SMTP_TIMEOUT": 5.0, "SUPPORT_ADDRESS": "help@vendor.example", "MAIL_FROM": "Vendor Support "
            "<help@vendor.example>"}


@pytest.fixture
def smtp(smtp_port):
    inbox = Inbox()
    ctl = Controller(inbox, hostname="127.0.0.1", port=smtp_port)
    ctl.start()
    yield inbox
    ctl.stop()


def run_outbox(app, now=None):
    from release_server.support.mailout import deliver_outbox

    with app.app_context():
        return deliver_outbox(now=now)


def outbox_rows(app):
    from sqlalchemy import select

    from release_server.db import db
    from release_server.support.models import MailMessage

    with app.app_context():
        return list(db.session.scalars(select(MailMessage).where(MailMessage.direction == "out")
                                       .order_by(MailMessage.id)))


@pytest.fixture
def desk(client, auth):
    client.post("/api/v1/customers", json={"name": "Acme", "contact_email": "it@acme.example",
                                           "mail_domains": ["acme.example"]}, headers=auth.headers("admin"))
    return auth.headers("support")


def test_notifications_are_delivered_over_smtp_and_replies_thread_back(client, app, desk, smtp):
    t = client.post("/api/v1/tickets", json={"subject": "Login fails", "customer": "Acme",
                                             "requester_email": "bob@acme.example"}, headers=desk).json
    n = t["number"]
    client.post(f"/api/v1/tickets/{n}/replies", json={"body": "Which browser do you use?"}, headers=desk)
    client.post(f"/api/v1/tickets/{n}/request-info", json={"body": "Please send the server log."}, headers=desk)
    client.patch(f"/api/v1/tickets/{n}", json={"status": "processed", "comment": "Cookie settings fixed."},
                 headers=desk)
    jobs = {j.name: j for j in app.extensions["worker_jobs"]}
    with app.app_context():
        jobs["support-mail-outbox"].run()  # the worker job
    got = smtp.messages
    assert [rcpt for rcpt, _ in got] == [["bob@acme.example"]] * 4
    msgs = [m for _, m in got]
    assert all(m["Subject"] == f"[{n}] Login fails" for m in msgs)
    assert msgs[0]["Auto-Submitted"] == "auto-generated"  # the registration is automatic
    assert all(m["Auto-Submitted"] is None for m in msgs[1:])  # the rest were written by a person
    assert "registered" in msgs[0].get_content() and n in msgs[0].get_content()
    assert "Which browser" in msgs[1].get_content()
    assert "server log" in msgs[2].get_content()
    assert "Cookie settings fixed." in msgs[3].get_content()
    assert msgs[0]["From"] == "Vendor Support <help@vendor.example>"
    # our Message-IDs were recorded and each mail refers to the earlier ones
    rows = outbox_rows(app)
    assert [f"<{r.message_id}>" for r in rows] == [m["Message-ID"] for m in msgs]
    assert all(r.status == "sent" and r.sent_at for r in rows)
    assert msgs[3]["In-Reply-To"] == msgs[2]["Message-ID"] or msgs[3]["References"]
    # the customer answers the processed mail (no number in the subject): it threads back and reopens
    answer = (f"From: bob@acme.example\r\nTo: help@vendor.example\r\nSubject: Re: your mail\r\n"
              f"Message-ID: <answer1@acme.example>\r\nIn-Reply-To: {msgs[3]['Message-ID']}\r\n\r\n"
              "Not fixed, sorry.\r\n").encode()
    r = client.post("/api/v1/support/mail", data=answer, headers={**desk, "Content-Type": "message/rfc822"})
    assert r.status_code == 201 and r.json["ticket"] == n and r.json["outcome"] == "appended"
    assert client.get(f"/api/v1/tickets/{n}", headers=desk).json["status"] in ("new", "in_progress")


def test_smtp_outage_loses_nothing(client, app, desk, smtp_port):
    from release_server.models_common import utcnow

    for i in range(3):
        client.post("/api/v1/tickets", json={"subject": f"Request {i}", "customer": "Acme",
                                             "requester_email": f"user{i}@acme.example"}, headers=desk)
    # no SMTP server listening: every message is kept for a retry with backoff
    result = run_outbox(app)
    assert (result.sent, result.retried, result.failed) == (0, 3, 0)
    rows = outbox_rows(app)
    assert all(r.status == "pending" and r.attempts == 1 and r.last_error for r in rows)
    assert all(r.next_attempt_at > utcnow() + timedelta(seconds=30) for r in rows)
    # not due yet: nothing is tried
    assert run_outbox(app).retried == 0
    # the server comes back; at the next due time everything goes out, once
    inbox = Inbox()
    ctl = Controller(inbox, hostname="127.0.0.1", port=smtp_port)
    ctl.start()
    try:
        later = utcnow() + timedelta(hours=2)
        assert run_outbox(app, now=later).sent == 3
        assert run_outbox(app, now=later).sent == 0
    finally:
        ctl.stop()
    assert sorted(r[0][0] for r in inbox.messages) == [f"user{i}@acme.example" for i in range(3)]
    assert all(r.status == "sent" and r.attempts == 2 for r in outbox_rows(app))


def test_permanent_refusal_and_attempt_limit_mark_failed(client, app, desk, smtp_port):
    from release_server.models_common import utcnow

    app.config["MAIL_MAX_ATTEMPTS"] = 2
    client.post("/api/v1/tickets", json={"subject": "x", "customer": "Acme", "requester_email": "a@acme.example"},
                headers=desk)
    assert run_outbox(app).retried == 1
    assert run_outbox(app, now=utcnow() + timedelta(hours=2)).failed == 1
    assert outbox_rows(app)[0].status == "failed"


def test_automatic_mail_is_rate_limited_per_address(client, app, desk):
    app.config["AUTO_REPLY_LIMIT_PER_HOUR"] = 2
    raw = ("From: loop@acme.example\r\nTo: help@vendor.example\r\nSubject: hello {i}\r\n"
           "Message-ID: <m{i}@x>\r\n\r\nhi\r\n")
    for i in range(4):
        client.post("/api/v1/support/mail", data=raw.format(i=i).encode(),
                    headers={**desk, "Content-Type": "message/rfc822"})
    statuses = [r.status for r in outbox_rows(app)]
    assert statuses == ["pending", "pending", "suppressed", "suppressed"]
