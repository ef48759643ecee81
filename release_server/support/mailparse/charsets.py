"""Decoding and charsets: bytes of unknown or mislabelled charset to text, never raising.

Declared charsets are mapped to Python codecs (with the supersets mailers really
mean), undeclared 8-bit text is guessed among windows-1251, KOI8-R and Latin from
letter frequencies of the whole message, and RFC 2047 encoded-words are decoded.
Every function is linear in its input: the statistics of the message-wide context are
computed once per message, not once per word.
"""
from __future__ import annotations

import base64
import binascii
import codecs
import re
from functools import lru_cache

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


def _cyrillic_stats(text: str) -> tuple[float, int, int]:
    """(score, letters, mixed) of ``text``: how much it looks like Cyrillic prose.

    The score is higher for more frequent Cyrillic letters; ``letters`` counts the
    non-ASCII letters and ``mixed`` those that touch an ASCII letter: Latin-1 text
    decoded as a Cyrillic code page yields isolated Cyrillic letters inside Latin
    words ("Mьnchen"), real Cyrillic text does not. All three add up over pieces
    of text separated by an ASCII space.
    """
    score = 0.0
    letters = mixed = 0
    last = len(text) - 1
    for i, ch in enumerate(text):
        if ch.isascii():
            continue
        weight = _CYRILLIC_WEIGHT.get(ch.lower())
        if weight is None:
            score -= 20.0 if not ch.isalpha() else 10.0
        else:
            score += weight * (1.0 if ch.islower() else 0.6)
        if not ch.isalpha():
            continue
        letters += 1
        before = text[i - 1] if i else ""
        after = text[i + 1] if i < last else ""
        if (before.isascii() and before.isalpha()) or (after.isascii() and after.isalpha()):
            mixed += 1
    return score, letters, mixed


#: Bytes of a text (and of the message-wide context) looked at to guess its charset.
_GUESS_SAMPLE = 64 * 1024


@lru_cache(maxsize=16)
def _context_stats(context: bytes, codec: str) -> tuple[float, int, int]:
    return _cyrillic_stats(context[:_GUESS_SAMPLE].decode(codec, errors="replace"))


def _guess_legacy(data: bytes, context: bytes = b"") -> str:
    """Decode 8-bit bytes of unknown charset: windows-1251, KOI8-R or Latin.

    The guess looks at ``data`` together with ``context`` (the message's other
    8-bit lines); the context's share is computed once and reused.
    """
    best_codec, best_score = "", 0.0
    sample = data[:_GUESS_SAMPLE]
    for codec in ("cp1251", "koi8_r"):
        score, letters, mixed = _cyrillic_stats(sample.decode(codec, errors="replace"))
        if context:
            c_score, c_letters, c_mixed = _context_stats(context, codec)
            score, letters, mixed = score + c_score, letters + c_letters, mixed + c_mixed
        if not (letters > 0 and mixed * 4 <= letters):
            continue
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


# RFC 2047: encoded-text never contains "?", so a word ends at its first "?=";
# the charset is at most 75 characters like the whole word. Both keep the scan linear.
_ENCODED_WORD = re.compile(rb"=\?([^?\s]{1,75})\?([QqBb])\?([^?]*)\?=")


def _has_surrogates(text: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def _to_bytes(text: str) -> bytes:
    """Recover the original bytes of a string produced by the bytes parser."""
    return text.encode("utf-8", "surrogateescape")


_Q_ESCAPE = re.compile(rb"=([0-9A-Fa-f]{2})")


def _q_decode(payload: bytes) -> bytes:
    payload = payload.replace(b"_", b" ")
    return _Q_ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), payload)


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
