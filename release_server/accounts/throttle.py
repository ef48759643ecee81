"""Login throttling: growing delays per (account, client address), never a hard lock.

Following OWASP's authentication guidance, failed logins slow down the one who fails,
not the account's owner: the counter is kept per (account, address), so a stranger
guessing from elsewhere cannot lock anybody out. Once an (account, address) pair has
``free`` failures, each further failure makes it wait ``base * 2**(n - free)`` seconds
(capped) before the next try, even with the right password; a success from that address
clears its counter. One address is also throttled across all accounts (account ``"*"``)
with its own, larger allowance, against password spraying. Counters are forgotten
``window`` seconds after the last failure.

The state is a table (``login_throttles``), so every process and every node throttles
alike. ``delay_after`` is the pure rule; the rest reads and writes the rows.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from ..models_common import utcnow
from .models import LoginThrottle

ANY_ACCOUNT = "*"


@dataclass(frozen=True)
class ThrottlePolicy:
    """How failures turn into waiting time (all in seconds)."""

    free: int = 5  #: failures per (account, address) before delays start
    free_per_address: int = 30  #: failures per address, over all accounts, before delays start
    base: float = 30.0  #: the first delay
    cap: float = 900.0  #: the longest delay
    window: float = 900.0  #: counters are forgotten this long after the last failure


def delay_after(failures: int, free: int, base: float, cap: float) -> float:
    """Seconds to wait after ``failures`` failures: 0 up to ``free``, then doubling from ``base`` up to ``cap``."""
    if failures < free:
        return 0.0
    exponent = min(failures - free, 32)
    return float(min(cap, base * (2 ** exponent)))


def _key(account: str) -> str:
    return (account or "").strip().lower()[:200]


def _address(address: str | None) -> str:
    return (address or "-")[:64]


def _aware(value: datetime) -> datetime:
    from datetime import timezone

    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def wait_seconds(session: Session, kind: str, account: str, address: str | None,
                 now: datetime | None = None) -> int:
    """Seconds before ``account`` may try to log in again from ``address`` (0: now)."""
    now = now or utcnow()
    rows = session.execute(select(LoginThrottle.blocked_until).where(
        LoginThrottle.kind == kind, LoginThrottle.address == _address(address),
        LoginThrottle.account.in_((_key(account), ANY_ACCOUNT)))).scalars().all()
    left = max([(_aware(b) - now).total_seconds() for b in rows] or [0.0])
    return int(left) + 1 if left > 0 else 0


def _count_failure(session: Session, kind: str, account: str, address: str, now: datetime,
                   policy: ThrottlePolicy, free: int) -> None:
    cutoff = now - timedelta(seconds=policy.window)
    table = LoginThrottle.__table__
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = insert(table).values(kind=kind, account=account, address=address, failures=1, last_failure_at=now,
                                blocked_until=now)
    excluded = stmt.excluded
    stmt = stmt.on_conflict_do_update(
        index_elements=["kind", "account", "address"],
        set_={"failures": case((table.c.last_failure_at < cutoff, 1), else_=table.c.failures + 1),
              "last_failure_at": excluded.last_failure_at},
    ).returning(table.c.id, table.c.failures)
    row_id, failures = session.execute(stmt).one()
    wait = delay_after(failures, free, policy.base, policy.cap)
    session.execute(update(table).where(table.c.id == row_id)
                    .values(blocked_until=now + timedelta(seconds=wait)))


def record_failure(session: Session, kind: str, account: str, address: str | None, policy: ThrottlePolicy,
                   now: datetime | None = None) -> None:
    """Count a failed login against (account, address) and against the address as a whole (the caller commits)."""
    now = now or utcnow()
    addr = _address(address)
    _count_failure(session, kind, _key(account), addr, now, policy, policy.free)
    _count_failure(session, kind, ANY_ACCOUNT, addr, now, policy, policy.free_per_address)
    session.execute(delete(LoginThrottle).where(
        LoginThrottle.last_failure_at < now - timedelta(seconds=policy.window)))


def record_success(session: Session, kind: str, account: str, address: str | None) -> None:
    """A successful login clears the (account, address) counter; the address's overall counter stays."""
    session.execute(delete(LoginThrottle).where(
        LoginThrottle.kind == kind, LoginThrottle.account == _key(account),
        LoginThrottle.address == _address(address)))
