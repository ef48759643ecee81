"""The IMAP poll loop with an in-memory mailbox: done only after storing; failures stay pending."""
from __future__ import annotations

import pytest

from release_server.errors import ConfigError
from release_server.support.imap import ImapFetcher, poll


class FakeMailbox:
    def __init__(self, messages: dict[bytes, bytes]) -> None:
        self.messages = dict(messages)
        self.seen: set[bytes] = set()
        self.fetched: list[bytes] = []

    def pending(self, limit: int) -> list[bytes]:
        return [uid for uid in sorted(self.messages) if uid not in self.seen][:limit]

    def fetch(self, uid: bytes) -> bytes:
        self.fetched.append(uid)
        return self.messages[uid]

    def mark_done(self, uid: bytes) -> None:
        self.seen.add(uid)


def test_messages_are_marked_seen_only_after_they_are_stored():
    box = FakeMailbox({b"1": b"one", b"2": b"two", b"3": b"three"})
    stored = []

    def store(raw: bytes) -> str:
        assert not box.seen & {k for k, v in box.messages.items() if v == raw}  # not yet seen while storing
        stored.append(raw)
        return "created"

    result = poll(box, store)
    assert stored == [b"one", b"two", b"three"] and box.seen == {b"1", b"2", b"3"}
    assert (result.stored, result.failed, result.outcomes) == (3, 0, {"created": 3})
    assert poll(box, store).stored == 0  # nothing unseen any more


def test_a_failing_message_stays_unseen_and_the_others_go_on():
    box = FakeMailbox({b"1": b"one", b"2": b"boom", b"3": b"three"})

    def store(raw: bytes) -> str:
        if raw == b"boom":
            raise RuntimeError("database down")
        return "appended"

    result = poll(box, store)
    assert (result.stored, result.failed) == (2, 1)
    assert box.seen == {b"1", b"3"}
    assert "2 stored" in str(result) and "1 failed" in str(result)
    # the next poll tries it again
    result = poll(box, lambda raw: "created")
    assert result.stored == 1 and box.seen == {b"1", b"2", b"3"}


def test_limit_is_honoured():
    box = FakeMailbox({str(i).encode(): b"m" for i in range(10)})
    assert poll(box, lambda raw: "created", limit=4).stored == 4
    assert len(box.seen) == 4


def test_configuration_is_required():
    with pytest.raises(ConfigError):
        ImapFetcher.from_config({"IMAP_HOST": None, "IMAP_USER": None})
    f = ImapFetcher.from_config({"IMAP_HOST": "imap.example", "IMAP_USER": "desk", "IMAP_PASSWORD": "pw",
                                 "IMAP_PORT": 143, "IMAP_SSL": False, "IMAP_FOLDER": "Support Inbox"})
    assert (f.host, f.port, f.use_ssl, f.folder) == ("imap.example", 143, False, "Support Inbox")


@pytest.mark.parametrize("name, encoded", [
    ("INBOX", "INBOX"),
    ("Входящие", "&BBIERQQ+BDQETwRJBDgENQ-"),
    ("Support & Sales", "Support &- Sales"),
    ("Obr\u00e1zky/2026", "Obr&AOE-zky/2026"),
    ("\U0001F4EC mail", "&2D3c7A- mail"),
])
def test_folder_names_travel_in_modified_utf7(name, encoded):
    from release_server.support.imap import decode_mailbox_name, encode_mailbox_name

    assert encode_mailbox_name(name) == encoded
    assert decode_mailbox_name(encoded) == name


def test_done_keyword_must_be_an_atom():
    with pytest.raises(ConfigError):
        ImapFetcher("h", 143, "u", "p", done_keyword="two words")
