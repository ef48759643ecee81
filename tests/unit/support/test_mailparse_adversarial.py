"""Hostile shapes of mail: each 1 MB message parses in linear time, and keeps its bounds.

Anyone who can mail the support address can send these, and an MTA retries a message
whose delivery failed, so parsing must be linear in the input. Each shape is parsed at an
eighth of a megabyte and at a full one, and the CPU time of this process is compared: a
linear parser takes about eight times as long for eight times the input, a quadratic one
sixty-four times. A ratio holds on a busy machine where a fixed number of seconds does
not; the absolute bound beside it only catches a parser gone far off (alone, the slowest
shape takes about 0.3 s).
"""
from __future__ import annotations

import gc
import time
from collections.abc import Callable

import pytest

from release_server.support.mailparse import (
    MAX_ADDRESSES,
    MAX_REFERENCES,
    MailParseError,
    html_to_text,
    parse_message,
    peek_message_id,
    sanitize_html,
    strip_quoted_history,
)

MB = 1 << 20
LIMIT_SECONDS = 3.0


def _message(extra_headers: bytes, body: bytes = b"hello\r\n") -> bytes:
    return (b"From: Alice <alice@example.com>\r\nTo: support@example.org\r\nSubject: help\r\n"
            b"Message-ID: <root@example.com>\r\n" + extra_headers + b"\r\n" + body)


def _fill(unit: Callable[[int], bytes], size: int) -> list[bytes]:
    out, total, i = [], 0, 0
    while total < size:
        piece = unit(i)
        out.append(piece)
        total += len(piece)
        i += 1
    return out


HEADER_SHAPES: dict[str, Callable[[int], bytes]] = {
    "100k References ids, folded": lambda size: _message(
        b"References: " + b"\r\n ".join(_fill(lambda i: b"<%d@example.com>" % i, size)) + b"\r\n"),
    "References ids on one line": lambda size: _message(
        b"References: " + b" ".join(_fill(lambda i: b"<%d@e.c>" % i, size)) + b"\r\n"),
    "the same id repeated": lambda size: _message(b"References: " + b"<same@example.com> " * (size // 20) + b"\r\n"),
    "20k recipients": lambda size: _message(
        b"Cc: " + b",\r\n ".join(_fill(lambda i: b"user%d@example.com" % i, size)) + b"\r\n"),
    "recipients with encoded names": lambda size: _message(
        b"To: " + b", ".join(_fill(lambda i: b"=?utf-8?q?N=C3=A9_%d?= <u%d@example.com>" % (i, i), size)) + b"\r\n"),
    "recipients with quoted commas": lambda size: _message(
        b"To: " + b", ".join(_fill(lambda i: b'"Doe, J. (%d)" <u%d@example.com>' % (i, i), size)) + b"\r\n"),
    "one To field per recipient": lambda size: _message(b"".join(_fill(lambda i: b"To: u%d@example.com\r\n" % i, size))),
    "many distinct fields": lambda size: _message(b"".join(_fill(lambda i: b"X-Field-%d: value\r\n" % i, size))),
    "unterminated encoded words": lambda size: _message(b"Subject: " + b"=?c?q?x" * (size // 7) + b"\r\n"),
    "encoded words of unknown charset": lambda size: _message(b"Subject: " + b"=?x-unk?q?=E9?= " * (size // 16) + b"\r\n"),
    "8-bit subject between words": lambda size: _message(b"Subject: " + b"\xe9\xe8 =?x?q?a?= " * (size // 14) + b"\r\n"),
    "thousands of parameters": lambda size: _message(
        b"Content-Type: text/plain; " + b"; ".join(_fill(lambda i: b"p%d=v" % i, size)) + b"\r\n"),
    "open angle brackets": lambda size: _message(b"In-Reply-To: " + b"<" * size + b"\r\n"),
    "long date": lambda size: _message(b"Date: " + b"1 " * (size // 2) + b"\r\n"),
    "ticket numbers in the subject": lambda size: _message(b"Subject: " + b"[OTK-1]" * (size // 7) + b"\r\n"),
    "lines that lost their folding": lambda size: b"From: a@example.com\r\n" + b"x\r\n" * (size // 3)
    + b"Subject: y\r\n\r\nbody",
}

BODY_SHAPES: dict[str, Callable[[int], bytes]] = {
    "deeply nested multiparts": lambda size: b"From: a@example.com\r\n" + b"".join(_fill(
        lambda i: b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i), size)) + b"\r\nx\r\n",
    "deeply nested messages": lambda size: b"From: a@example.com\r\n"
    + b"Content-Type: message/rfc822\r\n\r\n" * (size // 32) + b"Subject: x\r\n\r\nx\r\n",
    "25k parts": lambda size: b"From: a@example.com\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
    + b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n" * (size // 40) + b"--b--\r\n",
    "RFC 2231 sections": lambda size: b"From: a@example.com\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
    b"--b\r\nContent-Disposition: attachment; "
    + b"; ".join(_fill(lambda i: b"filename*%d*=%%41" % i, size)) + b"\r\n\r\nx\r\n--b--\r\n",
    "a run of blanks": lambda size: _message(b"", b" " * size + b"x\r\n"),
    "an Outlook header line of blanks": lambda size: _message(b"", b"From:" + b" " * size + b"x\r\n"),
    "quoted-printable with trailing blanks": lambda size: _message(
        b"Content-Transfer-Encoding: quoted-printable \r\n", b" " * size + b"x\r\n"),
    "flowed soft breaks": lambda size: _message(b"Content-Type: text/plain; format=flowed\r\n", b"a \r\n" * (size // 4)),
    "attribution lines": lambda size: _message(b"", b"On Monday Bob wrote:\r\n" * (size // 22)),
    "quoted lines": lambda size: _message(b"", b"> quoted\r\n" * (size // 10)),
    "nested divs": lambda size: _message(b"Content-Type: text/html\r\n", b"<div>" * (size // 5)),
    "misnested formatting": lambda size: _message(b"Content-Type: text/html\r\n", b"<b><i>" * (size // 6)),
    "nested lists": lambda size: _message(b"Content-Type: text/html\r\n", b"<ul><li>x" * (size // 9)),
    "nested links": lambda size: _message(b"Content-Type: text/html\r\n", b"<a href='http://x.example'>" * (size // 27)),
    "8-bit text of unknown charset": lambda size: _message(b"", b"\xe9\xe8\xf0 " * (size // 4)),
}


def _cpu_seconds(raw: bytes) -> float:
    gc.collect()
    start = time.process_time()
    try:
        parse_message(raw)
    except MailParseError:
        pass
    return time.process_time() - start


def _assert_linear(make: Callable[[int], bytes]) -> None:
    assert len(make(MB)) >= MB * 0.9
    small = min(_cpu_seconds(make(MB // 8)) for _ in range(2))
    large = min(_cpu_seconds(make(MB)) for _ in range(2))
    # Eight times the input: a linear parser takes about eight times as long, a
    # quadratic one sixty-four times; the constant absorbs timer granularity.
    assert large < 8 * 3 * small + 0.1
    assert large < LIMIT_SECONDS


@pytest.mark.parametrize("shape", sorted(HEADER_SHAPES))
def test_a_1mb_adversarial_header_parses_in_linear_time(shape: str) -> None:
    _assert_linear(HEADER_SHAPES[shape])


@pytest.mark.parametrize("shape", sorted(BODY_SHAPES))
def test_a_1mb_adversarial_body_parses_in_linear_time(shape: str) -> None:
    _assert_linear(BODY_SHAPES[shape])


def test_references_keep_the_thread_root_and_the_latest_ids() -> None:
    ids = [f"<{i}@example.com>".encode() for i in range(100_000)]
    parsed = parse_message(_message(b"References: " + b"\r\n ".join(ids) + b"\r\n"))
    assert len(parsed.references) == MAX_REFERENCES
    assert parsed.references[0] == "0@example.com"
    assert parsed.references[-1] == "99999@example.com"
    assert parsed.references[1] == f"{100_000 - MAX_REFERENCES + 1}@example.com"


def test_repeated_references_count_once() -> None:
    parsed = parse_message(_message(b"References: <a@x> <b@x> <a@x> <b@x> <c@x>\r\n"))
    assert parsed.references == ["a@x", "b@x", "c@x"]


def test_recipients_are_bounded_and_keep_the_first_ones() -> None:
    names = b",\r\n ".join(b"user%d@example.com" % i for i in range(20_000))
    parsed = parse_message(_message(b"Cc: " + names + b"\r\n"))
    assert parsed.cc[:3] == ["user0@example.com", "user1@example.com", "user2@example.com"]
    assert 0 < len(parsed.cc) <= MAX_ADDRESSES
    assert len(set(parsed.cc)) == len(parsed.cc)
    assert parsed.from_addr == "alice@example.com"


def test_a_comma_inside_a_quoted_name_does_not_cut_an_address() -> None:
    names = b", ".join(b'"Doe, J. (%d)" <u%d@example.com>' % (i, i) for i in range(5_000))
    parsed = parse_message(_message(b"Cc: " + names + b"\r\n"))
    assert parsed.cc[0] == "u0@example.com"
    assert all(addr.startswith("u") and addr.endswith("@example.com") for addr in parsed.cc)


def test_deep_nesting_keeps_the_text_and_stays_parseable() -> None:
    raw = b"From: a@example.com\r\n" + b"".join(
        b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i) for i in range(5_000)) \
        + b"\r\nthe text at the bottom\r\n"
    parsed = parse_message(raw)
    assert parsed.from_addr == "a@example.com"
    assert "the text at the bottom" in parsed.text + "".join(
        a.data.decode("latin-1") for a in parsed.attachments)


def test_ordinary_nesting_is_untouched() -> None:
    raw = (b"From: a@example.com\r\nSubject: s\r\nContent-Type: multipart/mixed; boundary=outer\r\n\r\n"
           b"--outer\r\nContent-Type: multipart/alternative; boundary=inner\r\n\r\n"
           b"--inner\r\nContent-Type: text/plain\r\n\r\nplain text\r\n"
           b"--inner\r\nContent-Type: text/html\r\n\r\n<p>html text</p>\r\n--inner--\r\n"
           b"--outer\r\nContent-Type: application/pdf; name=a.pdf\r\n\r\n%PDF\r\n--outer--\r\n")
    parsed = parse_message(raw)
    assert parsed.text == "plain text"
    assert parsed.html == "<p>html text</p>"
    assert [a.filename for a in parsed.attachments] == ["a.pdf"]


def test_deeply_nested_html_keeps_its_text() -> None:
    html = "<div>" * 50_000 + "deep words" + "</div>" * 50_000
    assert "deep words" in sanitize_html(html)
    assert html_to_text(sanitize_html(html)) == "deep words"


def test_quote_trimming_of_a_line_of_blanks_is_linear() -> None:
    text = "new text\n" + "From:" + " " * 500_000 + "x\nSent: today\n"
    start = time.process_time()
    strip_quoted_history(text)
    assert time.process_time() - start < LIMIT_SECONDS


def test_peek_message_id_reads_only_the_top_header() -> None:
    raw = (b"From x Mon\r\nFrom: a@example.com\r\nMessage-Id:\r\n  <Abc@Example.COM>\r\n\r\n"
           b"Message-ID: <body@example.com>\r\n")
    assert peek_message_id(raw) == b"Abc@Example.COM"
    assert parse_message(raw).message_id == "Abc@Example.COM"
    assert peek_message_id(b"From: a@example.com\r\n\r\nMessage-ID: <x@y>\r\n") == b""
    huge = _message(b"X-Pad: " + b"a" * MB + b"\r\n")
    start = time.process_time()
    assert peek_message_id(huge) == b"root@example.com"
    assert time.process_time() - start < 0.2
