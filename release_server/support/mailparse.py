"""Parsing of inbound support e-mail into a ticket-ready form.

This module turns the raw bytes of one RFC 822 message, as received by the
support desk, into a :class:`ParsedMail`:

* decoded headers (subject, sender, recipients, threading ids, date), with
  RFC 2047 encoded-words, raw 8-bit bytes and malformed headers handled on a
  best-effort basis instead of raising;
* the body as plain text (HTML-only mail is sanitised and converted), the
  sanitised HTML, and the reply with quoted earlier history removed;
* attachments, including inline ``cid:`` images and forwarded messages, with
  RFC 2047 / RFC 2231 filenames decoded and made safe for storage;
* signals for the ticket logic: why the message must not get an automatic
  answer, whether it is a delivery failure (bounce) and which original message
  it returns, and the ticket numbers referenced in the subject.

It is a pure parser: it does no I/O, stores nothing and enforces no size
policy. The only error it raises is :class:`MailParseError`, for input that is
not a message at all.
"""
from __future__ import annotations

import base64
import binascii
import codecs
import io
import mimetypes
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email import policy as email_policy
from email import utils as email_utils
from email.generator import BytesGenerator
from email.message import Message
from email.parser import BytesParser
from html.parser import HTMLParser

import nh3

__all__ = [
    "Attachment",
    "MailParseError",
    "ParsedMail",
    "decode_encoded_words",
    "find_ticket_numbers",
    "html_to_text",
    "parse_message",
    "safe_filename",
    "sanitize_html",
    "strip_quoted_history",
]

#: Ticket numbers are rendered with at least this many digits ("OTK-000123").
TICKET_NUMBER_DIGITS = 6
#: Longest filename (in characters) handed out for an attachment.
MAX_FILENAME_LENGTH = 200

_MAX_DEPTH = 40  # MIME nesting deeper than this is treated as opaque data


class MailParseError(Exception):
    """The bytes cannot be parsed as an e-mail message at all."""


@dataclass(frozen=True)
class Attachment:
    """One non-body part of a message."""

    filename: str
    content_type: str
    data: bytes = field(repr=False)
    content_id: str | None = None
    inline: bool = False

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass(frozen=True)
class ParsedMail:
    """The parts of an inbound message the support desk works with."""

    subject: str
    from_addr: str
    from_name: str
    to: list[str] = field(default_factory=list)
    cc: list[str] = field(default_factory=list)
    reply_to: list[str] = field(default_factory=list)
    message_id: str = ""
    in_reply_to: str = ""
    references: list[str] = field(default_factory=list)
    date: datetime | None = None
    text: str = ""
    html: str | None = None
    reply_text: str = ""
    attachments: list[Attachment] = field(default_factory=list)
    auto_submitted_reason: str | None = None
    is_bounce: bool = False
    bounce_original_subject: str | None = None
    bounce_original_message_id: str | None = None
    ticket_numbers: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------
# Raw input preparation
# ---------------------------------------------------------------------------

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
    """Fix broken header folding and unquoted boundaries before parsing.

    Header blocks are the top-level header and the header of every MIME part
    (the lines after a ``--boundary`` delimiter line, up to the blank line).
    """
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
            block = _repair_header_block(lines[i:j], top=top, ended=j < n)
            out.extend(block)
            i, in_header, top = j, False, False
            if j < n and _ENCLOSED_MESSAGE.search(b"".join(block)):
                # The body of message/rfc822 starts with the enclosed header.
                out.append(lines[j])
                i, in_header, top = j + 1, True, True
            continue
        line = lines[i]
        out.append(line)
        if delimiters and line.rstrip(b" \t\r\n") in delimiters:
            in_header = True
        i += 1
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
# Charsets
# ---------------------------------------------------------------------------

_CHARSET_ALIASES = {
    "unicode-1-1-utf-7": "utf-7",
    "utf7": "utf-7",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "ks_c_5601-1987": "cp949",
    "euc-kr": "cp949",
    "shift_jis": "cp932",
    "shift-jis": "cp932",
    "x-sjis": "cp932",
    "big5": "big5hkscs",
    "tis-620": "cp874",
    "windows-874": "cp874",
    "iso-8859-8-i": "iso-8859-8",
    "iso-8859-6-i": "iso-8859-6",
    "x-mac-cyrillic": "mac-cyrillic",
    "x-mac-roman": "mac-roman",
    "macintosh": "mac-roman",
    "ansi_x3.4-1968": "ascii",
    "x-unknown": "",
    "unknown-8bit": "",
    "x-user-defined": "",
    "default": "",
}
# Codecs that are not text encodings of mail, even though Python knows them.
_REJECTED_CODECS = frozenset({
    "unicode_escape", "raw_unicode_escape", "idna", "punycode", "undefined",
    "mbcs", "oem", "utf_16", "utf_16_be", "utf_16_le", "utf_32", "utf_32_be", "utf_32_le",
})
_CODEC_FALLBACKS = {
    "iso2022_jp": ("iso2022_jp_2", "iso2022_jp_ext", "iso2022_jp_2004"),
    "latin_1": ("cp1252", "latin_1"),
    "cp1252": ("cp1252", "latin_1"),
}


def _codec_for(charset: str | None) -> str | None:
    """Map a declared charset label to a Python codec name, or None if unusable."""
    if not charset:
        return None
    name = charset.strip().strip("\"'").strip().lower()
    name = name.split("*", 1)[0]  # RFC 2231 language suffix in encoded-words
    name = _CHARSET_ALIASES.get(name, name)
    if not name:
        return None
    candidates = [name, re.sub(r"^(?:cp|windows)[-_ ]?(\d+)$", r"cp\1", name),
                  name.replace("_", "-")]
    for candidate in candidates:
        try:
            info = codecs.lookup(candidate)
        except (LookupError, ValueError):
            continue
        if info.name in _REJECTED_CODECS or not getattr(info, "_is_text_encoding", True):
            return None
        return info.name
    return None


# Relative frequency (per mille, rounded) of Cyrillic letters in running text,
# used to tell windows-1251 from KOI8-R when a message does not say which.
_CYRILLIC_WEIGHT = {
    "о": 110, "е": 85, "а": 80, "и": 74, "н": 67, "т": 63, "с": 55, "р": 47,
    "в": 45, "л": 44, "к": 35, "м": 32, "д": 30, "п": 28, "у": 26, "я": 20,
    "ы": 19, "ь": 17, "г": 17, "з": 17, "б": 16, "ч": 14, "й": 12, "х": 10,
    "ж": 9, "ш": 7, "ю": 6, "ц": 5, "щ": 4, "э": 3, "ф": 3, "ъ": 1, "ё": 1,
    "і": 30, "ї": 6, "є": 4, "ґ": 1,
}


def _cyrillic_score(text: str) -> float:
    """Score how much ``text`` looks like Cyrillic prose (higher is better)."""
    score = 0.0
    for ch in text:
        if ch.isascii():
            continue
        weight = _CYRILLIC_WEIGHT.get(ch.lower())
        if weight is None:
            score -= 20.0 if not ch.isalpha() else 10.0
        else:
            score += weight * (1.0 if ch.islower() else 0.6)
    return score


def _looks_cyrillic(text: str) -> bool:
    """True if the non-ASCII letters form words of their own.

    Latin-1 text decoded as a Cyrillic code page yields isolated Cyrillic
    letters inside Latin words ("Mьnchen"); real Cyrillic text does not.
    """
    letters = mixed = 0
    for i, ch in enumerate(text):
        if ch.isascii() or not ch.isalpha():
            continue
        letters += 1
        before = text[i - 1] if i else ""
        after = text[i + 1] if i + 1 < len(text) else ""
        if (before.isascii() and before.isalpha()) or (after.isascii() and after.isalpha()):
            mixed += 1
    return letters > 0 and mixed * 4 <= letters


def _guess_legacy(data: bytes, context: bytes = b"") -> str:
    """Decode 8-bit bytes of unknown charset: windows-1251, KOI8-R or Latin."""
    sample = data + b" " + context if context else data
    best_codec, best_score = "", 0.0
    for codec in ("cp1251", "koi8_r"):
        decoded = sample.decode(codec, errors="replace")
        if not _looks_cyrillic(decoded):
            continue
        score = _cyrillic_score(decoded)
        if score > best_score:
            best_codec, best_score = codec, score
    if best_codec:
        return data.decode(best_codec, errors="replace")
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:
        return data.decode("latin_1")


def _decode_bytes(data: bytes, charset: str | None = None, context: bytes = b"") -> str:
    """Decode ``data`` as text without ever raising and without losing it.

    A usable declared charset is tried strictly first (with its common
    supersets); otherwise, or if it fails, UTF-8 is tried strictly, then the
    legacy guess of :func:`_guess_legacy`.
    """
    codec = _codec_for(charset)
    if codec and codec != "ascii":
        for candidate in _CODEC_FALLBACKS.get(codec, (codec,)):
            try:
                return data.decode(candidate)
            except (UnicodeDecodeError, LookupError):
                continue
    if data.isascii():
        return data.decode("ascii")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    return _guess_legacy(data, context)


# ---------------------------------------------------------------------------
# Headers
# ---------------------------------------------------------------------------

_ENCODED_WORD = re.compile(rb"=\?([^?\s]+)\?([QqBb])\?(.*?)\?=", re.DOTALL)
_FOLD = re.compile(r"\r?\n(?=[ \t])|\r?\n")
_MSG_ID = re.compile(r"<\s*([^<>\s]+?)\s*>")


def _has_surrogates(text: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def _to_bytes(text: str) -> bytes:
    """Recover the original bytes of a string produced by the bytes parser."""
    return text.encode("utf-8", "surrogateescape")


def _q_decode(payload: bytes) -> bytes:
    payload = payload.replace(b"_", b" ")
    return re.sub(rb"=([0-9A-Fa-f]{2})", lambda m: bytes([int(m.group(1), 16)]), payload)


def _b64_lenient(data: bytes) -> bytes:
    data = re.sub(rb"[^A-Za-z0-9+/]", b"", data)
    if len(data) % 4 == 1:  # a stray character cannot be decoded; drop it
        data = data[:-1]
    try:
        return base64.b64decode(data + b"=" * (-len(data) % 4))
    except (binascii.Error, ValueError):
        return b""


def decode_encoded_words(raw: bytes, context: bytes = b"") -> str:
    """Decode a header value given as bytes: RFC 2047 words and raw 8-bit text.

    Whitespace between adjacent encoded-words is dropped as RFC 2047 requires;
    words with unknown charsets and raw bytes go through the same charset
    guessing as bodies.
    """
    out: list[str] = []
    pos = 0
    previous_was_word = False
    for match in _ENCODED_WORD.finditer(raw):
        between = raw[pos:match.start()]
        if not (previous_was_word and not between.strip()):
            out.append(_decode_bytes(between, None, context))
        encoding = match.group(2).upper()
        payload = match.group(3)
        data = _q_decode(payload) if encoding == b"Q" else _b64_lenient(payload)
        out.append(_decode_bytes(data, match.group(1).decode("ascii", "replace"), context))
        pos = match.end()
        previous_was_word = True
    out.append(_decode_bytes(raw[pos:], None, context))
    return "".join(out)


def _unfold(value: str) -> str:
    return _FOLD.sub("", value) if "\n" in value else value


def _collapse(text: str) -> str:
    return " ".join(text.split())


class _Headers:
    """Best-effort access to the headers of one message.

    ``policy.default`` parses headers lazily and may raise on malformed ones
    or replace raw 8-bit bytes with U+FFFD. Every access here is guarded: if
    the structured value fails or looks damaged, the raw header is decoded by
    :func:`decode_encoded_words`, and as a last resort as Latin-1.
    """

    def __init__(self, msg: Message, context: bytes) -> None:
        self._msg = msg
        self._context = context
        try:
            items = list(msg.raw_items())
        except Exception:  # pragma: no cover - raw_items reads a plain list
            items = []
        self._raw: dict[str, list[str]] = {}
        for name, value in items:
            self._raw.setdefault(str(name).strip().lower(), []).append(
                value if isinstance(value, str) else str(value))

    def raw_all(self, name: str) -> list[str]:
        return self._raw.get(name.lower(), [])

    def raw(self, name: str) -> str | None:
        values = self.raw_all(name)
        return values[0] if values else None

    def has(self, name: str) -> bool:
        return name.lower() in self._raw

    def _fallback(self, raw: str) -> str:
        try:
            return decode_encoded_words(_to_bytes(_unfold(raw)), self._context)
        except Exception:
            return _to_bytes(raw).decode("latin_1")

    def text(self, name: str) -> str:
        """The decoded value of the first ``name`` header, or ""."""
        raw = self.raw(name)
        if raw is None:
            return ""
        if raw.isascii():
            try:
                value = str(self._msg[name])
            except Exception:
                value = None
            if value is not None and "\ufffd" not in value and not _has_surrogates(value) \
                    and "=?" not in value:
                return value
        return self._fallback(raw)

    def addresses(self, name: str) -> list[tuple[str, str]]:
        """(display name, lower-case address) pairs of all ``name`` headers."""
        raws = self.raw_all(name)
        if not raws:
            return []
        if all(raw.isascii() for raw in raws):
            try:
                pairs = [
                    (str(addr.display_name or ""), str(addr.addr_spec or ""))
                    for header in self._msg.get_all(name, [])
                    for addr in header.addresses
                ]
                if all("\ufffd" not in n and not _has_surrogates(n) and "=?" not in n
                       for n, _ in pairs):
                    return self._finish_pairs(pairs, raws)
            except Exception:
                pass
        pairs = []
        for raw in raws:
            unfolded = _unfold(raw)
            # Decode raw 8-bit bytes but keep encoded-words for after splitting,
            # so a comma inside an encoded display name cannot split an address.
            as_text = _decode_bytes(_to_bytes(unfolded), None, self._context) \
                if not unfolded.isascii() else unfolded
            try:
                found = email_utils.getaddresses([as_text])
            except Exception:
                found = []
            for display, addr in found:
                display = decode_encoded_words(display.encode("utf-8"), self._context)
                pairs.append((display, addr))
        return self._finish_pairs(pairs, raws)

    def _finish_pairs(self, pairs: list[tuple[str, str]], raws: list[str]) -> list[tuple[str, str]]:
        result: list[tuple[str, str]] = []
        for display, addr in pairs:
            addr = addr.strip().strip("<>").strip().lower()
            if any(ch.isspace() for ch in addr):
                addr = ""
            display = _collapse(display).strip("\"' ")
            if addr or display:
                result.append((display, addr))
        if result and not any(d for d, _ in result):
            # Old "addr (Comment Name)" syntax: policy.default drops the comment.
            try:
                legacy = email_utils.getaddresses([_unfold(r) for r in raws])
                if len(legacy) == len(result):
                    result = [
                        (_collapse(decode_encoded_words(ld.encode("utf-8"), self._context)), a)
                        for (ld, _), (_, a) in zip(legacy, result)
                    ]
            except Exception:
                pass
        return result

    def address_list(self, *names: str) -> list[str]:
        seen: list[str] = []
        for name in names:
            for _, addr in self.addresses(name):
                if addr and addr not in seen:
                    seen.append(addr)
        return seen

    def ids(self, name: str) -> list[str]:
        """Message ids in the ``name`` headers, without angle brackets."""
        found: list[str] = []
        for raw in self.raw_all(name):
            value = self._fallback(raw) if not raw.isascii() else _unfold(raw)
            ids = _MSG_ID.findall(value)
            if not ids:
                ids = [tok.strip("<>") for tok in re.split(r"[\s,]+", value) if "@" in tok]
            for msg_id in ids:
                if msg_id and msg_id not in found:
                    found.append(msg_id)
        return found

    def date(self) -> datetime | None:
        raw = self.raw("date")
        if raw is None:
            return None
        value: datetime | None = None
        try:
            value = self._msg["date"].datetime
        except Exception:
            value = None
        if value is None:
            try:
                value = email_utils.parsedate_to_datetime(_collapse(_unfold(raw)))
            except Exception:
                value = None
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value


# ---------------------------------------------------------------------------
# Message structure
# ---------------------------------------------------------------------------

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
        return binascii.a2b_qp(re.sub(rb"[ \t]+(?=\r?\n|$)", b"", data))
    return data


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


# ---------------------------------------------------------------------------
# Filenames
# ---------------------------------------------------------------------------

_PARAM = re.compile(r';\s*([^\s=;]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')
_EXTENSIONS = {
    "text/plain": ".txt",
    "text/html": ".html",
    "text/csv": ".csv",
    "message/rfc822": ".eml",
    "message/global": ".eml",
    "message/delivery-status": ".txt",
    "message/global-delivery-status": ".txt",
    "message/rfc822-headers": ".txt",
    "text/rfc822-headers": ".txt",
    "message/disposition-notification": ".txt",
    "application/octet-stream": ".bin",
    "application/ms-tnef": ".dat",
    "application/pkcs7-signature": ".p7s",
    "application/x-pkcs7-signature": ".p7s",
    "application/pgp-signature": ".asc",
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/gif": ".gif",
    "application/pdf": ".pdf",
    "application/zip": ".zip",
}
_MIME_TYPES = mimetypes.MimeTypes(filenames=())
_UNSAFE_FILENAME_CHARS = re.compile(r'[<>:"|?*]')


def _extension_for(content_type: str) -> str:
    ext = _EXTENSIONS.get(content_type)
    if ext is None:
        ext = _MIME_TYPES.guess_extension(content_type, strict=False)
    return ext or ".bin"


def _raw_params(raw_header: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for match in _PARAM.finditer(_unfold(raw_header)):
        value = match.group(2).strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params.setdefault(match.group(1).lower(), value)
    return params


def _rfc2231_value(params: dict[str, str], name: str, context: bytes) -> str | None:
    """Assemble an RFC 2231 parameter (``name*`` / ``name*0*`` ...) by hand."""
    if name + "*" in params:
        sections = [(0, True, params[name + "*"])]
    else:
        sections = []
        for key, value in params.items():
            match = re.fullmatch(re.escape(name) + r"\*(\d+)(\*?)", key)
            if match:
                sections.append((int(match.group(1)), bool(match.group(2)), value))
        sections.sort()
    if not sections:
        return None
    charset = None
    data = b""
    for index, encoded, value in sections:
        if encoded and index == 0 and value.count("'") >= 2:
            charset, _, value = value.split("'", 2)
        chunk = _to_bytes(value)
        if encoded:
            chunk = re.sub(rb"%([0-9A-Fa-f]{2})", lambda m: bytes([int(m.group(1), 16)]), chunk)
        data += chunk
    return _decode_bytes(data, charset, context)


def _raw_filename(part: Message, context: bytes) -> str | None:
    """Filename from the raw Content-Disposition / Content-Type parameters."""
    for header, name in (("content-disposition", "filename"), ("content-type", "name")):
        try:
            raws = [v for k, v in part.raw_items() if k.lower() == header]
        except Exception:
            raws = []
        for raw in raws:
            params = _raw_params(str(raw))
            value = _rfc2231_value(params, name, context)
            if value is None and name in params:
                value = decode_encoded_words(_to_bytes(params[name]), context)
            if value:
                return value
    return None


def _looks_damaged(value: str) -> bool:
    return "\ufffd" in value or _has_surrogates(value) or bool(re.search(r"=\?[^?]+\?[QqBb]\?", value))


def _part_filename(part: Message, context: bytes) -> str | None:
    value: str | None
    try:
        value = part.get_filename()
    except Exception:
        value = None
    if value is not None:
        value = str(value)
    if value is None or _looks_damaged(value):
        fallback = _raw_filename(part, context)
        if fallback:
            value = fallback
    return value or None


def safe_filename(name: str | None, index: int, content_type: str) -> str:
    """Make an attachment filename safe to store and to offer for download.

    NFC-normalised, the last path component only, without control or format
    characters, without characters Windows forbids, at most
    :data:`MAX_FILENAME_LENGTH` characters; ``attachment-<index><ext>`` when
    nothing usable remains.
    """
    text = unicodedata.normalize("NFC", name or "")
    text = re.split(r"[/\\]", text)[-1]
    text = "".join(
        " " if ch in "\t\n\r\v\f" or unicodedata.category(ch) == "Zs" else ch
        for ch in text
        if ch in "\t\n\r\v\f"
        or unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")
    )
    text = _UNSAFE_FILENAME_CHARS.sub("_", _collapse(text)).strip(" .")
    if len(text) > MAX_FILENAME_LENGTH:
        stem, dot, ext = text.rpartition(".")
        if dot and 0 < len(ext) <= 16 and stem:
            text = stem[: MAX_FILENAME_LENGTH - len(ext) - 1].rstrip(" .") + "." + ext
        else:
            text = text[:MAX_FILENAME_LENGTH].rstrip(" .")
    if not text or text in {".", ".."}:
        text = f"attachment-{index}{_extension_for(content_type)}"
    return text


# ---------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------

_ALLOWED_TAGS = frozenset({
    "a", "abbr", "b", "blockquote", "br", "caption", "center", "cite", "code", "col",
    "colgroup", "dd", "del", "div", "dl", "dt", "em", "font", "h1", "h2", "h3", "h4",
    "h5", "h6", "hr", "i", "img", "ins", "kbd", "li", "ol", "p", "pre", "q", "s",
    "samp", "small", "span", "strike", "strong", "sub", "sup", "table", "tbody", "td",
    "tfoot", "th", "thead", "tr", "tt", "u", "ul",
})
_ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title", "width", "height"},
    "td": {"colspan", "rowspan", "align", "valign"},
    "th": {"colspan", "rowspan", "align", "valign"},
    "ol": {"start", "type"},
    "table": {"border", "cellpadding", "cellspacing"},
    "abbr": {"title"},
    "q": {"cite"},
}
# Their content is dropped along with the tag.
_CLEAN_CONTENT_TAGS = frozenset({
    "script", "style", "title", "noscript", "template", "iframe", "object", "embed",
    "applet", "svg", "math", "textarea", "select", "xml",
})


def _html_attribute_filter(tag: str, attribute: str, value: str) -> str | None:
    """Keep only links with safe schemes and only ``cid:`` images.

    Remote images are removed: they leak that (and when) the mail was read.
    """
    lowered = value.strip().lower()
    if tag == "img" and attribute == "src":
        return value.strip() if lowered.startswith("cid:") else None
    if attribute in ("href", "cite"):
        return value.strip() if lowered.startswith(("http://", "https://", "mailto:")) else None
    return value


def sanitize_html(html: str) -> str:
    """Sanitise mail HTML with a conservative allow-list (no scripts, styles,
    forms, frames or remote images; ``cid:`` images are kept)."""
    return nh3.clean(
        html,
        tags=set(_ALLOWED_TAGS),
        clean_content_tags=set(_CLEAN_CONTENT_TAGS),
        attributes={tag: set(attrs) for tag, attrs in _ALLOWED_ATTRIBUTES.items()},
        attribute_filter=_html_attribute_filter,
        url_schemes={"http", "https", "mailto", "cid"},
        strip_comments=True,
        link_rel="noopener noreferrer nofollow",
    ).strip()


_PARAGRAPH_TAGS = frozenset({"p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote",
                             "table", "pre", "dl", "center"})
_LINE_TAGS = frozenset({"div", "tr", "dt", "dd", "caption", "ul", "ol", "li"})


class _TextExtractor(HTMLParser):
    """Render (sanitised) HTML as plain text with paragraphs and list items."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._out: list[str] = []
        self._pre = 0
        self._lists: list[list[int | None]] = []  # per list: [next number or None]
        self._cell = 0
        self._links: list[tuple[str | None, int]] = []

    # -- output helpers
    def _break(self, count: int) -> None:
        if not self._out:
            return
        # Drop trailing spaces before the break.
        while self._out and self._out[-1].endswith(" ") and not self._pre:
            self._out[-1] = self._out[-1].rstrip(" ")
            if not self._out[-1]:
                self._out.pop()
        joined = "".join(self._out[-4:])
        have = len(joined) - len(joined.rstrip("\n"))
        if have < count:
            self._out.append("\n" * (count - have))

    def _at_line_start(self) -> bool:
        return not self._out or "".join(self._out[-2:]).endswith("\n")

    # -- parser callbacks
    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":
            self._out.append("\n")
        elif tag == "hr":
            self._break(1)
            self._out.append("-" * 20)
            self._break(1)
        elif tag in ("ul", "ol"):
            self._break(1 if self._lists else 2)
            start = 1
            for name, value in attrs:
                if name == "start" and value and value.strip().isdigit():
                    start = int(value)
            self._lists.append([start if tag == "ol" else None])
        elif tag == "li":
            self._break(1)
            depth = max(len(self._lists), 1)
            marker = "- "
            if self._lists and self._lists[-1][0] is not None:
                number = self._lists[-1][0]
                marker = f"{number}. "
                self._lists[-1][0] = number + 1
            self._out.append("  " * (depth - 1) + marker)
        elif tag in ("td", "th"):
            if self._cell:
                self._out.append("\t")
            self._cell += 1
        elif tag == "tr":
            self._break(1)
            self._cell = 0
        elif tag == "pre":
            self._break(2)
            self._pre += 1
        elif tag in _PARAGRAPH_TAGS:
            self._break(2)
        elif tag in _LINE_TAGS:
            self._break(1)
        elif tag == "a":
            href = dict(attrs).get("href")
            self._links.append((href, len(self._out)))
        elif tag == "img":
            alt = (dict(attrs).get("alt") or "").strip()
            if alt:
                self._out.append(f"[{_collapse(alt)}]")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("ul", "ol"):
            if self._lists:
                self._lists.pop()
            self._break(1 if self._lists else 2)
        elif tag == "pre":
            self._pre = max(self._pre - 1, 0)
            self._break(2)
        elif tag in _PARAGRAPH_TAGS:
            self._break(2)
        elif tag in _LINE_TAGS or tag == "tr":
            self._break(1)
        elif tag == "a" and self._links:
            href, start = self._links.pop()
            if href:
                label = "".join(self._out[start:])
                target = href[7:] if href.lower().startswith("mailto:") else href
                if target and label.strip() and target not in label:
                    self._out.append(f"<{target}>" if self._at_line_start() else f" <{target}>")

    def handle_data(self, data: str) -> None:
        if self._pre:
            self._out.append(data.replace("\r\n", "\n"))
            return
        text = re.sub(r"[ \t\r\n\f]+", " ", data)
        if self._at_line_start():
            text = text.lstrip(" ")
        elif self._out and self._out[-1].endswith(" ") and text.startswith(" "):
            text = text[1:]
        if text:
            self._out.append(text)

    def text(self) -> str:
        return "".join(self._out)


def html_to_text(html: str) -> str:
    """Convert HTML to plain text, keeping paragraphs, line breaks and list items."""
    parser = _TextExtractor()
    try:
        parser.feed(html)
        parser.close()
    except Exception:  # pragma: no cover - HTMLParser is lenient
        pass
    return _tidy_text(parser.text().replace("\xa0", " "))


# ---------------------------------------------------------------------------
# Plain text
# ---------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _tidy_text(text: str) -> str:
    """Normalise line ends, drop control characters and trailing spaces,
    allow at most one empty line in a row and strip the ends."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text)
    lines = [line.rstrip() for line in text.split("\n")]
    text = "\n".join(lines)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip("\n").rstrip()


def _unflow(text: str, delsp: bool) -> str:
    """Join the soft line breaks of a ``format=flowed`` body (RFC 3676)."""
    out: list[str] = []
    buffer: str | None = None
    buffer_depth = 0
    for line in text.replace("\r\n", "\n").split("\n"):
        depth = len(line) - len(line.lstrip(">"))
        content = line[depth:]
        if content.startswith(" "):
            content = content[1:]  # space-stuffing
        flowed = content.endswith(" ") and content != "-- "
        if flowed and delsp:
            content = content[:-1]
        if buffer is not None and depth == buffer_depth:
            buffer += content
        else:
            if buffer is not None:
                out.append(">" * buffer_depth + (" " if buffer_depth else "") + buffer)
            buffer, buffer_depth = content, depth
        if not flowed:
            out.append(">" * depth + (" " if depth else "") + buffer)
            buffer = None
    if buffer is not None:
        out.append(">" * buffer_depth + (" " if buffer_depth else "") + buffer)
    return "\n".join(out)


# Reply header lines that introduce earlier history.
_ATTRIBUTION = [
    re.compile(r"^\s*On\b.{0,300}\bwrote\s*:\s*$", re.IGNORECASE),
    re.compile(r"^\s*Am\b.{0,300}\bschrieb\b.{0,200}:\s*$", re.IGNORECASE),
    re.compile(r"^\s*Le\b.{0,300}\ba\s+écrit\s*:\s*$", re.IGNORECASE),
    re.compile(r"^\s*El\b.{0,300}\bescribió\s*:\s*$", re.IGNORECASE),
    re.compile(r"^\s*Op\b.{0,300}\bschreef\b.{0,200}:\s*$", re.IGNORECASE),
    re.compile(r"^.{0,300}\bнаписала?\s*:\s*$", re.IGNORECASE),
]
_ORIGINAL_MESSAGE = re.compile(
    r"^\s*-{2,}\s*(original message|ursprüngliche nachricht|originalnachricht|"
    r"message d'origine|mensaje original|исходное сообщение|оригинальное сообщение)\s*-{2,}\s*$",
    re.IGNORECASE,
)
_OUTLOOK_FROM = re.compile(r"^\s*\*?\s*(from|von|от|de|van|da)\s*:\s*\*?\s*\S", re.IGNORECASE)
_OUTLOOK_SENT = re.compile(
    r"^\s*\*?\s*(sent|gesendet|отправлено|envoyé|enviado|verzonden|inviato|date|datum|дата)\s*:",
    re.IGNORECASE,
)
_SEPARATOR_LINE = re.compile(r"^\s*[_\-=*]{5,}\s*$")


def _attribution_span(lines: list[str], i: int) -> int:
    """1 or 2 if an attribution line ("On … wrote:") starts at ``i``, else 0."""
    line = lines[i]
    if len(line) > 400 or not line.strip():
        return 0
    if any(p.match(line) for p in _ATTRIBUTION):
        return 1
    if i + 1 < len(lines) and lines[i + 1].strip():
        joined = line.rstrip() + " " + lines[i + 1].strip()
        if any(p.match(joined) for p in _ATTRIBUTION):
            return 2
    return 0


def _is_outlook_block(lines: list[str], i: int) -> bool:
    if not _OUTLOOK_FROM.match(lines[i]):
        return False
    following = [line for line in lines[i + 1:i + 6] if line.strip()][:3]
    return any(_OUTLOOK_SENT.match(line) for line in following)


def strip_quoted_history(text: str) -> str:
    """Return the new part of a reply, without the quoted earlier messages.

    Lines quoted with ``>`` are removed, attribution lines that introduce such
    quotes are removed, and everything from an unquoted history header ("On …
    wrote:", "Am … schrieb …:", "-----Original Message-----", an Outlook
    "From:/Sent:" block, …) onwards is cut. If nothing would remain, the full
    text is returned.
    """
    lines = text.split("\n")
    cut = len(lines)
    drop: set[int] = set()
    i = 0
    while i < len(lines):
        if lines[i].lstrip().startswith(">"):
            i += 1
            continue
        span = _attribution_span(lines, i)
        if span:
            nxt = next((k for k in range(i + span, len(lines)) if lines[k].strip()), None)
            if nxt is not None and lines[nxt].lstrip().startswith(">"):
                drop.update(range(i, i + span))
                i += span
                continue
            cut = i
            break
        if _ORIGINAL_MESSAGE.match(lines[i]) or _is_outlook_block(lines, i):
            cut = i
            break
        i += 1
    def quoted(k: int) -> bool:
        return 0 <= k < len(lines) and lines[k].lstrip().startswith(">")

    kept = [
        line for k, line in enumerate(lines[:cut])
        if k not in drop and not quoted(k)
        # a quoted line that the sender's client wrapped without the ">"
        and not (line.strip() and quoted(k - 1) and quoted(k + 1))
    ]
    while kept and (not kept[-1].strip() or _SEPARATOR_LINE.match(kept[-1])):
        kept.pop()
    result = _tidy_text("\n".join(kept))
    return result if result.strip() else text


# ---------------------------------------------------------------------------
# Ticket numbers
# ---------------------------------------------------------------------------

def find_ticket_numbers(text: str, prefix: str = "OTK") -> list[str]:
    """Ticket numbers written as ``[PREFIX-digits]`` in ``text``.

    Case-insensitive; ``#`` is accepted instead of ``-``. Returned in order of
    appearance, without duplicates, normalised to upper case and at least
    :data:`TICKET_NUMBER_DIGITS` digits: ``[otk-42]`` gives ``"OTK-000042"``.
    """
    if not text or not prefix:
        return []
    pattern = re.compile(r"\[\s*" + re.escape(prefix.strip()) + r"\s*[-#]\s*(\d{1,18})\s*\]",
                         re.IGNORECASE)
    found: list[str] = []
    for match in pattern.finditer(text):
        number = f"{prefix.strip().upper()}-{int(match.group(1)):0{TICKET_NUMBER_DIGITS}d}"
        if number not in found:
            found.append(number)
    return found


# ---------------------------------------------------------------------------
# Body and attachment collection
# ---------------------------------------------------------------------------

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
        if depth > _MAX_DEPTH:
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
    if depth > _MAX_DEPTH or not _content_type(part).startswith("multipart/"):
        return
    try:
        children = part.get_payload()
    except Exception:
        return
    if isinstance(children, list):
        for child in children:
            if isinstance(child, Message):
                yield from _walk(child, depth + 1)


# ---------------------------------------------------------------------------
# Automatic messages and bounces
# ---------------------------------------------------------------------------

_AUTO_SUBJECT = re.compile(
    r"^\s*(automatic reply|auto(?:matic)?[- ]?reply|auto\s*:|out of (?:the )?office|"
    r"automatische antwort|abwesenheitsnotiz|réponse automatique|автоответ)",
    re.IGNORECASE,
)
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
        tokens = {tok.strip().lower() for tok in re.split(r"[,;\s]+", _unfold(suppress)) if tok.strip()}
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


# ---------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------

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
        msg = BytesParser(policy=email_policy.default).parsebytes(data)
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

    tickets = find_ticket_numbers(subject, ticket_prefix)
    for number in find_ticket_numbers(original_subject or "", ticket_prefix):
        if number not in tickets:
            tickets.append(number)

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
