"""Attachment filenames: RFC 2047 / RFC 2231 names recovered from damaged headers, and made safe
to store and to offer for download (:func:`safe_filename`)."""
from __future__ import annotations

import mimetypes
import re
import unicodedata
from email.message import Message

from .charsets import _decode_bytes, _has_surrogates, _to_bytes, decode_encoded_words
from .headers import _collapse, _unfold
from .model import MAX_FILENAME_LENGTH

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
_QUOTED_PAIR = re.compile(r"\\(.)")
_PATH_SEPARATORS = re.compile(r"[/\\]")


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
            value = _QUOTED_PAIR.sub(r"\1", value[1:-1])
        params.setdefault(match.group(1).lower(), value)
    return params


_PERCENT_ESCAPE = re.compile(rb"%([0-9A-Fa-f]{2})")
_SECTION = re.compile(r"(.*)\*(\d+)(\*?)")


def _rfc2231_value(params: dict[str, str], name: str, context: bytes) -> str | None:
    """Assemble an RFC 2231 parameter (``name*`` / ``name*0*`` ...) by hand."""
    if name + "*" in params:
        sections = [(0, True, params[name + "*"])]
    else:
        sections = []
        for key, value in params.items():
            match = _SECTION.fullmatch(key)
            if match and match.group(1) == name:
                sections.append((int(match.group(2)[:9]), bool(match.group(3)), value))
        sections.sort()
    if not sections:
        return None
    charset = None
    chunks: list[bytes] = []
    for index, encoded, value in sections:
        if encoded and index == 0 and value.count("'") >= 2:
            charset, _, value = value.split("'", 2)
        chunk = _to_bytes(value)
        if encoded:
            chunk = _PERCENT_ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), chunk)
        chunks.append(chunk)
    return _decode_bytes(b"".join(chunks), charset, context)


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


_ENCODED_WORD_START = re.compile(r"=\?[^?]{1,75}\?[QqBb]\?")


def _looks_damaged(value: str) -> bool:
    return "\ufffd" in value or _has_surrogates(value) or bool(_ENCODED_WORD_START.search(value))


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
    text = _PATH_SEPARATORS.split(text)[-1]
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
