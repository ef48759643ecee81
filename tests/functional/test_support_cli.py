"""Staff commands: tickets, customer users, mail ingest/poll/outbox; audited like the API."""
from __future__ import annotations

import pytest


@pytest.fixture
def acme(client, auth):
    client.post("/api/v1/customers", json={"name": "Acme", "contact_email": "it@acme.example",
                                           "mail_domains": ["acme.example"]}, headers=auth.headers("admin"))
    return auth.headers("support")


def invoke(runner, *args):
    r = runner.invoke(args=list(args))
    assert r.exit_code == 0, r.output
    return r.output


MAIL = (b"From: bob@acme.example\r\nTo: support@localhost\r\nSubject: Backup job fails\r\n"
        b"Message-ID: <cli-1@acme.example>\r\n\r\nThe nightly backup fails since the update.\r\n")


def test_ticket_commands(runner, client, app, acme, tmp_path):
    eml = tmp_path / "m.eml"
    eml.write_bytes(MAIL)
    assert "created" in invoke(runner, "mail", "ingest", str(eml))
    out = invoke(runner, "tickets", "list", "--customer", "Acme")
    number = out.split()[0]
    assert number.startswith("OTK-") and "Backup job fails" in out
    invoke(runner, "tickets", "note", number, "-m", "Looks like the disk is full")
    invoke(runner, "tickets", "request-info", number, "-m", "Please send backup.log")
    assert number in invoke(runner, "tickets", "list", "--status", "waiting_for_customer")
    invoke(runner, "tickets", "reply", number, "-m", "Thanks, we are looking at it")
    invoke(runner, "tickets", "set", number, "--kind", "problem", "--priority", "high", "--assignee", "support-user")
    assert "processed" in invoke(runner, "tickets", "set", number, "--status", "processed", "-m", "Disk cleaned up")
    shown = invoke(runner, "tickets", "show", number)
    assert "Looks like the disk is full" in shown and "(internal)" in shown and "Disk cleaned up" in shown
    assert "problem/high" in shown
    # errors: clear message, non-zero exit, nothing changed
    bad = runner.invoke(args=["tickets", "set", number, "--status", "waiting_for_customer"])
    assert bad.exit_code == 1 and "cannot go from processed" in bad.output
    assert runner.invoke(args=["tickets", "show", "OTK-999999"]).exit_code == 1
    # merge and auto-close
    eml.write_bytes(MAIL.replace(b"cli-1", b"cli-2").replace(b"Backup job fails", b"Backup still failing"))
    invoke(runner, "mail", "ingest", str(eml))
    dup = [line.split()[0] for line in invoke(runner, "tickets", "list", "-q", "still").splitlines()][0]
    client.patch(f"/api/v1/tickets/{number}", json={"status": "in_progress"}, headers=acme)
    invoke(runner, "tickets", "merge", dup, "--into", number)
    assert f"merged into {number.lower()}" in invoke(runner, "tickets", "show", dup).lower()
    assert "closed 0 ticket(s)" in invoke(runner, "tickets", "auto-close")
    # every change was audited
    from release_server.accounts.services import list_audit
    from release_server.db import db

    with app.app_context():
        actions = {e.action for e in list_audit(db.session, limit=200) if e.target == f"ticket:{number}"}
    assert {"ticket.note", "ticket.request_info", "ticket.reply", "ticket.update"} <= actions
    # the outbox goes out through the console backend
    assert "sent" in invoke(runner, "mail", "send-outbox")


def test_customer_user_commands_issue_a_working_token(runner, client, acme):
    assert "created customer user" in invoke(runner, "customer-users", "create", "ann@acme.example",
                                             "--customer", "Acme", "--name", "Ann")
    token = invoke(runner, "customer-users", "token", "ann@acme.example").strip().splitlines()[-1]
    assert token.startswith("rsc_")
    r = client.post("/api/v1/tickets", json={"subject": "From the CLI token"},
                    headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 201 and r.json["customer"] == "Acme"
    dup = runner.invoke(args=["customer-users", "create", "ann@acme.example", "--customer", "Acme"])
    assert dup.exit_code == 1 and "already exists" in dup.output


def test_mail_poll_stores_and_marks_done(runner, client, acme, monkeypatch):
    from release_server.support import imap

    class Box:
        seen: set = set()

        def __init__(self):
            self.messages = {b"7": MAIL, b"8": b"\x00not a mail"}

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return None

        def pending(self, limit):
            return [u for u in self.messages if u not in self.seen][:limit]

        def fetch(self, uid):
            return self.messages[uid]

        def mark_done(self, uid):
            self.seen.add(uid)

    box = Box()
    monkeypatch.setattr(imap.ImapFetcher, "from_config", classmethod(lambda cls, config: box))
    out = invoke(runner, "mail", "poll")
    assert "2 stored" in out and "created 1" in out and "unparseable 1" in out
    assert box.seen == {b"7", b"8"}
    assert client.get("/api/v1/tickets?q=backup", headers=acme).json["total"] == 1


def test_mail_poll_without_imap_settings_fails_cleanly(runner):
    r = runner.invoke(args=["mail", "poll"])
    assert r.exit_code == 1 and "IMAP_HOST" in r.output
