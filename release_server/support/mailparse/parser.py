"""The entry point: :func:`parse_message` turns the raw bytes of one message into a :class:`~.model.ParsedMail`."""
from __future__ import annotations

from email import policy as email_policy
from email.parser import BytesParser

from .attachments import safe_filename
from .bodies import _Collector
from .headers import _collapse, _Headers
from .htmltext import html_to_text, sanitize_html
from .model import Attachment, MailParseError, ParsedMail
from .parts import _detect_linesep
from .quotes import strip_quoted_history
from .raw import _HEADER_LINE, _legacy_context, _repair_raw, _strip_envelope
from .signals import _auto_submitted_reason, _bounce_original, _find_bounce, find_ticket_numbers
from .text import _tidy_text


def parse_message(raw: bytes, *, ticket_prefix: str = "OTK") -> ParsedMail:
    """Parse the raw bytes of one inbound e-mail.

    Never raises for damaged messages: headers, charsets and MIME structure are
    decoded best-effort. Raises :class:`MailParseError` only when ``raw`` is
    not a message at all: empty, or not starting with a header field (a
    message without any header has no sender and cannot be threaded; the
    caller should keep such input aside rather than open a ticket from it).
    """
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise TypeError("parse_message() expects bytes")
    data = _strip_envelope(bytes(raw))
    if not data.strip():
        raise MailParseError("empty message")
    if not _HEADER_LINE.match(data):
        raise MailParseError("message does not start with a header field")
    data = _repair_raw(data)
    try:
        # The MIME structure with compat32: it keeps header values as strings and parses
        # them only when asked, which is many times faster than policy.default for
        # messages with many parts; :class:`_Headers` gives structured access where needed.
        msg = BytesParser(policy=email_policy.compat32).parsebytes(data)
    except Exception as exc:  # pragma: no cover - the parser itself is lenient
        raise MailParseError(f"cannot parse message: {exc}") from exc
    if not msg.keys():
        raise MailParseError("message has no header fields")

    context = _legacy_context(data)
    headers = _Headers(msg, context)

    subject = _collapse(headers.text("subject"))
    senders = headers.addresses("from")
    from_name, from_addr = senders[0] if senders else ("", "")
    message_ids = headers.ids("message-id")
    in_reply_to = headers.ids("in-reply-to")

    collector = _Collector(context, _detect_linesep(data))
    body = collector.collect(msg)

    html_source = "\n".join(t for t in body.html if t.strip())
    html = sanitize_html(html_source) if html_source else None
    text = _tidy_text("\n\n".join(t for t in body.plain if t.strip()))
    if not text.strip() and html:
        text = html_to_text(html)
    if not html:
        html = None

    attachments = [
        Attachment(
            filename=safe_filename(p.filename, index, p.content_type),
            content_type=p.content_type,
            data=p.data,
            content_id=p.content_id,
            inline=p.inline,
        )
        for index, p in enumerate(body.attachments, start=1)
    ]

    is_bounce, report = _find_bounce(msg, from_addr)
    original_subject: str | None = None
    original_message_id: str | None = None
    if is_bounce and report is not None:
        original = _bounce_original(report, context)
        if original is not None:
            original_headers = _Headers(original, context)
            original_subject = _collapse(original_headers.text("subject")) or None
            ids = original_headers.ids("message-id")
            original_message_id = ids[0] if ids else None

    reason = _auto_submitted_reason(headers, subject, from_addr)
    if reason is None and is_bounce:
        reason = "delivery status notification"

    tickets = list(dict.fromkeys(find_ticket_numbers(subject, ticket_prefix)
                                 + find_ticket_numbers(original_subject or "", ticket_prefix)))

    return ParsedMail(
        subject=subject,
        from_addr=from_addr,
        from_name=from_name,
        to=headers.address_list("to"),
        cc=headers.address_list("cc"),
        reply_to=headers.address_list("reply-to"),
        message_id=message_ids[0] if message_ids else "",
        in_reply_to=in_reply_to[0] if in_reply_to else "",
        references=headers.ids("references"),
        date=headers.date(),
        text=text,
        html=html,
        reply_text=strip_quoted_history(text) if text else "",
        attachments=attachments,
        auto_submitted_reason=reason,
        is_bounce=is_bounce,
        bounce_original_subject=original_subject,
        bounce_original_message_id=original_message_id,
        ticket_numbers=tickets,
    )
