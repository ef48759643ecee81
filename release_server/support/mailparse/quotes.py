"""Quote trimming: the new part of a reply, without the quoted history under it
(:func:`strip_quoted_history`). Every pattern is tried on one line of bounded length, and
none can backtrack over a run of blanks, so trimming is linear in the text."""
from __future__ import annotations

import re

from .text import _tidy_text

#: Longer lines are never an attribution or a history header.
_MAX_HEADER_LINE = 400

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
_OUTLOOK_FROM = re.compile(r"^\s*(?:\*\s*)?(from|von|от|de|van|da)\s*:\s*(?:\*\s*)?\S", re.IGNORECASE)
_OUTLOOK_SENT = re.compile(
    r"^\s*(?:\*\s*)?(sent|gesendet|отправлено|envoyé|enviado|verzonden|inviato|date|datum|дата)\s*:",
    re.IGNORECASE,
)
_SEPARATOR_LINE = re.compile(r"^\s*[_\-=*]{5,}\s*$")


def _attribution_span(lines: list[str], i: int) -> int:
    """1 or 2 if an attribution line ("On … wrote:") starts at ``i``, else 0."""
    line = lines[i]
    if len(line) > _MAX_HEADER_LINE or not line.strip():
        return 0
    # Every attribution ends with a colon: a cheap test before the patterns.
    if line.rstrip().endswith(":") and any(p.match(line) for p in _ATTRIBUTION):
        return 1
    if i + 1 < len(lines) and lines[i + 1][-_MAX_HEADER_LINE:].rstrip().endswith(":") and lines[i + 1].strip():
        joined = line.rstrip() + " " + lines[i + 1][:_MAX_HEADER_LINE].strip()
        if any(p.match(joined) for p in _ATTRIBUTION):
            return 2
    return 0


def _is_outlook_block(lines: list[str], i: int) -> bool:
    if len(lines[i]) > _MAX_HEADER_LINE or ":" not in lines[i] or not _OUTLOOK_FROM.match(lines[i]):
        return False
    following = [line[:_MAX_HEADER_LINE] for line in lines[i + 1:i + 6] if line.strip()][:3]
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
        if (len(lines[i]) <= _MAX_HEADER_LINE and "--" in lines[i] and _ORIGINAL_MESSAGE.match(lines[i])) \
                or _is_outlook_block(lines, i):
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
