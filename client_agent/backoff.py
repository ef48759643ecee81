"""Retry timing: capped exponential backoff with full jitter, and ``Retry-After`` parsing.

Pure functions only; randomness is injected so the policy can be tested exactly.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Callable

# Beyond this many doublings the ceiling is always the cap; avoids float overflow.
_MAX_EXPONENT = 64


@dataclass(frozen=True)
class BackoffPolicy:
    """Capped exponential backoff.

    base:   ceiling of the delay after the first failed attempt, in seconds.
    factor: growth of the ceiling per further failed attempt.
    cap:    largest ceiling, in seconds.
    """

    base: float = 5.0
    factor: float = 2.0
    cap: float = 3600.0

    def __post_init__(self) -> None:
        if self.base <= 0 or self.cap <= 0 or self.factor < 1:
            raise ValueError("backoff needs base > 0, cap > 0 and factor >= 1")

    def ceiling(self, attempt: int) -> float:
        """Largest delay after ``attempt`` failed attempts (attempt >= 1)."""
        exponent = min(max(attempt, 1) - 1, _MAX_EXPONENT)
        return min(self.cap, self.base * self.factor**exponent)

    def delay(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        """Full-jitter delay: uniform in [0, ceiling(attempt)]; ``rng`` returns a float in [0, 1]."""
        return rng() * self.ceiling(attempt)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Parse an HTTP ``Retry-After`` value into a delay in seconds from ``now``.

    Accepts delta-seconds ("120") or an HTTP date ("Wed, 21 Oct 2015 07:28:00 GMT").
    Dates in the past give 0. Returns None for a missing or unparsable value.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        return float(int(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)
