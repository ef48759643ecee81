"""The duplicate check comes before parsing: an MTA retry or a message fetched twice costs one
lookup, and a message without Message-ID is known by its bytes."""
from __future__ import annotations

import pytest

WITH_ID = (b"From: Bob <bob@acme.example>\r\nTo: support@localhost\r\nSubject: Printer\r\n"
           b"Message-ID: <retry-1@acme.example>\r\n\r\nOffline.\r\n")
WITHOUT_ID = b"From: Bob <bob@acme.example>\r\nTo: support@localhost\r\nSubject: No id\r\n\r\nHello.\r\n"


def post(client, auth, raw):
    return client.post("/api/v1/support/mail", data=raw,
                       headers={**auth.headers("support"), "Content-Type": "message/rfc822"})


@pytest.mark.parametrize("raw", [WITH_ID, WITHOUT_ID])
def test_a_second_delivery_is_neither_parsed_nor_stored(client, auth, app, raw, monkeypatch):
    from release_server.support import mailin

    first = post(client, auth, raw)
    assert first.status_code == 201 and first.json["outcome"] == "created"

    def must_not_parse(*args, **kwargs):
        raise AssertionError("a duplicate was parsed")

    monkeypatch.setattr(mailin, "parse_message", must_not_parse)
    stored = []
    from release_server.storage import get_storage

    with app.app_context():
        storage = get_storage()
    real_put = type(storage).put_stream
    monkeypatch.setattr(type(storage), "put_stream", lambda self, *a, **k: stored.append(1) or real_put(self, *a, **k))
    again = post(client, auth, raw)
    assert again.status_code == 200 and again.json["outcome"] == "duplicate"
    assert again.json["ticket"] == first.json["ticket"]
    assert stored == []


def test_messages_without_id_differing_in_one_byte_are_two_messages(client, auth):
    assert post(client, auth, WITHOUT_ID).json["outcome"] == "created"
    assert post(client, auth, WITHOUT_ID.replace(b"Hello.", b"Hello!")).json["outcome"] in ("created", "appended")


def test_the_message_id_is_compared_without_case(client, auth):
    assert post(client, auth, WITH_ID).json["outcome"] == "created"
    assert post(client, auth, WITH_ID.replace(b"retry-1@acme.example", b"RETRY-1@ACME.EXAMPLE")).json["outcome"] \
        == "duplicate"
