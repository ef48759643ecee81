"""Bodies and attachments: the plain text, the HTML and the attachments of a message, chosen
from its MIME tree the way mail clients show them (alternatives, related parts with
``cid:`` images, enclosed messages as ``.eml`` attachments)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from email.message import Message

from .attachments import _part_filename
from .charsets import _codec_for, _decode_bytes
from .headers import _collapse, _Headers
from .model import MAX_DEPTH
from .parts import (
    _content_id,
    _content_type,
    _disposition,
    _flatten,
    _inner_message,
    _param,
    _payload_bytes,
    _split_header_body,
)
from .text import _unflow


@dataclass
class _PendingAttachment:
    filename: str | None
    content_type: str
    data: bytes
    content_id: str | None
    inline: bool


@dataclass
class _Body:
    plain: list[str] = field(default_factory=list)
    html: list[str] = field(default_factory=list)
    attachments: list[_PendingAttachment] = field(default_factory=list)

    def extend(self, other: _Body) -> None:
        self.plain.extend(other.plain)
        self.html.extend(other.html)
        self.attachments.extend(other.attachments)


_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)


class _Collector:
    def __init__(self, context: bytes, linesep: str) -> None:
        self.context = context
        self.linesep = linesep

    def collect(self, part: Message, depth: int = 0) -> _Body:
        body = _Body()
        ctype = _content_type(part)
        if depth > MAX_DEPTH:
            body.attachments.append(self._attachment(part, ctype))
            return body
        if ctype.startswith("multipart/"):
            try:
                children = part.get_payload()
            except Exception:
                children = None
            if not isinstance(children, list) or not children:
                # A multipart that could not be split: keep its text.
                text = self._decode_text(part, "text/plain")
                if text.strip():
                    body.plain.append(text)
                return body
            subtype = ctype.split("/", 1)[1]
            if subtype == "alternative":
                return self._alternative(children, depth)
            if subtype == "related":
                return self._related(part, children, depth)
            for child in children:
                if isinstance(child, Message):
                    body.extend(self.collect(child, depth + 1))
            return body
        if ctype.startswith("message/"):
            body.attachments.append(self._message_attachment(part, ctype))
            return body
        if ctype in ("text/plain", "text/html") and not self._is_attachment(part):
            text = self._decode_text(part, ctype)
            (body.plain if ctype == "text/plain" else body.html).append(text)
            return body
        body.attachments.append(self._attachment(part, ctype))
        return body

    def _alternative(self, children: list[Message], depth: int) -> _Body:
        bodies = [self.collect(child, depth + 1) for child in children if isinstance(child, Message)]
        result = _Body()
        plain = next((b.plain for b in bodies if any(t.strip() for t in b.plain)), None)
        html = next((b.html for b in reversed(bodies) if any(t.strip() for t in b.html)), None)
        result.plain = list(plain or [])
        result.html = list(html or [])
        for b in bodies:
            result.attachments.extend(b.attachments)
        return result

    def _related(self, part: Message, children: list[Message], depth: int) -> _Body:
        start = (_param(part, "start") or "").strip().strip("<>")
        root_index = 0
        if start:
            for k, child in enumerate(children):
                if isinstance(child, Message) and _content_id(child) == start:
                    root_index = k
                    break
        body = _Body()
        for k, child in enumerate(children):
            if not isinstance(child, Message):
                continue
            ctype = _content_type(child)
            if k == root_index or ctype.startswith("multipart/"):
                body.extend(self.collect(child, depth + 1))
            else:
                body.attachments.append(self._attachment(child, ctype, default_inline=True))
        return body

    @staticmethod
    def _is_attachment(part: Message) -> bool:
        if _disposition(part) == "attachment":
            return True
        return bool(_param(part, "filename", "content-disposition") or _param(part, "name"))

    def _decode_text(self, part: Message, ctype: str) -> str:
        data = _payload_bytes(part)
        charset = _param(part, "charset")
        if ctype == "text/html" and _codec_for(charset) in (None, "ascii") and not data.isascii():
            meta = _META_CHARSET.search(data[:4096])
            if meta:
                charset = meta.group(1).decode("ascii", "replace")
        text = _decode_bytes(data, charset, self.context)
        if ctype == "text/plain" and (_param(part, "format") or "").lower() == "flowed":
            text = _unflow(text, (_param(part, "delsp") or "").lower() == "yes")
        return text

    def _attachment(self, part: Message, ctype: str, default_inline: bool = False) -> _PendingAttachment:
        disposition = _disposition(part)
        content_id = _content_id(part)
        inline = disposition == "inline" or (
            disposition is None and (default_inline or content_id is not None))
        return _PendingAttachment(
            filename=_part_filename(part, self.context),
            content_type=ctype,
            data=_payload_bytes(part),
            content_id=content_id,
            inline=inline,
        )

    def _message_attachment(self, part: Message, ctype: str) -> _PendingAttachment:
        filename = _part_filename(part, self.context)
        inner = _inner_message(part)
        if ctype in ("message/rfc822", "message/global") and inner is not None:
            data = _flatten(inner, self.linesep)
            if not filename:
                subject = _collapse(_Headers(inner, self.context).text("subject"))
                filename = (subject or "message") + ".eml"
        else:
            data = _split_header_body(_flatten(part, self.linesep)) if inner is not None \
                else _payload_bytes(part)
        return _PendingAttachment(
            filename=filename,
            content_type=ctype,
            data=data,
            content_id=_content_id(part),
            inline=False,
        )
