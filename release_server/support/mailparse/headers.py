"""Headers and addresses: best-effort, linear-time access to the header fields of one message.

Subjects, senders and recipients, message ids and the date are read through the
standard library's structured headers when they are clean, and decoded from the raw
bytes when they are not. Repeated addresses and ids are removed with a dict, and every
list is bounded (:data:`~.model.MAX_ADDRESSES`, :data:`~.model.MAX_REFERENCES`).
"""
from __future__ import annotations

import re
from datetime import datetime, timezone
from email import utils as email_utils
from email import policy as email_policy
from email.message import EmailMessage, Message

from .charsets import _decode_bytes, _has_surrogates, _to_bytes, decode_encoded_words
from .model import MAX_ADDRESSES, MAX_REFERENCES

_FOLD = re.compile(r"\r?\n(?=[ \t])|\r?\n")
_MSG_ID = re.compile(r"<\s*([^<>\s]+?)\s*>")
_ID_SEPARATORS = re.compile(r"[\s,]+")


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
        self._context = context
        try:
            items = list(msg.raw_items())
        except Exception:  # pragma: no cover - raw_items reads a plain list
            items = []
        if isinstance(msg.policy, email_policy.EmailPolicy):
            self._msg = msg
        else:
            # Structured (policy.default) access to the same raw header values.
            self._msg = EmailMessage(policy=email_policy.default)
            for name, value in items:
                self._msg.set_raw(name, value)
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
        """The distinct addresses of the ``names`` headers, in order, at most :data:`MAX_ADDRESSES`."""
        seen: dict[str, None] = {}
        for name in names:
            for _, addr in self.addresses(name):
                if addr:
                    seen.setdefault(addr, None)
                    if len(seen) >= MAX_ADDRESSES:
                        return list(seen)
        return list(seen)

    def ids(self, name: str) -> list[str]:
        """Message ids in the ``name`` headers, without angle brackets and repeats.

        At most :data:`MAX_REFERENCES`: the first (a thread's root) and the latest ones.
        """
        found: dict[str, None] = {}
        for raw in self.raw_all(name):
            value = self._fallback(raw) if not raw.isascii() else _unfold(raw)
            ids = _MSG_ID.findall(value)
            if not ids:
                ids = [tok.strip("<>") for tok in _ID_SEPARATORS.split(value) if "@" in tok]
            for msg_id in ids:
                if msg_id:
                    found.setdefault(msg_id, None)
        result = list(found)
        if len(result) > MAX_REFERENCES:
            result = result[:1] + result[len(result) - (MAX_REFERENCES - 1):]
        return result

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
