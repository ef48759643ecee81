"""Raw input preparation: the bytes as received, made safe and bounded before the MIME parser sees them.

* an mbox ``From `` line and leading blank lines are removed;
* continuation lines whose folding whitespace was lost are re-indented, unquoted
  boundaries with special characters are quoted;
* every header field is bounded: message-id headers keep their first and latest ids
  (:data:`~.model.MAX_REFERENCES`), address headers their first addresses
  (:data:`~.model.MAX_ADDRESSES`), any other field :data:`~.model.MAX_HEADER_BYTES`; a
  header name repeated many times keeps a few occurrences, a header block a bounded
  number of fields; multipart and enclosed-message containers beyond
  :data:`~.model.MAX_CONTAINERS` become opaque data.

So the standard library's parser, whose cost grows faster than the input for some
shapes (thousands of parameters, very deep nesting), only ever sees bounded pieces, and
everything here is one pass over the input.
"""
from __future__ import annotations

import re

from .model import (
    MAX_ADDRESS_HEADER_BYTES,
    MAX_ADDRESSES,
    MAX_CONTAINERS,
    MAX_HEADER_BYTES,
    MAX_REFERENCES,
)

# A header field line: a name made of the usual characters, then a colon.
# Stricter than RFC 5322 on purpose: it is used to tell real header lines from
# continuation lines whose indentation was lost.
_HEADER_LINE = re.compile(rb"^[A-Za-z0-9][A-Za-z0-9!#$%&'*+.^_`|~-]*[ \t]*:")
_WELL_KNOWN_HEADER = re.compile(
    rb"^(subject|from|to|cc|date|message-id|mime-version|content-type|received|"
    rb"reply-to|in-reply-to|references|return-path|sender)[ \t]*:",
    re.IGNORECASE,
)
_BOUNDARY_PARAM = re.compile(rb'boundary\s*=\s*(?:"([^"\r\n]+)"|([^\s;"]+))', re.IGNORECASE)
_UNQUOTED_BOUNDARY = re.compile(rb'(boundary\s*=\s*)([^\s;"]+)', re.IGNORECASE)
_ENCLOSED_MESSAGE = re.compile(
    rb"^content-type[ \t]*:[ \t]*(?:message/(?:rfc822|global|rfc822-headers|global-headers)"
    rb"|text/rfc822-headers)\b",
    re.IGNORECASE | re.MULTILINE,
)
_TSPECIALS = frozenset(b'()<>@,;:\\"/[]?=')


def _strip_envelope(raw: bytes) -> bytes:
    """Remove leading blank lines and an mbox ``From `` separator line."""
    raw = raw.lstrip(b"\r\n")
    if raw.startswith(b"From "):
        _, sep, rest = raw.partition(b"\n")
        raw = rest if sep else b""
    return raw


def _repair_header_block(block: list[bytes], *, top: bool, ended: bool) -> list[bytes]:
    """Re-indent continuation lines whose folding whitespace was lost.

    In a MIME part header (``top`` false) everything up to the blank line is
    header, so any unindented non-header line is a broken continuation. At the
    top level a body may start without the blank line, so a line is only
    folded when real header lines still follow it.
    """
    if not block or not _HEADER_LINE.match(block[0]):
        return block
    broken = [
        k for k, line in enumerate(block)
        if not _HEADER_LINE.match(line) and line[:1] not in (b" ", b"\t")
    ]
    if top or not ended or len(block) > 64:
        later_known = [k for k, line in enumerate(block) if _WELL_KNOWN_HEADER.match(line)]
        limit = later_known[-1] if later_known else -1
        broken = [k for k in broken if k < limit]
    out = list(block)
    for k in broken:
        out[k] = b" " + out[k].lstrip()
    for k, line in enumerate(out):
        if b"boundary" in line.lower():
            out[k] = _UNQUOTED_BOUNDARY.sub(_quote_boundary, line)
    return out


def _quote_boundary(match: re.Match[bytes]) -> bytes:
    value = match.group(2)
    if any(ch in _TSPECIALS for ch in value):
        return match.group(1) + b'"' + value + b'"'
    return match.group(0)


def _repair_raw(raw: bytes) -> bytes:
    """Fix broken header folding and unquoted boundaries, and bound every header block, before parsing.

    Header blocks are the top-level header and the header of every MIME part
    (the lines after a ``--boundary`` delimiter line, up to the blank line).
    """
    containers = _ContainerCount()
    boundaries = {m.group(1) or m.group(2) for m in _BOUNDARY_PARAM.finditer(raw)}
    delimiters = {b"--" + b.strip() for b in boundaries if b.strip()}
    lines = raw.splitlines(keepends=True)
    out: list[bytes] = []
    i, n = 0, len(lines)
    in_header, top = True, True
    while i < n:
        if in_header:
            j = i
            while j < n and lines[j].rstrip(b"\r\n") != b"":
                j += 1
            block = _bound_header_block(_repair_header_block(lines[i:j], top=top, ended=j < n), containers)
            out.extend(block)
            i, in_header, top = j, False, False
            if j < n and _ENCLOSED_MESSAGE.search(b"".join(block)):
                # The body of message/rfc822 starts with the enclosed header.
                out.append(lines[j])
                i, in_header, top = j + 1, True, True
            continue
        line = lines[i]
        i += 1
        if not delimiters or line[:2] != b"--":
            out.append(line)
            continue
        stripped = line.rstrip(b" \t\r\n")
        if stripped in delimiters:
            if containers.delimiter(stripped[2:]):
                in_header = True
                out.append(line)
            else:
                out.append(b" " + line)  # one part too many: its text joins the part before
            continue
        if stripped.endswith(b"--") and stripped[:-2] in delimiters:
            containers.close(stripped[2:-2])
        out.append(line)
    return b"".join(out)


def _legacy_context(raw: bytes) -> bytes:
    """Collect the raw 8-bit lines that are not UTF-8, to guess their charset."""
    chunks: list[bytes] = []
    total = 0
    for line in raw.split(b"\n"):
        if line.isascii():
            continue
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            chunks.append(line)
            total += len(line)
            if total > 65536:
                break
    return b" ".join(chunks)


# ---------------------------------------------------------------------------
# Bounds
# ---------------------------------------------------------------------------

_ID_HEADERS = frozenset({b"references", b"in-reply-to", b"message-id", b"resent-message-id"})
_ADDRESS_HEADERS = frozenset({
    b"from", b"to", b"cc", b"bcc", b"reply-to", b"sender", b"resent-from", b"resent-to", b"resent-cc",
    b"resent-bcc", b"resent-sender", b"disposition-notification-to", b"return-receipt-to",
})
# Fields the parser reads; they are kept however many other fields a block has.
_READ_HEADERS = _ID_HEADERS | _ADDRESS_HEADERS | frozenset({
    b"subject", b"date", b"mime-version", b"content-type", b"content-disposition",
    b"content-transfer-encoding", b"content-id", b"auto-submitted", b"precedence", b"x-autoreply",
    b"x-autorespond", b"x-auto-response-suppress", b"return-path", b"list-id",
})
#: Fields of one block not read by the parser that are kept (the first ones).
MAX_OTHER_FIELDS = 500
#: Multipart containers open inside each other; a deeper one is opaque data (the MIME parser
#: checks every line against every open boundary, so its cost grows with the depth).
MAX_NESTING = 8
#: MIME parts in one message; the text of further parts stays in the last one kept.
MAX_PARTS = 1000
#: Occurrences kept of one header name the parser reads (id headers keep the first and the last ones).
MAX_SAME_FIELDS = 16
_RAW_MSG_ID = re.compile(rb"<\s*([^<>\s]+?)\s*>")
_CONTAINER_TYPE = re.compile(rb"[ \t]*\"?[ \t]*(multipart|message)/|[ \t]*text/rfc822-headers", re.IGNORECASE)


class _ContainerCount:
    """The containers the message opened so far: how many, the multipart boundaries
    open now (innermost last) and how many parts they had."""

    def __init__(self) -> None:
        self.count = 0
        self.open: list[bytes] = []
        self.parts = 0

    def admit(self, boundary: bytes | None) -> bool:
        """Open one more container (a multipart when ``boundary`` is given); False if over a bound."""
        self.count += 1
        if self.count > MAX_CONTAINERS or (boundary is not None and len(self.open) >= MAX_NESTING):
            return False
        if boundary:
            self.open.append(boundary)
        return True

    def delimiter(self, boundary: bytes) -> bool:
        """A ``--boundary`` line: inner multiparts end; False once the message has too many parts."""
        if boundary in self.open:
            del self.open[self.open.index(boundary) + 1:]
        self.parts += 1
        return self.parts <= MAX_PARTS

    def close(self, boundary: bytes) -> None:
        if boundary in self.open:
            del self.open[self.open.index(boundary):]


def _line_end(line: bytes) -> bytes:
    if line.endswith(b"\r\n"):
        return b"\r\n"
    return b"\n" if line.endswith(b"\n") else b"\r\n"


def _split_fields(block: list[bytes]) -> list[list[bytes]]:
    """Group the lines of a header block into fields (a line and its continuation lines)."""
    fields: list[list[bytes]] = []
    for line in block:
        if fields and line[:1] in (b" ", b"\t"):
            fields[-1].append(line)
        else:
            fields.append([line])
    return fields


def _field_name(first_line: bytes) -> bytes:
    name, colon, _ = first_line.partition(b":")
    return name.strip().lower() if colon else b""


def _bound_ids(name_part: bytes, lines: list[bytes]) -> list[bytes]:
    """Keep the first id (the thread's root) and the latest ones, without repeats."""
    value = b"".join(lines)[len(name_part) + 1:]
    unique = dict.fromkeys(m.group(1) for m in _RAW_MSG_ID.finditer(value))
    ids = list(unique)
    if not ids:
        return [name_part + b": " + value[:MAX_HEADER_BYTES].rstrip(b"\r\n") + _line_end(lines[0])]
    if len(ids) > MAX_REFERENCES:
        ids = ids[:1] + ids[len(ids) - (MAX_REFERENCES - 1):]
    end = _line_end(lines[-1])
    out = [name_part + b": <" + ids[0] + b">" + end]
    out.extend(b" <" + msg_id + b">" + end for msg_id in ids[1:])
    return out


def _address_cut(value: bytes) -> int:
    """Where to cut an address list after :data:`MAX_ADDRESSES` addresses or
    :data:`MAX_ADDRESS_HEADER_BYTES` bytes, between two addresses where possible."""
    quoted = escaped = False
    angle = comment = 0
    commas = 0
    last_comma = -1
    limit = min(len(value), MAX_ADDRESS_HEADER_BYTES)
    for k in range(limit):
        ch = value[k]
        if escaped:
            escaped = False
        elif ch == 0x5C:  # backslash
            escaped = quoted or comment > 0
        elif quoted:
            quoted = ch != 0x22
        elif ch == 0x22:
            quoted = True
        elif ch == 0x28:
            comment += 1
        elif ch == 0x29 and comment:
            comment -= 1
        elif comment:
            continue
        elif ch == 0x3C:
            angle += 1
        elif ch == 0x3E and angle:
            angle -= 1
        elif ch == 0x2C and not angle:
            commas += 1
            last_comma = k
            if commas >= MAX_ADDRESSES:
                return k
    if limit == len(value):
        return len(value)
    return last_comma if last_comma > 0 else limit


def _bound_addresses(name_part: bytes, lines: list[bytes]) -> list[bytes]:
    joined = b"".join(lines)
    if len(joined) <= MAX_ADDRESS_HEADER_BYTES and joined.count(b",") < MAX_ADDRESSES:
        return lines
    value = joined[len(name_part) + 1:]
    cut = _address_cut(value)
    if cut >= len(value):
        return lines
    kept = value[:cut].rstrip(b"\r\n")
    return [name_part + b":" + kept + _line_end(lines[-1])]


def _bound_other(lines: list[bytes]) -> list[bytes]:
    total = 0
    out: list[bytes] = []
    for line in lines:
        if total + len(line) > MAX_HEADER_BYTES:
            room = MAX_HEADER_BYTES - total
            if room > 1 and not out:
                out.append(line[:room].rstrip(b"\r\n") + _line_end(line))
            break
        out.append(line)
        total += len(line)
    return out


def _neutral_content_type(lines: list[bytes]) -> list[bytes]:
    return [b"Content-Type: application/octet-stream" + _line_end(lines[-1])]


def _bound_header_block(block: list[bytes], containers: _ContainerCount) -> list[bytes]:
    """Bound the fields of one header block (see the module docstring)."""
    if not block or not _HEADER_LINE.match(block[0]):
        return block
    fields = _split_fields(block)
    seen: dict[bytes, int] = {}
    totals: dict[bytes, int] = {}
    for field_lines in fields:
        name = _field_name(field_lines[0])
        totals[name] = totals.get(name, 0) + 1
    others = 0
    out: list[bytes] = []
    content_type_seen = False
    for field_lines in fields:
        name = _field_name(field_lines[0])
        index = seen.get(name, 0)
        seen[name] = index + 1
        if name in _READ_HEADERS:
            if name in _ID_HEADERS:
                if MAX_SAME_FIELDS <= index < totals[name] - MAX_SAME_FIELDS:
                    continue
            elif index >= MAX_SAME_FIELDS:
                continue
        else:
            others += 1
            if others > MAX_OTHER_FIELDS:
                continue
        first = field_lines[0]
        name_part = first[:first.index(b":")] if name else b""
        if name in _ID_HEADERS:
            size = sum(len(line) for line in field_lines)
            if size > MAX_HEADER_BYTES or len(field_lines) > MAX_REFERENCES:
                field_lines = _bound_ids(name_part, field_lines)
        elif name in _ADDRESS_HEADERS:
            field_lines = _bound_addresses(name_part, field_lines)
        elif sum(len(line) for line in field_lines) > MAX_HEADER_BYTES:
            field_lines = _bound_other(field_lines)
        if name == b"content-type" and not content_type_seen:
            content_type_seen = True
            value = first[len(name_part) + 1:]
            kind = _CONTAINER_TYPE.match(value)
            if kind:
                boundary = None
                if (kind.group(1) or b"").lower() == b"multipart":
                    found = _BOUNDARY_PARAM.search(b"".join(field_lines))
                    boundary = (found.group(1) or found.group(2)).strip() if found else b""
                if not containers.admit(boundary):
                    field_lines = _neutral_content_type(field_lines)
        out.extend(field_lines)
    return out


# ---------------------------------------------------------------------------
# A cheap look before parsing
# ---------------------------------------------------------------------------

_MESSAGE_ID_FIELD = re.compile(rb"^message-id[ \t]*:([^\r\n]*(?:\r?\n[ \t][^\r\n]*)*)", re.IGNORECASE | re.MULTILINE)
_HEADER_END = re.compile(rb"\r?\n\r?\n")


def peek_message_id(raw: bytes) -> bytes:
    """The first Message-ID of the top-level header, without angle brackets, or b"".

    One pass over the header block only, so a duplicate can be recognised before the
    message is parsed; it agrees with :attr:`~.model.ParsedMail.message_id` for any
    message whose Message-ID is well formed.
    """
    data = _strip_envelope(bytes(raw))
    end = _HEADER_END.search(data)
    header = data[:end.start()] if end else data
    match = _MESSAGE_ID_FIELD.search(header)
    if match is None:
        return b""
    value = match.group(1)
    found = _RAW_MSG_ID.search(value)
    if found is not None:
        return found.group(1)
    for token in re.split(rb"[\s,]+", value):
        if b"@" in token:
            return token.strip(b"<>")
    return b""
