"""Fingerprints: what varies between occurrences is removed, what names the cause is kept."""
from __future__ import annotations

import pytest

from release_server.support.fingerprint import fingerprint, normalise_message


@pytest.mark.parametrize("a, b", [
    ("Migration 0042 failed after 30s", "Migration 7 failed after 1200s"),
    ("timeout at 2025-03-01T10:00:00Z", "timeout at 2024-12-31 23:59:59.123+01:00"),
    ("timeout at 10:00:01", "timeout at 23:59:59,5"),
    ("cannot write /var/lib/crm/db.sqlite", "cannot write /srv/other/place/data.db"),
    ("cannot write C:\\CRM\\data\\db.sqlite", "cannot write D:\\x\\y.db"),
    ("cannot read ./conf/app.toml", "cannot read ~/other.toml"),
    ("GET http://10.0.0.1:8080/health -> 503", "GET https://crm.example/health?x=1 -> 500"),
    ("tx 9f8e7d6c5b4a aborted", "tx 000000000042 aborted"),
    ("pointer 0x7ffe1234 invalid", "pointer 0xdeadbeef invalid"),
    ("job 123e4567-e89b-12d3-a456-426614174000 lost", "job 00000000-0000-0000-0000-000000000000 lost"),
    ("mail to ann@acme.example refused", "mail to bob@globex.example refused"),
    ("  spaces\tand\nlines  ", "spaces and lines"),
])
def test_variable_parts_do_not_change_the_shape(a, b):
    assert normalise_message(a) == normalise_message(b)


@pytest.mark.parametrize("a, b", [
    ("disk full", "permission denied"),
    ("table invoices missing", "table customers missing"),
])
def test_different_messages_stay_different(a, b):
    assert normalise_message(a) != normalise_message(b)


def test_placeholders_are_readable():
    assert normalise_message("Timeout after 30s writing /var/lib/app/db/0001.sql at 2024-05-01T10:00:00Z") == \
        "Timeout after <n>s writing <path> at <ts>"
    assert normalise_message(None) == "" and normalise_message("") == ""
    assert len(normalise_message("x" * 10_000)) <= 400


def test_fingerprint_covers_component_version_stage_code_and_message():
    base = fingerprint("server", "2.0", "migrate", "E1", "failed after 3s")
    assert base.value == fingerprint("Server", "2.0", "MIGRATE", "E1", "failed after 45s").value
    assert len(base.value) == 64 and base.pattern == "failed after <n>s"
    for other in (fingerprint("web", "2.0", "migrate", "E1", "failed after 3s"),
                  fingerprint("server", "2.1", "migrate", "E1", "failed after 3s"),
                  fingerprint("server", "2.0", "download", "E1", "failed after 3s"),
                  fingerprint("server", "2.0", "migrate", "E2", "failed after 3s"),
                  fingerprint("server", "2.0", "migrate", "E1", "disk full")):
        assert other.value != base.value
    assert fingerprint("server", "2.0", None, None, None).value == fingerprint("server", "2.0", "", "", "").value
