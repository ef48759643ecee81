"""Durable outbox and backoff policy."""

from __future__ import annotations

import json
import os
import uuid
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest

from client_agent.backoff import BackoffPolicy, parse_retry_after
from client_agent.outbox import Outbox

# ---------------------------------------------------------------- backoff


def test_backoff_ceiling_grows_and_is_capped() -> None:
    policy = BackoffPolicy(base=2, factor=3, cap=100)
    assert [policy.ceiling(n) for n in range(1, 7)] == [2, 6, 18, 54, 100, 100]
    assert policy.ceiling(10_000) == 100  # no overflow for huge attempt counts


@pytest.mark.parametrize("attempt", [1, 2, 5, 50])
def test_full_jitter_bounds(attempt: int) -> None:
    policy = BackoffPolicy(base=1, cap=30)
    assert policy.delay(attempt, rng=lambda: 0.0) == 0.0
    assert policy.delay(attempt, rng=lambda: 1.0) == policy.ceiling(attempt)
    assert policy.delay(attempt, rng=lambda: 0.25) == 0.25 * policy.ceiling(attempt)
    for _ in range(200):
        assert 0.0 <= policy.delay(attempt) <= policy.ceiling(attempt)


def test_invalid_policy() -> None:
    with pytest.raises(ValueError):
        BackoffPolicy(base=0)


def test_retry_after_seconds_and_dates() -> None:
    now = datetime(2030, 1, 1, 12, 0, tzinfo=timezone.utc).timestamp()
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(" 0 ") == 0.0
    later = format_datetime(datetime(2030, 1, 1, 12, 1, 30, tzinfo=timezone.utc), usegmt=True)
    assert parse_retry_after(later, now=now) == 90.0
    assert parse_retry_after("Tue, 01 Jan 2030 11:00:00 GMT", now=now) == 0.0
    future = datetime.now(timezone.utc) + timedelta(seconds=100)
    assert 90 < parse_retry_after(format_datetime(future, usegmt=True)) <= 100  # type: ignore[operator]
    for bad in (None, "", "-5", "1.5", "soon", "Mon, 99 Foo 2030"):
        assert parse_retry_after(bad, now=now) is None


# ---------------------------------------------------------------- outbox


def report(n: int) -> dict[str, Any]:
    return {"kind": "install", "n": n}


def test_reports_survive_reinstantiation(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox")
    ids = [box.add(report(n), now=1000.0) for n in range(3)]
    assert all(uuid.UUID(i) for i in ids)
    assert (os.stat(tmp_path / "outbox").st_mode & 0o777) == 0o700
    again = Outbox(tmp_path / "outbox")
    assert [p.report["n"] for p in again.pending()] == [0, 1, 2]
    assert [p.id for p in again.pending()] == ids
    on_disk = json.loads((tmp_path / "outbox" / f"{ids[0]}.json").read_text())
    assert on_disk["report"] == {"kind": "install", "n": 0, "id": ids[0]}


def test_ack_removes(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    first, second = box.add(report(1)), box.add(report(2))
    box.ack(first)
    box.ack(first)  # idempotent
    assert [p.id for p in Outbox(tmp_path).pending()] == [second]


def test_existing_id_is_kept_and_re_adding_replaces(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    rid = str(uuid.uuid4())
    assert box.add({"id": rid, "v": 1}) == rid
    box.mark_attempt(rid, next_try_at=50.0)
    box.add({"id": rid, "v": 2})
    [entry] = box.pending()
    assert entry.report["v"] == 2 and entry.attempts == 1 and entry.next_try_at == 50.0
    with pytest.raises(ValueError):
        box.add({"id": "../../etc/passwd"})


def test_flush_sends_in_order_and_reschedules_failures(tmp_path: Path) -> None:
    box = Outbox(tmp_path, policy=BackoffPolicy(base=10, cap=1000), rng=lambda: 1.0)
    ids = [box.add(report(n), now=0.0) for n in range(4)]
    seen: list[int] = []

    def send(r: dict[str, Any]) -> bool:
        seen.append(r["n"])
        if r["n"] == 3:
            raise ConnectionError("boom")
        return r["n"] != 1

    result = box.flush(send, now=100.0)
    assert seen == [0, 1, 2, 3]
    assert result.sent == [ids[0], ids[2]] and result.failed == [ids[1], ids[3]]
    remaining = Outbox(tmp_path).pending()
    assert [p.id for p in remaining] == [ids[1], ids[3]]
    assert all(p.attempts == 1 and p.next_try_at == 110.0 for p in remaining)
    assert "boom" in (remaining[1].last_error or "")
    # Not due yet: nothing is sent.
    assert box.flush(lambda r: True, now=105.0).sent == []
    assert box.flush(lambda r: True, now=110.0).sent == [ids[1], ids[3]]
    assert box.pending() == []


def test_backoff_grows_and_is_capped(tmp_path: Path) -> None:
    box = Outbox(tmp_path, policy=BackoffPolicy(base=10, factor=2, cap=50), rng=lambda: 1.0)
    rid = box.add(report(0), now=0.0)
    now, delays = 0.0, []
    for _ in range(6):
        box.flush(lambda r: False, now=now)
        [entry] = box.pending()
        delays.append(entry.next_try_at - now)
        now = entry.next_try_at
    assert delays == [10, 20, 40, 50, 50, 50]
    assert box.pending()[0].attempts == 6 and box.pending()[0].id == rid


def test_server_requested_delay_is_honoured(tmp_path: Path) -> None:
    box = Outbox(tmp_path, policy=BackoffPolicy(base=10), rng=lambda: 0.5)
    box.add(report(0))
    box.flush(lambda r: 300.0, now=0.0)
    assert box.pending()[0].next_try_at == 300.0


def test_corrupt_entry_is_set_aside(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    good = box.add(report(1))
    bad = tmp_path / f"{uuid.uuid4()}.json"
    bad.write_text("{not json")
    assert [p.id for p in box.pending()] == [good]
    assert bad.with_suffix(".corrupt").exists()


# ---------------------------------------------------------------- batches


def _ids(entries) -> list[str]:  # noqa: ANN001
    return [e.id for e in entries]


def test_flush_batches_sends_the_queue_in_batches_oldest_first(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox", rng=lambda: 1.0)
    ids = [box.add(report(n), now=float(n)) for n in range(7)]
    calls: list[list[str]] = []

    def send_many(reports: list[dict[str, Any]]) -> bool:
        calls.append([r["id"] for r in reports])
        return True

    result = box.flush_batches(send_many, now=100.0, batch_size=3)
    assert calls == [ids[0:3], ids[3:6], ids[6:7]]
    assert result.sent == ids and result.failed == [] and box.pending() == []


def test_flush_batches_keeps_batches_under_the_byte_limit(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox")
    for n in range(4):
        box.add({"n": n, "log_tail": "x" * 400}, now=float(n))
    sizes: list[int] = []
    box.flush_batches(lambda rs: sizes.append(len(rs)) or True, now=10.0, batch_size=50, batch_bytes=1000)
    assert sizes == [2, 2]


def test_flush_batches_reschedules_a_failed_batch_and_per_report_results(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox", rng=lambda: 1.0)
    ids = [box.add(report(n), now=float(n)) for n in range(4)]
    result = box.flush_batches(lambda rs: 30.0, now=100.0, batch_size=2)  # the server asked to wait
    assert result.sent == [] and result.failed == ids
    assert all(e.attempts == 1 and e.next_try_at >= 130.0 for e in box.pending())
    assert box.flush_batches(lambda rs: True, now=101.0) .sent == []  # not due yet

    def mixed(reports: list[dict[str, Any]]) -> dict[str, bool]:
        return {r["id"]: r["n"] % 2 == 0 for r in reports}

    result = box.flush_batches(mixed, now=1000.0, batch_size=10)
    assert result.sent == [ids[0], ids[2]] and result.failed == [ids[1], ids[3]]
    assert _ids(box.pending()) == [ids[1], ids[3]]

    def broken(reports: list[dict[str, Any]]) -> bool:
        raise ConnectionError("down")

    result = box.flush_batches(broken, now=10_000.0)
    assert result.failed == [ids[1], ids[3]] and all(e.last_error for e in box.pending())
