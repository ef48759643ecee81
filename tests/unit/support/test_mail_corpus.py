"""The in-repository mail corpus: complete, indexed with source and licence, kept byte for byte."""
from __future__ import annotations

import re
from pathlib import Path

CORPUS = Path(__file__).resolve().parents[2] / "data" / "mail"


def test_every_message_is_indexed_with_its_source_and_licence():
    files = sorted(p.name for p in CORPUS.iterdir() if p.suffix in (".eml", ".box"))
    assert len(files) >= 30
    entries = {}
    for line in (CORPUS / "INDEX.md").read_text(encoding="utf-8").splitlines():
        m = re.match(r"- `([^`]+)` — licence: (.+?) — ([^—]+?:[^—]+?) — ", line)
        if m:
            entries[m.group(1)] = (m.group(2), m.group(3))
    assert sorted(entries) == files
    for name, (licence, source) in entries.items():
        assert licence.strip(), name
        assert ":" in source, name


def test_line_endings_and_8bit_bytes_are_untouched():
    # A checkout that rewrote line endings would break the CRLF samples and the 8-bit ones.
    crlf = [p for p in CORPUS.glob("*.eml") if b"\r\n" in p.read_bytes()]
    crlf += [p for p in CORPUS.glob("*.box") if b"\r\n" in p.read_bytes()]
    assert len(crlf) >= 11
    koi8 = (CORPUS / "rt-russian-koi8r-8bit-no-content-type.eml").read_bytes()
    assert "тест".encode("koi8-r") in koi8
    attributes = (CORPUS.parents[2] / ".gitattributes").read_text()
    assert "tests/data/mail/*.eml -text" in attributes and "tests/data/mail/*.box -text" in attributes
