"""Threading and loop signals: ticket numbers in a subject, why a message must never get an
automatic answer, and whether it is a delivery failure (and which message it returns)."""
from __future__ import annotations

import re
from email import policy as email_policy
from email.message import Message
from email.parser import BytesParser
from functools import lru_cache

from .headers import _collapse, _Headers, _unfold
from .model import TICKET_NUMBER_DIGITS
from .parts import _content_type, _inner_message, _param, _payload_bytes, _walk


@lru_cache(maxsize=8)
def _ticket_pattern(prefix: str) -> re.Pattern[str]:
    return re.compile(r"\[\s*" + re.escape(prefix) + r"\s*[-#]\s*(\d{1,18})\s*\]", re.IGNORECASE)


def find_ticket_numbers(text: str, prefix: str = "OTK") -> list[str]:
    """Ticket numbers written as ``[PREFIX-digits]`` in ``text``.

    Case-insensitive; ``#`` is accepted instead of ``-``. Returned in order of
    appearance, without duplicates, normalised to upper case and at least
    :data:`TICKET_NUMBER_DIGITS` digits: ``[otk-42]`` gives ``"OTK-000042"``.
    """
    if not text or not prefix or not prefix.strip():
        return []
    found: dict[str, None] = {}
    upper = prefix.strip().upper()
    for match in _ticket_pattern(prefix.strip()).finditer(text):
        found.setdefault(f"{upper}-{int(match.group(1)):0{TICKET_NUMBER_DIGITS}d}", None)
    return list(found)


_AUTO_SUBJECT = re.compile(
    r"^\s*(automatic reply|auto(?:matic)?[- ]?reply|auto\s*:|out of (?:the )?office|"
    r"automatische antwort|abwesenheitsnotiz|réponse automatique|автоответ)",
    re.IGNORECASE,
)
_TOKEN_SEPARATORS = re.compile(r"[,;\s]+")
_DAEMON_LOCALPARTS = frozenset({"mailer-daemon", "postmaster"})
_DSN_TYPES = frozenset({"message/delivery-status", "message/global-delivery-status"})


def _auto_submitted_reason(headers: _Headers, subject: str, from_addr: str) -> str | None:
    """Why the message must never get an automatic answer, or None."""
    auto = headers.raw("auto-submitted")
    if auto is not None:
        value = _collapse(_unfold(auto)).split(";", 1)[0].strip().lower()
        if value != "no":
            return f"Auto-Submitted: {value or '(empty)'}"
    precedence = headers.raw("precedence")
    if precedence is not None:
        value = _collapse(_unfold(precedence)).lower()
        if value in ("bulk", "junk", "list"):
            return f"Precedence: {value}"
    for name in ("X-Autoreply", "X-Autorespond"):
        if headers.has(name):
            return f"{name} present"
    # X-Auto-Response-Suppress asks recipients not to send automatic responses.
    # Exchange and Outlook put it on the messages they generate themselves
    # (out-of-office notices, receipts, "All"), and on replies and forwards
    # of ordinary mail some versions add "OOF" or "DR, RN, NRN", i.e. only
    # receipts and out-of-office notices. Our acknowledgement is an
    # auto-reply, so only "All" or "AutoReply" suppresses it; "OOF", "DR",
    # "NDR", "RN" and "NRN" alone do not mark a message as automatic.
    suppress = headers.raw("x-auto-response-suppress")
    if suppress is not None:
        tokens = {tok.strip().lower() for tok in _TOKEN_SEPARATORS.split(_unfold(suppress)) if tok.strip()}
        if tokens & {"all", "autoreply"}:
            return f"X-Auto-Response-Suppress: {_collapse(_unfold(suppress))}"
    return_path = headers.raw("return-path")
    if return_path is not None and _collapse(_unfold(return_path)) in ("<>", ""):
        return "empty Return-Path"
    local = from_addr.partition("@")[0]
    if local in _DAEMON_LOCALPARTS:
        return f"sent by {local}"
    if headers.has("list-id"):
        return "List-Id present"
    if _AUTO_SUBJECT.match(subject):
        return "automatic-reply subject"
    return None


def _find_bounce(root: Message, from_addr: str) -> tuple[bool, Message | None]:
    """Whether the message is a delivery failure, and its delivery report part."""
    parts = list(_walk(root))
    for part in parts:
        report_type = (_param(part, "report-type") or "").strip().lower()
        if _content_type(part) == "multipart/report" and \
                report_type in ("delivery-status", "global-delivery-status"):
            return True, part
    if from_addr.partition("@")[0] in _DAEMON_LOCALPARTS:
        if any(_content_type(part) in _DSN_TYPES for part in parts):
            return True, root
    return False, None


def _bounce_original(report: Message, context: bytes) -> Message | None:
    """The returned original message (or just its header) in a bounce."""
    for part in _walk(report):
        ctype = _content_type(part)
        if ctype in ("message/rfc822", "message/global", "message/rfc822-headers",
                     "message/global-headers"):
            inner = _inner_message(part)
            if inner is not None:
                return inner
            data = _payload_bytes(part)
        elif ctype == "text/rfc822-headers":
            data = _payload_bytes(part)
        else:
            continue
        try:
            return BytesParser(policy=email_policy.default).parsebytes(data.lstrip(), headersonly=True)
        except Exception:
            continue
    return None
