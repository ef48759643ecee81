"""Last-seen times and reported inventory: buffered per process, written in batches.

A check writes nothing itself. It notes the installation's last-seen time, agent
version, state and, when they differ from what this process knows, its installed
versions in a :class:`SeenBuffer`. A background thread of the process writes what is
pending every ``LAST_SEEN_FLUSH_SECONDS`` in one transaction: one statement for the
installations (``UPDATE ... FROM (VALUES ...)`` on PostgreSQL, one executemany on
SQLite) and one multi-row upsert for the changed components. So what the console shows
is at most one flush interval behind, whatever the fleet's poll cadence.

The installation's state follows its checks too, with no write of its own: a check
answered with an offer (or whose agent says it is updating) notes ``updating`` (the agent
downloads an offer right after its check, and installs it in its window); a check
answered with nothing new notes ``idle``. The flush applies :func:`next_state`: an offer
moves ``up_to_date`` to ``updating``, nothing new moves ``updating`` back to
``up_to_date``, and ``failing`` stays until a report says otherwise (reports set the
state in :func:`release_server.fleet.services.apply_report`).

Inventory that matters to offers is never only in memory where it counts: the check
computes its offers from the versions sent in the request itself, a changed inventory
wakes the flusher at once (``LAST_SEEN_PROMPT_SECONDS`` later, to batch what arrives
meanwhile), and a failed flush keeps its rows for the next one. A write never goes
back in time: last-seen only moves forward and a component's version is replaced only
by a newer observation (``updated_at``), so a late flush cannot undo a report stored
since. Pending rows are written at interpreter exit (:func:`flush_all`, registered
with ``atexit``; gunicorn's ``worker_exit`` hook may call it too).
"""
from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flask import Flask, current_app
from sqlalchemy import String, and_, bindparam, case, column, func, or_, select, update, values
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from ..models_common import UTCDateTime, utcnow
from .models import InstalledComponent, Installation

log = logging.getLogger(__name__)

CHUNK = 2000  # rows per statement (SQLite allows 32,766 parameters per statement)


def next_state(current: str | None, noted: str | None) -> str | None:
    """The installation state after a noted check (``updating`` / ``idle`` / None) — the rule the flush runs in SQL."""
    if noted == "updating" and current != "failing":
        return "updating"
    if noted == "idle" and current == "updating":
        return "up_to_date"
    return current


def _state_sql(current: Any, noted: Any) -> Any:
    """:func:`next_state` as a SQL expression over the stored and the noted state."""
    return case((and_(noted == "updating", current != "failing"), "updating"),
                (and_(noted == "idle", current == "updating"), "up_to_date"), else_=current)


@dataclass
class _Pending:
    seen_at: datetime
    agent_version: str | None = None
    state: str | None = None
    components: dict[str, tuple[str, datetime]] = field(default_factory=dict)

    def merge(self, newer: _Pending) -> None:
        self.seen_at = max(self.seen_at, newer.seen_at)
        self.agent_version = newer.agent_version or self.agent_version
        self.state = newer.state or self.state
        for comp, (version, at) in newer.components.items():
            if comp not in self.components or self.components[comp][1] <= at:
                self.components[comp] = (version, at)


class SeenBuffer:
    """What this process has seen of the fleet and not yet written."""

    def __init__(self, engine: Engine, interval: float = 10.0, prompt: float = 0.05) -> None:
        # SQLite: take the write lock at BEGIN, as every writer does (see release_server.db)
        self.engine = engine.execution_options(sqlite_immediate=True) if engine.dialect.name == "sqlite" else engine
        self.interval = max(0.01, interval)
        self.prompt = max(0.0, prompt)
        self._reset()
        _buffers.add(self)

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._pending: dict[str, _Pending] = {}
        self._urgent = threading.Event()
        self._flushed = threading.Condition()
        self.flushes = 0
        self._thread: threading.Thread | None = None
        self._stopped = False

    # ---------------------------------------------------------------- the check path (no I/O)

    def note(self, installation_id: str, *, installed: Mapping[str, str] | None = None,
             known: frozenset[tuple[str, str]] = frozenset(), agent_version: str | None = None,
             state: str | None = None, now: datetime | None = None) -> bool:
        """Record one check; returns True if the reported inventory differs from ``known``."""
        if self._pid != os.getpid():  # forked: the parent's thread and lock are not ours
            self._reset()
        now = now or utcnow()
        changed = {c: (v, now) for c, v in (installed or {}).items() if (c, v) not in known}
        entry = _Pending(now, agent_version or None, state, changed)
        with self._lock:
            prev = self._pending.get(installation_id)
            if prev is None:
                self._pending[installation_id] = entry
            else:
                prev.merge(entry)
        self._ensure_thread()
        if changed:
            self._urgent.set()
        return bool(changed)

    def __len__(self) -> int:
        return len(self._pending)

    # ---------------------------------------------------------------- writing

    def flush(self) -> int:
        """Write everything pending; returns the number of installations written."""
        with self._flush_lock:
            with self._lock:
                batch, self._pending = self._pending, {}
            if not batch:
                return 0
            try:
                self._write(batch)
            except Exception:
                with self._lock:  # keep the rows for the next flush; newer notes win
                    for inst_id, entry in batch.items():
                        newer = self._pending.get(inst_id)
                        if newer is not None:
                            entry.merge(newer)
                        self._pending[inst_id] = entry
                raise
        with self._flushed:
            self.flushes += 1
            self._flushed.notify_all()
        return len(batch)

    def wait_flushed(self, after: int, timeout: float) -> bool:
        """Wait until more than ``after`` flushes have completed."""
        with self._flushed:
            return self._flushed.wait_for(lambda: self.flushes > after, timeout)

    def _write(self, batch: dict[str, _Pending]) -> None:
        items = sorted(batch.items())  # one row order for every writer: fewer lock waits, no deadlocks
        components = [{"installation_id": i, "component": c, "version": v, "updated_at": at}
                      for i, p in items for c, (v, at) in p.components.items()]
        with self.engine.begin() as conn:
            for start in range(0, len(items), CHUNK):
                self._write_installations(conn, items[start:start + CHUNK])
            for start in range(0, len(components), CHUNK):
                chunk = components[start:start + CHUNK]
                try:
                    with conn.begin_nested():
                        conn.execute(self._upsert(conn.dialect.name, chunk))
                except IntegrityError:  # an installation deleted meanwhile: write the others
                    ids = {r["installation_id"] for r in chunk}
                    alive = set(conn.scalars(select(Installation.id).where(Installation.id.in_(ids))))
                    rest = [r for r in chunk if r["installation_id"] in alive]
                    if rest:
                        conn.execute(self._upsert(conn.dialect.name, rest))

    @staticmethod
    def _write_installations(conn: Any, items: list[tuple[str, _Pending]]) -> None:
        t = Installation.__table__
        if conn.dialect.name == "postgresql":
            v = values(column("id", String), column("seen_at", UTCDateTime()), column("agent_version", String),
                       column("state", String), name="v").data(
                [(i, p.seen_at, p.agent_version, p.state) for i, p in items])
            conn.execute(update(t).where(t.c.id == v.c.id).values(
                last_seen_at=func.greatest(t.c.last_seen_at, v.c.seen_at),
                agent_version=func.coalesce(v.c.agent_version, t.c.agent_version),
                state=_state_sql(t.c.state, v.c.state)))
            return
        seen = bindparam("b_seen", type_=UTCDateTime())
        stmt = update(t).where(t.c.id == bindparam("b_id")).values(
            last_seen_at=case((or_(t.c.last_seen_at.is_(None), t.c.last_seen_at < seen), seen),
                              else_=t.c.last_seen_at),
            agent_version=func.coalesce(bindparam("b_agent", type_=String), t.c.agent_version),
            state=_state_sql(t.c.state, bindparam("b_state", type_=String)))
        conn.execute(stmt, [{"b_id": i, "b_seen": p.seen_at, "b_agent": p.agent_version, "b_state": p.state}
                            for i, p in items])

    @staticmethod
    def _upsert(dialect: str, rows: list[dict[str, Any]]) -> Any:
        insert = pg_insert if dialect == "postgresql" else sqlite_insert
        stmt = insert(InstalledComponent.__table__).values(rows)
        return stmt.on_conflict_do_update(
            index_elements=["installation_id", "component"],
            set_={"version": stmt.excluded.version, "updated_at": stmt.excluded.updated_at},
            where=InstalledComponent.__table__.c.updated_at < stmt.excluded.updated_at)

    # ---------------------------------------------------------------- the flusher thread

    def _ensure_thread(self) -> None:
        thread = self._thread
        if thread is not None and thread.is_alive():
            return
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stopped = False
            self._thread = threading.Thread(target=self._run, name="last-seen-flusher", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        idle = 0
        while not self._stopped:
            if self._urgent.wait(self.interval) and self.prompt:
                threading.Event().wait(self.prompt)  # gather what arrives meanwhile into the same batch
            self._urgent.clear()
            try:
                written = self.flush()
            except Exception:  # noqa: BLE001 - the rows stay pending; try again next time
                log.exception("writing last-seen times failed; will retry")
                continue
            idle = idle + 1 if not written else 0
            if idle >= 3:
                with self._lock:  # nothing seen for a while: let the thread go, note() starts another
                    if not self._pending:
                        self._thread = None
                        return
                idle = 0

    def stop(self, timeout: float = 10.0) -> None:
        """Write what is pending and stop the thread (waiting for it, so no write outlives the call)."""
        self._stopped = True
        self._urgent.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self.flush()


_buffers: weakref.WeakSet[SeenBuffer] = weakref.WeakSet()


def flush_all() -> None:
    """Write every buffer's pending rows in this process (at exit; gunicorn's ``worker_exit``)."""
    for buf in list(_buffers):
        try:
            buf.flush()
        except Exception as exc:  # noqa: BLE001 - one database gone must not stop the others
            log.warning("writing %d last-seen times at exit failed: %s", len(buf), str(exc).splitlines()[0])


atexit.register(flush_all)


def get_seen_buffer() -> SeenBuffer:
    return current_app.extensions["seen_buffer"]


def note_check(principal: Any, installed: Mapping[str, str], agent_version: str | None,
               state: str | None, offered: bool = False, *, buffer: SeenBuffer | None = None,
               auth_cache: Any = None) -> None:
    """The check endpoint's only side effect: note it in memory (see the module docstring).

    ``offered``: the check was answered with at least one offer. ``buffer`` and
    ``auth_cache`` default to the current app's (given outside an app context).
    """
    from .auth import get_auth_cache

    noted = "updating" if offered or state == "updating" else "idle"
    changed = (get_seen_buffer() if buffer is None else buffer).note(principal.installation_id, installed=installed,
                                                 known=principal.versions, agent_version=agent_version, state=noted)
    if changed:
        now_known = frozenset({(c, v) for c, v in principal.versions if c not in installed} | set(installed.items()))
        (get_auth_cache() if auth_cache is None else auth_cache).remember_versions(principal.installation_id, now_known)


def init_app(app: Flask) -> None:
    app.extensions["seen_buffer"] = SeenBuffer(app.extensions["db_engine"],
                                               float(app.config.get("LAST_SEEN_FLUSH_SECONDS", 10.0)),
                                               float(app.config.get("LAST_SEEN_PROMPT_SECONDS", 0.05)))
