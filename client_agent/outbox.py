"""Durable outbox of reports waiting to be delivered to the update server.

Each report is a JSON object with a UUID ``id``. It is written to its own file
in the outbox directory (atomically) before any attempt to send it, so reports
survive crashes and restarts. Delivery is done by a callable supplied by the
caller, which keeps this module free of network code (one report at a time with
:meth:`Outbox.flush`, or in batches with :meth:`Outbox.flush_batches`, which is how the
agent sends them); failed deliveries are retried later with capped exponential backoff. The server is expected to treat
the report ``id`` as an idempotency key, since a report may be sent more than
once (for instance when the agent dies between sending and acknowledging).
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from client_agent.backoff import BackoffPolicy
from client_agent.errors import StateError
from client_agent.fsutil import atomic_write_json, fsync_dir, make_private_dir, read_json

log = logging.getLogger(__name__)

# Result of a send callable: True when the server acknowledged the report,
# False on failure, or a number of seconds the server asked us to wait
# (e.g. from Retry-After) which also counts as a failure.
SendResult = bool | float
SendFn = Callable[[dict[str, Any]], SendResult]
# Sending a batch: one result for the whole batch, or one per report id.
SendManyFn = Callable[[list[dict[str, Any]]], "SendResult | Mapping[str, SendResult]"]
DEFAULT_BATCH_SIZE = 50
DEFAULT_BATCH_BYTES = 768 * 1024  # the server takes JSON bodies up to 1 MiB


@dataclass(frozen=True)
class PendingReport:
    """A report in the outbox plus its delivery bookkeeping."""

    report: dict[str, Any]
    seq: int
    created_at: float
    attempts: int = 0
    next_try_at: float = 0.0
    last_error: str | None = None

    @property
    def id(self) -> str:
        return str(self.report["id"])


@dataclass
class FlushResult:
    """Ids of reports delivered and of reports rescheduled by one ``flush``."""

    sent: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


class Outbox:
    """A directory of report files, one ``<id>.json`` per undelivered report."""

    def __init__(self, directory: Path | str, *, policy: BackoffPolicy | None = None,
                 rng: Callable[[], float] = random.random) -> None:
        self.directory = make_private_dir(directory)
        self.policy = policy or BackoffPolicy()
        self.rng = rng

    def add(self, report: Mapping[str, Any], *, now: float | None = None) -> str:
        """Store ``report`` durably (assigning a UUID ``id`` if it has none); return its id.

        Adding a report whose id is already queued replaces its content and
        keeps its place and retry schedule.
        """
        body = dict(report)
        report_id = body["id"] = _check_id(body.get("id") or uuid.uuid4())
        existing = self._load(self._path(report_id))
        if existing is not None:
            entry = PendingReport(body, existing.seq, existing.created_at, existing.attempts,
                                  existing.next_try_at, existing.last_error)
        else:
            seqs = [p.seq for p in self.pending()]
            entry = PendingReport(body, max(seqs, default=0) + 1,
                                  time.time() if now is None else now)
        self._save(entry)
        return report_id

    def pending(self) -> list[PendingReport]:
        """All undelivered reports, oldest first."""
        entries = []
        for path in self.directory.glob("*.json"):
            entry = self._load(path)
            if entry is not None:
                entries.append(entry)
        return sorted(entries, key=lambda e: e.seq)

    def due(self, now: float) -> list[PendingReport]:
        """Undelivered reports whose next attempt time has come, oldest first."""
        return [e for e in self.pending() if e.next_try_at <= now]

    def ack(self, report_id: str) -> None:
        """Forget a delivered report (no error if it is already gone)."""
        try:
            os.unlink(self._path(report_id))
        except FileNotFoundError:
            return
        fsync_dir(self.directory)

    def mark_attempt(self, report_id: str, next_try_at: float,
                     error: str | None = None) -> PendingReport:
        """Record a failed delivery attempt and when to try again."""
        entry = self._load(self._path(report_id))
        if entry is None:
            raise KeyError(report_id)
        updated = PendingReport(entry.report, entry.seq, entry.created_at, entry.attempts + 1,
                                next_try_at, error)
        self._save(updated)
        return updated

    def next_delay(self, attempts: int, requested: float | None = None) -> float:
        """Delay before the next try after ``attempts`` failures, honouring a server request."""
        delay = self.policy.delay(attempts, self.rng)
        return max(delay, requested) if requested is not None else delay

    def flush(self, send: SendFn, now: float | None = None) -> FlushResult:
        """Try to deliver every due report in order; acknowledge or reschedule each one.

        ``send`` gets the report dict and returns True once the server has
        accepted it, False on failure, or a float: a failure with a delay the
        server asked for. An exception from ``send`` counts as a failure.
        """
        now = time.time() if now is None else now
        result = FlushResult()
        for entry in self.due(now):
            error: str | None = None
            try:
                outcome = send(dict(entry.report))
            except Exception as exc:  # a failing transport must not lose the queue
                log.warning("sending report %s failed: %r", entry.id, exc)
                outcome, error = False, repr(exc)
            if outcome is True:
                self.ack(entry.id)
                result.sent.append(entry.id)
                continue
            requested = None if isinstance(outcome, bool) else float(outcome)
            delay = self.next_delay(entry.attempts + 1, requested)
            self.mark_attempt(entry.id, now + delay, error)
            result.failed.append(entry.id)
        return result

    def flush_batches(self, send_many: SendManyFn, now: float | None = None,
                      batch_size: int = DEFAULT_BATCH_SIZE, batch_bytes: int = DEFAULT_BATCH_BYTES) -> FlushResult:
        """Deliver every due report in batches of up to ``batch_size`` reports and about
        ``batch_bytes`` of JSON (a larger report goes alone), oldest first.

        ``send_many`` gets a list of report dicts and returns one result for the
        batch (as for :meth:`flush`) or a mapping of report id to result, when the
        reports of one batch fared differently. An exception counts as a failure of
        the whole batch. Each report is acknowledged or rescheduled on its own.
        """
        now = time.time() if now is None else now
        result = FlushResult()
        for batch in _batches(self.due(now), max(1, batch_size), batch_bytes):
            error: str | None = None
            try:
                outcome: Any = send_many([dict(e.report) for e in batch])
            except Exception as exc:  # a failing transport must not lose the queue
                log.warning("sending %d report(s) failed: %r", len(batch), exc)
                outcome, error = False, repr(exc)
            for entry in batch:
                each = outcome.get(entry.id, False) if isinstance(outcome, Mapping) else outcome
                if each is True:
                    self.ack(entry.id)
                    result.sent.append(entry.id)
                    continue
                requested = None if isinstance(each, bool) else float(each)
                self.mark_attempt(entry.id, now + self.next_delay(entry.attempts + 1, requested), error)
                result.failed.append(entry.id)
        return result

    # ---------------------------------------------------------------- storage

    def _path(self, report_id: str) -> Path:
        return self.directory / f"{_check_id(report_id)}.json"

    def _save(self, entry: PendingReport) -> None:
        atomic_write_json(self._path(entry.id), {
            "report": entry.report, "seq": entry.seq, "created_at": entry.created_at,
            "attempts": entry.attempts, "next_try_at": entry.next_try_at,
            "last_error": entry.last_error,
        })

    def _load(self, path: Path) -> PendingReport | None:
        """Read one entry; a corrupt file is set aside so it cannot block the queue."""
        try:
            data = read_json(path, default=None)
            if data is None:
                return None
            return PendingReport(dict(data["report"]), int(data["seq"]), float(data["created_at"]),
                                 int(data["attempts"]), float(data["next_try_at"]),
                                 data.get("last_error"))
        except (StateError, KeyError, TypeError, ValueError) as exc:
            log.error("setting aside corrupt outbox entry %s: %s", path, exc)
            os.replace(path, path.with_suffix(".corrupt"))
            return None


def _batches(entries: list[PendingReport], size: int, max_bytes: int) -> list[list[PendingReport]]:
    out: list[list[PendingReport]] = []
    current: list[PendingReport] = []
    used = 0
    for entry in entries:
        n = len(json.dumps(entry.report, separators=(",", ":"), default=str))
        if current and (len(current) >= size or used + n > max_bytes):
            out.append(current)
            current, used = [], 0
        current.append(entry)
        used += n
    if current:
        out.append(current)
    return out


def _check_id(report_id: Any) -> str:
    """Report ids are UUIDs; anything else could name a file outside the outbox."""
    try:
        return str(uuid.UUID(str(report_id)))
    except ValueError:
        raise ValueError(f"report id must be a UUID, got {report_id!r}") from None
