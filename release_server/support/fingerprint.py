"""Fingerprints of failed updates: what makes two failure reports "the same failure".

A fingerprint is the SHA-256 of the component, the target version, the stage that
failed, the error code and the error message with its variable parts removed. The
normalisation follows the idea behind Sentry's grouping: strip what changes from one
occurrence to the next (timestamps, URLs, file paths, UUIDs, hex ids and numbers) so
that only the shape of the message remains. Pure functions, no I/O.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

MAX_PATTERN_CHARS = 400

_SUBSTITUTIONS: list[tuple[re.Pattern[str], str]] = [
    # ISO 8601 / RFC 3339 / "2024-05-01 12:00:03,123" timestamps, then bare times and RFC 2822 dates
    (re.compile(r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{1,2}:\d{2}(?::\d{2})?(?:[.,]\d+)?)?"
                r"(?:\s?(?:Z|UTC|[+-]\d{2}:?\d{2}))?\b", re.I), "<ts>"),
    (re.compile(r"\b\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?\b"), "<ts>"),
    (re.compile(r"\b(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun),?\s+\d{1,2}\s+\w{3}\s+\d{4}\b", re.I), "<ts>"),
    # URLs before paths (their path part would look like a file path)
    (re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s'\"<>]+", re.I), "<url>"),
    # Windows paths (C:\..., \\server\share\...) and POSIX paths (/x/y, ./x, ~/x, x/y/z.ext), whole,
    # before the ids and numbers inside them are touched
    (re.compile(r"(?:\b[a-z]:|\\\\[^\s\\]+)(?:\\[^\s\\'\"<>|:*?]+)+\\?", re.I), "<path>"),
    (re.compile(r"(?:(?<![\w.~])(?:\.{1,2}|~)?/[^\s'\"<>:;,()\[\]]+|\b[\w.-]+(?:/[\w.-]+){2,})"), "<path>"),
    # e-mail addresses, UUIDs, IPv6 addresses
    (re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b"), "<email>"),
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I), "<id>"),
    (re.compile(r"\b(?:[0-9a-f]{0,4}:){2,7}[0-9a-f]{0,4}\b", re.I), "<ip>"),
    # numbers and hex ids are one kind of token: "request 123456" and "request 9f8e7d" are the same
    # message, so any hex-only word containing a digit (and 0x...) becomes <n>, like a number
    (re.compile(r"\b0x[0-9a-f]+\b", re.I), "<n>"),
    (re.compile(r"\b(?=[0-9a-f]*\d)[0-9a-f]+\b", re.I), "<n>"),
    # any remaining digits (inside words: "30s", "sha256"), with decimals or thousands separators
    (re.compile(r"\d+(?:[.,]\d+)*"), "<n>"),
]

_SPACE = re.compile(r"\s+")


def normalise_message(message: str | None) -> str:
    """The shape of an error message: variable parts replaced by placeholders.

    >>> normalise_message("Timeout after 30s writing /var/lib/app/db/0001.sql at 2024-05-01T10:00:00Z")
    'Timeout after <n>s writing <path> at <ts>'
    """
    text = (message or "").strip()
    if not text:
        return ""
    first = text.splitlines()[0] if len(text) > 2000 else text  # a huge message: its first line is the shape
    for pattern, repl in _SUBSTITUTIONS:
        first = pattern.sub(repl, first)
    first = _SPACE.sub(" ", first).strip()
    return first[:MAX_PATTERN_CHARS]


@dataclass(frozen=True)
class Fingerprint:
    value: str  # 64 hex chars
    component: str
    target_version: str
    stage: str
    error_code: str
    pattern: str

    @property
    def cause(self) -> str:
        """The same failure whatever the release it happens on (see :func:`cause_of`)."""
        return cause_of(self.component, self.stage, self.error_code, self.pattern)


def cause_of(component: str, stage: str, error_code: str, pattern: str) -> str:
    """SHA-256 of the fingerprint's parts without the target version (64 hex chars).

    Two groups with one cause are the same failure on two releases; a failure whose cause
    matches a group resolved in version X, on X or newer, is that group's regression.
    """
    parts = [component.strip().lower(), stage.strip().lower(), error_code.strip(), pattern]
    return hashlib.sha256("\x1fcause\x1f".join(parts).encode("utf-8")).hexdigest()


def fingerprint(component: str, target_version: str, stage: str | None, error_code: str | None,
                message: str | None) -> Fingerprint:
    """The fingerprint of one failure report."""
    pattern = normalise_message(message)
    parts = [component.strip().lower(), target_version.strip(), (stage or "").strip().lower(),
             (error_code or "").strip(), pattern]
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()
    return Fingerprint(digest, parts[0], parts[1], parts[2], parts[3], pattern)
