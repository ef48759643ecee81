"""Parsing of inbound support e-mail into a ticket-ready form.

:func:`parse_message` turns the raw bytes of one RFC 822 message, as received by the
support desk, into a :class:`ParsedMail`:

* decoded headers (subject, sender, recipients, threading ids, date), with RFC 2047
  encoded-words, raw 8-bit bytes and malformed headers handled on a best-effort basis
  instead of raising (:mod:`.headers`, :mod:`.charsets`);
* the body as plain text (HTML-only mail is sanitised and converted), the sanitised
  HTML, and the reply with quoted earlier history removed (:mod:`.bodies`,
  :mod:`.htmltext`, :mod:`.quotes`);
* attachments, including inline ``cid:`` images and forwarded messages, with RFC 2047 /
  RFC 2231 filenames decoded and made safe for storage (:mod:`.attachments`);
* signals for the ticket logic: why the message must not get an automatic answer,
  whether it is a delivery failure (bounce) and which original message it returns, and
  the ticket numbers referenced in the subject (:mod:`.signals`).

It is a pure parser: it does no I/O and stores nothing. Its cost is linear in the size
of the input: every header is bounded before the standard library parses it
(:mod:`.raw`), repeated ids and addresses are removed with dicts, and no pattern can
backtrack over its input. The only error it raises is :class:`MailParseError`, for
input that is not a message at all. :func:`peek_message_id` reads the Message-ID
without parsing, for the duplicate check that comes first.
"""
from __future__ import annotations

from .attachments import safe_filename
from .charsets import decode_encoded_words
from .htmltext import html_to_text, sanitize_html
from .model import (
    MAX_ADDRESSES,
    MAX_FILENAME_LENGTH,
    MAX_REFERENCES,
    TICKET_NUMBER_DIGITS,
    Attachment,
    MailParseError,
    ParsedMail,
)
from .parser import parse_message
from .quotes import strip_quoted_history
from .raw import peek_message_id
from .signals import find_ticket_numbers

__all__ = [
    "MAX_ADDRESSES",
    "MAX_FILENAME_LENGTH",
    "MAX_REFERENCES",
    "TICKET_NUMBER_DIGITS",
    "Attachment",
    "MailParseError",
    "ParsedMail",
    "decode_encoded_words",
    "find_ticket_numbers",
    "html_to_text",
    "parse_message",
    "peek_message_id",
    "safe_filename",
    "sanitize_html",
    "strip_quoted_history",
]
