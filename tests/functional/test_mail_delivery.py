"""Outbound mail against a real SMTP server (aiosmtpd): the hand-off is recorded before the
connection ends, a second copy keeps its Message-ID, a refused recipient leaves a trace,
and the acknowledgement of a mailed request threads onto the customer's mail."""
from __future__ import annotations

import socket
import threading
from datetime import timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest
from aiosmtpd.controller import Controller
from factories import timeline_in
from sqlalchemy import select


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """Records what it accepts; can refuse recipients and look at the outbox while QUIT is pending."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.refuse: set[str] = set()
        self.on_quit = None
        self.quit_seen: list[object] = []
        self.on_data = None
        self.data_seen: list[object] = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: ANN001, ANN201
        if address in self.refuse:
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, ANN201
        if self.on_data is not None:
            self.data_seen.append(self.on_data())
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"

    async def handle_QUIT(self, server, session, envelope):  # noqa: ANN001, ANN201
        if self.on_quit is not None:
            self.quit_seen.append(self.on_quit())
        return "221 Bye"


@pytest.fixture
def smtp_port():
    return free_port()


@pytest.fixture
def app_config(app_config, smtp_port):
    return {**app_config, "MAIL_BACKEND": "smtp", "SMTP_HOST": "127.0.0.1", "SMTP_PORT": smtp_port,
            "SMTP_TIMEOUT": 5.0, "SUPPORT_ADDRESS": "help@vendor.example",
            "MAIL_FROM": "Vendor Support <help@vendor.example>"}


@pytest.fixture
def smtp(smtp_port):
    server = Server()
    ctl = Controller(server, hostname="127.0.0.1", port=smtp_port)
    ctl.start()
    yield server
    ctl.stop()


@pytest.fixture
def desk(client, auth):
    client.post("/api/v1/customers", json={"name": "Acme", "contact_email": "it@acme.example",
                                           "mail_domains": ["acme.example"]}, headers=auth.headers("admin"))
    return auth.headers("support")


def rows(app):
    from release_server.db import db
    from release_server.support.models import MailMessage

    with app.app_context():
        return list(db.session.scalars(select(MailMessage).where(MailMessage.direction == "out")
                                       .order_by(MailMessage.id)))


def deliver(app, now=None):
    from release_server.support.mailout import deliver_outbox

    with app.app_context():
        return deliver_outbox(now=now)


def status_of(app, mail_id):
    from release_server.db import db
    from release_server.support.models import MailMessage

    with app.app_context():
        session = db.new_session(write=False)
        try:
            return session.get(MailMessage, mail_id).status
        finally:
            session.close()


def open_ticket(client, desk, email="bob@acme.example"):
    return client.post("/api/v1/tickets", json={"subject": "Login fails", "customer": "Acme",
                                                "requester_email": email}, headers=desk).json["number"]


def test_the_hand_off_is_recorded_before_the_connection_ends(client, app, desk, smtp):
    open_ticket(client, desk)
    (mail,) = rows(app)
    smtp.on_quit = lambda: status_of(app, mail.id)
    result = deliver(app)
    assert result.sent == 1
    # While the server was still to answer QUIT, the row already said "sent": a crash or a
    # hanging QUIT from here on cannot make the next claim send it again.
    assert smtp.quit_seen == ["sent"]
    assert len(smtp.messages) == 1


def test_a_copy_after_a_crash_keeps_the_message_id_and_date(client, app, desk, smtp, monkeypatch):
    from release_server.support import mailout

    open_ticket(client, desk)
    (mail,) = rows(app)
    real_finish = mailout._finish

    def crash(*args, **kwargs):  # the process dies between the server's 250 and the commit
        raise KeyboardInterrupt

    monkeypatch.setattr(mailout, "_finish", crash)
    with pytest.raises(KeyboardInterrupt):
        deliver(app)
    monkeypatch.setattr(mailout, "_finish", real_finish)
    assert status_of(app, mail.id) == "sending"
    assert deliver(app).sent == 0  # the claim still holds
    later = rows(app)[0].next_attempt_at + timedelta(seconds=1)
    assert deliver(app, now=later).sent == 1
    first, second = smtp.messages
    assert first["Message-ID"] == second["Message-ID"] == f"<{mail.message_id}>"
    assert first["Date"] == second["Date"]


def test_the_claim_outlasts_the_whole_smtp_conversation(client, app, desk, smtp):
    from release_server.support.mailout import get_backend

    open_ticket(client, desk)
    (before,) = rows(app)
    now = before.next_attempt_at
    with app.app_context():
        backend = get_backend()
    smtp.on_data = lambda: rows(app)[0]
    deliver(app, now=now)
    (during,) = smtp.data_seen
    # While the worker talked to the server, no other worker could claim the row before
    # the longest conversation the backend allows was over.
    assert during.status == "sending"
    assert (during.next_attempt_at - now).total_seconds() > backend.deadline >= 4 * backend.timeout


def test_a_slow_server_is_cut_off_at_the_deadline(smtp_port):
    from release_server.support.errors import MailDeliveryError
    from release_server.support.mailbackends import SMTPBackend

    release = threading.Event()

    class Stalling:
        async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, ANN201
            import asyncio

            for _ in range(100):
                if release.is_set():
                    break
                await asyncio.sleep(0.05)
            return "250 OK"

    ctl = Controller(Stalling(), hostname="127.0.0.1", port=smtp_port)
    ctl.start()
    try:
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = "a@vendor.example", "b@acme.example", "s"
        msg.set_content("x")
        accepted = []
        with pytest.raises(MailDeliveryError) as err:
            SMTPBackend("127.0.0.1", smtp_port, timeout=30, deadline=1.0).send(msg, on_accepted=lambda: accepted.append(1))
        assert err.value.temporary and "did not finish within" in err.value.message
        assert accepted == []
    finally:
        release.set()
        ctl.stop()


def test_a_recipient_refused_for_good_is_marked_and_noted_on_the_ticket(client, app, desk, smtp):
    smtp.refuse.add("gone@acme.example")
    number = open_ticket(client, desk, email="gone@acme.example")
    result = deliver(app)
    assert result.failed == 1 and result.sent == 0
    (mail,) = rows(app)
    assert mail.status == "failed" and mail.outcome == "refused"
    assert "550" in mail.last_error
    ticket = client.get(f"/api/v1/tickets/{number}", headers=desk).json
    notes = [e for e in ticket["timeline"] if e["kind"] == "mail_refused"]
    assert len(notes) == 1 and not notes[0]["public"]
    assert "gone@acme.example" in notes[0]["body"] and "550" in notes[0]["body"]
    (note_ru,) = [b for b in timeline_in(app, "ru", number) if "gone@acme.example" in b]
    assert note_ru.startswith("Почтовый сервер окончательно отказался принять письмо «") and "550" in note_ru
    assert smtp.messages == []


def test_the_acknowledgement_threads_onto_the_mail_that_opened_the_ticket(client, app, desk, smtp):
    raw = (b"From: Bob <bob@acme.example>\r\nTo: help@vendor.example\r\nSubject: Export broken\r\n"
           b"Message-ID: <first@client.example>\r\nReferences: <root@client.example>\r\n\r\nIt fails.\r\n")
    r = client.post("/api/v1/support/mail", data=raw, headers={**desk, "Content-Type": "message/rfc822"})
    assert r.status_code == 201 and r.json["outcome"] == "created"
    (ack,) = rows(app)
    assert ack.kind == "registered"
    assert ack.in_reply_to == "first@client.example"
    assert ack.references[-1] == "first@client.example"
    assert "root@client.example" in ack.references
    deliver(app)
    (sent,) = smtp.messages
    assert sent["In-Reply-To"] == "<first@client.example>"
    assert "<root@client.example>" in sent["References"] and sent["References"].endswith("<first@client.example>")


def _claim_as(app, mail_id, holder, lease_expires_in):
    """As a worker ``holder`` that claimed the mail and whose lease runs out in ``lease_expires_in``."""
    from release_server.db import db
    from release_server.models_common import utcnow
    from release_server.support.models import MailMessage
    from release_server.worker import WORKER_LEASE, WorkerLease

    with app.app_context():
        mail = db.session.get(MailMessage, mail_id)
        mail.status, mail.claimed_by, mail.next_attempt_at = "sending", holder, utcnow() + timedelta(hours=1)
        lease = db.session.get(WorkerLease, WORKER_LEASE) or WorkerLease(name=WORKER_LEASE)
        lease.holder, lease.expires_at = holder, utcnow() + lease_expires_in
        db.session.add(lease)
        db.commit()


def test_a_dead_workers_claim_is_handed_to_the_worker_that_takes_over(client, app, desk, smtp):
    from release_server import worker

    open_ticket(client, desk)
    mail = rows(app)[0]
    _claim_as(app, mail.id, "dead-node:1:aaaa", timedelta(seconds=-1))  # killed mid-send: its lease ran out
    assert deliver(app).sent == 0  # nobody else touches a claim by itself
    with app.app_context():
        assert worker.acquire_lease("live-node:2:bbbb", 30)  # the takeover
    assert status_of(app, mail.id) == "pending"
    assert deliver(app).sent == 1
    assert [m["Message-ID"] for m in smtp.messages] == [f"<{mail.message_id}>"]
    assert rows(app)[0].claimed_by is None


def test_a_live_workers_claim_and_lease_are_left_alone(client, app, desk, smtp):
    from release_server import worker

    open_ticket(client, desk)
    mail = rows(app)[0]
    _claim_as(app, mail.id, "busy-node:1:cccc", timedelta(seconds=30))
    with app.app_context():
        assert not worker.acquire_lease("other-node:2:dddd", 30)
    assert status_of(app, mail.id) == "sending" and deliver(app).sent == 0


def test_a_worker_that_lost_its_lease_stops_sending(client, app, desk, smtp):
    from release_server import worker
    from release_server.db import db
    from release_server.worker import WORKER_LEASE, WorkerLease

    for i in range(3):
        open_ticket(client, desk, email=f"user{i}@acme.example")
    with app.app_context():
        assert worker.acquire_lease("me:1:eeee", 30)
        lease = db.session.get(WorkerLease, WORKER_LEASE)
        lease.holder = "someone-else:2:ffff"  # taken over while this worker was paused
        db.commit()
        worker._current_holder, worker._current_ttl = "me:1:eeee", 30.0
        try:
            assert deliver(app).sent == 0
        finally:
            worker._current_holder = None
    assert smtp.messages == [] and {r.status for r in rows(app)} == {"pending"}
