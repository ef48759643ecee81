"""Property-based tests of the mail parser: it never raises on what anyone can send, and its
time grows linearly with the size of the message.

Arbitrary bytes may be refused as "not a message" (:class:`MailParseError`), nothing
else; a message that starts with a header field always parses. The timing property
repeats a generated piece (a header value, a body line, a MIME part) to two sizes and
compares the CPU time: eight times the input may take a few times eight as long, never
the sixty-four times of a quadratic parser.
"""
from __future__ import annotations

import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from release_server.support.mailparse import MailParseError, ParsedMail, parse_message, peek_message_id

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

HEADER_NAMES = ["From", "To", "Cc", "Reply-To", "Subject", "Date", "Message-ID", "In-Reply-To", "References",
                "Content-Type", "Content-Disposition", "Content-Transfer-Encoding", "Auto-Submitted",
                "Precedence", "Return-Path", "X-Auto-Response-Suppress", "List-Id", "MIME-Version"]
TOKENS = [b"<", b">", b"@", b",", b";", b":", b'"', b"\\", b"(", b")", b"=?", b"?=", b"=?utf-8?q?", b"=?koi8-r?b?",
          b"?Q?", b"=E9", b"\xe9", b"\xd0\xb6", b"\xff", b" ", b"\t", b"\r\n ", b"\n", b"\r", b"*0*=", b"''",
          b"boundary=", b"multipart/mixed", b"message/rfc822", b"text/html", b"charset=", b"name=",
          b"filename*=utf-8''%E9", b"[OTK-12]", b"a@b.c", b"<id@host>", b"On Mon wrote:", b"> ", b"--b",
          b"--b--", b"<div>", b"<li>", b"<a href='http://x'>", b"base64", b"quoted-printable", b"x", b"0"]

token = st.sampled_from(TOKENS) | st.binary(min_size=1, max_size=6)
fragment = st.lists(token, min_size=1, max_size=12).map(b"".join)


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    """A message-shaped byte string: header fields of the usual names with hostile values, then
    a body that may be MIME with parts, enclosed messages and broken boundaries."""
    lines = [draw(st.sampled_from(HEADER_NAMES)).encode() + b": " + draw(fragment)
             for _ in range(draw(st.integers(1, 8)))]
    if draw(st.booleans()):
        lines.append(b"Content-Type: multipart/" + draw(st.sampled_from([b"mixed", b"alternative", b"related",
                                                                           b"report"])) + b"; boundary=b")
    body: list[bytes] = []
    for _ in range(draw(st.integers(0, 4))):
        body.append(b"--b")
        body.extend(draw(st.sampled_from(HEADER_NAMES[9:12])).encode() + b": " + draw(fragment)
                    for _ in range(draw(st.integers(0, 2))))
        body.append(b"")
        body.append(draw(fragment))
    if draw(st.booleans()):
        body.append(b"--b--")
    body.append(draw(fragment))
    linesep = draw(st.sampled_from([b"\r\n", b"\n"]))
    return linesep.join(lines) + linesep + linesep + linesep.join(body)


@SETTINGS
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_never_raise_anything_but_a_parse_error(raw: bytes) -> None:
    try:
        parsed = parse_message(raw)
    except MailParseError:
        return
    assert isinstance(parsed, ParsedMail)
    peek_message_id(raw)


@SETTINGS
@given(messages())
def test_structured_random_messages_always_parse(raw: bytes) -> None:
    parsed = parse_message(raw)
    assert isinstance(parsed.subject, str) and isinstance(parsed.text, str)
    assert len(parsed.references) == len(set(parsed.references))
    assert all(isinstance(a.data, bytes) for a in parsed.attachments)


def _cpu(raw: bytes) -> float:
    best = float("inf")
    for _ in range(2):
        start = time.process_time()
        try:
            parse_message(raw)
        except MailParseError:
            pass
        best = min(best, time.process_time() - start)
    return best


def _grown(where: str, piece: bytes, size: int) -> bytes:
    count = max(size // max(len(piece), 1), 1)
    head = b"From: a@example.com\r\nSubject: s\r\nMessage-ID: <m@example.com>\r\n"
    if where == "header":
        return head + b"References: " + piece * count + b"\r\n\r\nbody\r\n"
    if where == "folded header":
        return head + b"To: " + b"\r\n ".join([piece] * count) + b"\r\n\r\nbody\r\n"
    if where == "parts":
        return (head + b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
                + (b"--b\r\nContent-Type: text/plain\r\n\r\n" + piece + b"\r\n") * count + b"--b--\r\n")
    return head + b"\r\n" + piece * count


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["header", "folded header", "parts", "body"]), fragment)
def test_parse_time_is_linear_in_size(where: str, piece: bytes) -> None:
    small = _cpu(_grown(where, piece, 16 * 1024))
    large = _cpu(_grown(where, piece, 128 * 1024))
    assert large < 8 * 4 * small + 0.15, (where, piece, small, large)
