"""Message structure: safe accessors for the parts of a parsed message (types, parameters,
decoded payloads), serialising a part back to bytes, and walking the MIME tree."""
from __future__ import annotations

import binascii
import io
from collections.abc import Iterator
from email import policy as email_policy
from email import utils as email_utils
from email.generator import BytesGenerator
from email.message import Message

from .charsets import _b64_lenient, _to_bytes
from .headers import _collapse
from .model import MAX_DEPTH

def _content_type(part: Message) -> str:
    try:
        return part.get_content_type().lower()
    except Exception:
        return "application/octet-stream"


def _param(part: Message, name: str, header: str = "content-type") -> str | None:
    try:
        value = part.get_param(name, header=header)
    except Exception:
        return None
    if value is None:
        return None
    if isinstance(value, tuple):
        try:
            return email_utils.collapse_rfc2231_value(value)
        except Exception:
            return None
    return str(value)


def _disposition(part: Message) -> str | None:
    try:
        value = part.get_content_disposition()
    except Exception:
        return None
    return value.lower() if value else None


def _content_id(part: Message) -> str | None:
    try:
        value = part.get("content-id")
    except Exception:
        value = None
    if value is None:
        return None
    text = _collapse(_to_bytes(str(value)).decode("utf-8", "replace")).strip("<> ")
    return text or None


def _payload_bytes(part: Message) -> bytes:
    """The decoded content of a leaf part (base64 / quoted-printable undone).

    ``get_payload(decode=True)`` returns the original bytes when it does not
    recognise the transfer encoding; encoding names with stray whitespace or
    quotes are then decoded here, leniently.
    """
    try:
        data = part.get_payload(decode=True)
    except Exception:
        data = None
    if not isinstance(data, bytes):
        return b""
    try:
        declared = str(part.get("content-transfer-encoding", "")).lower()
    except Exception:
        declared = ""
    cte = declared.strip().strip("\"'").strip()
    if cte == declared:
        return data
    if cte == "base64":
        return _b64_lenient(data)
    if cte == "quoted-printable":
        return binascii.a2b_qp(_strip_trailing_blanks(data))
    return data


def _strip_trailing_blanks(data: bytes) -> bytes:
    """Remove spaces and tabs at the end of every line (one pass; a regex here backtracks)."""
    lines = data.splitlines(keepends=True)
    out = []
    for line in lines:
        body = line.rstrip(b"\r\n")
        out.append(body.rstrip(b" \t") + line[len(body):])
    return b"".join(out)


def _detect_linesep(raw: bytes) -> str:
    return "\r\n" if b"\r\n" in raw[:4096] else "\n"


def _flatten(msg: Message, linesep: str) -> bytes:
    """Serialise a parsed (sub)message, keeping source headers unchanged."""
    for pol in (email_policy.default.clone(refold_source="none", linesep=linesep),
                email_policy.compat32.clone(linesep=linesep)):
        try:
            buf = io.BytesIO()
            BytesGenerator(buf, mangle_from_=False, policy=pol).flatten(msg)
            return buf.getvalue()
        except Exception:
            continue
    return b""


def _split_header_body(data: bytes) -> bytes:
    for sep in (b"\r\n\r\n", b"\n\n"):
        head, found, body = data.partition(sep)
        if found:
            return body
    return b""


def _inner_message(part: Message) -> Message | None:
    try:
        payload = part.get_payload()
    except Exception:
        return None
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        return payload[0]
    return None


def _walk(part: Message, depth: int = 0) -> Iterator[Message]:
    """All parts, without descending into enclosed messages."""
    yield part
    if depth > MAX_DEPTH or not _content_type(part).startswith("multipart/"):
        return
    try:
        children = part.get_payload()
    except Exception:
        return
    if isinstance(children, list):
        for child in children:
            if isinstance(child, Message):
                yield from _walk(child, depth + 1)
