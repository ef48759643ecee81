"""Every real-world sample message ingests without error through the real endpoint.

The samples are the corpus in ``tests/data/mail/`` (its INDEX.md gives each message's
source and licence). ``MAIL_SAMPLES_DIR`` points the test at another folder; an empty or
missing corpus fails the test when REQUIRE_MAIL_SAMPLES=1 and skips it otherwise.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

SAMPLES = Path(os.environ.get("MAIL_SAMPLES_DIR") or Path(__file__).resolve().parents[1] / "data" / "mail")
FILES = sorted(p for p in SAMPLES.glob("*") if p.suffix in (".eml", ".box")) if SAMPLES.is_dir() else []


def _require() -> None:
    if not FILES:
        if os.environ.get("REQUIRE_MAIL_SAMPLES", "") not in ("", "0", "false"):
            pytest.fail(f"no mail samples in {SAMPLES} (REQUIRE_MAIL_SAMPLES=1)")
        pytest.skip(f"no mail samples in {SAMPLES}")


@pytest.fixture
def staff(client, auth):
    client.post("/api/v1/customers", json={"name": "Example", "contact_email": "it@example.com",
                                           "mail_domains": ["example.com"]}, headers=auth.headers("admin"))
    return {**auth.headers("support"), "Content-Type": "message/rfc822"}


def test_every_sample_ingests(client, app, staff):
    _require()
    outcomes = {}
    for path in FILES:
        raw = path.read_bytes()
        r = client.post("/api/v1/support/mail", data=raw, headers=staff)
        assert r.status_code in (200, 201), (path.name, r.status_code, r.get_data(as_text=True))
        outcomes[path.name] = r.json["outcome"]
        if r.json["ticket"]:
            t = client.get(f"/api/v1/tickets/{r.json['ticket']}", headers=staff)
            assert t.status_code == 200, path.name
    # the loop guard held: bounces and auto-replies got no automatic answer
    from sqlalchemy import select

    from release_server.db import db
    from release_server.support.models import MailMessage

    with app.app_context():
        inbound = list(db.session.scalars(select(MailMessage).where(MailMessage.direction == "in")))
        assert len(inbound) == len(FILES) and all(m.blob_key for m in inbound)  # every raw message kept
        answered = {m.ticket_id for m in db.session.scalars(select(MailMessage).where(
            MailMessage.direction == "out", MailMessage.status != "suppressed"))}
        human = {m.ticket_id for m in inbound if m.status == "stored"}
        assert answered <= human  # nothing automatic went out for a bounce or an auto-reply
    bounces = [n for n, o in outcomes.items() if o.startswith("bounce")]
    assert {"sisimai-postfix62-bounce-virus-zip.eml", "kix-PostMaster-Test10-postfix-dsn-ticket.box",
            "sisimai-yandex01-dsn-ru-utf8.eml"} <= set(bounces)
    for name in ("sisimai-rfc3834-04-exchange-automatic-reply.eml",
                 "sisimai-rfc3834-06-auto-submitted-precedence-bulk.eml"):
        assert outcomes[name] in ("created", "auto_reply")
    # samples keep working when sent twice (an MTA retry): duplicates, not new tickets
    total = client.get("/api/v1/tickets", headers=staff).json["total"]
    for path in FILES:
        r = client.post("/api/v1/support/mail", data=path.read_bytes(), headers=staff)
        assert r.status_code in (200, 201), path.name
    assert client.get("/api/v1/tickets", headers=staff).json["total"] <= total + sum(
        1 for p in FILES if b"message-id:" not in p.read_bytes().lower())


def test_samples_with_attachments_keep_them(client, staff):
    _require()
    by_name = {p.name: p for p in FILES}
    expected = {"zbateson-m0011-outlook-png-attachments.eml": 3,
                "kix-PostMaster-Test6-outlook-pdf-rfc2047-filenames.box": 3,
                "zammad-mail024-csv-attachment-empty-body.box": 1}
    for name, count in expected.items():
        if name not in by_name:
            continue
        r = client.post("/api/v1/support/mail", data=by_name[name].read_bytes(), headers=staff)
        t = client.get(f"/api/v1/tickets/{r.json['ticket']}", headers=staff).json
        assert len(t["attachments"]) >= count, (name, [a["filename"] for a in t["attachments"]])
        for att in t["attachments"]:
            dl = client.get(att["url"], headers=staff)
            assert dl.status_code == 200 and len(dl.data) == att["size"]
            assert dl.headers["X-Content-Type-Options"] == "nosniff"
            dl.close()
