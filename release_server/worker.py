"""``release-server worker``: the periodic jobs, run by one worker at a time.

Jobs are registered in ``app.extensions["worker_jobs"]`` as :class:`WorkerJob` (name,
interval in seconds, a callable run inside the application context). The worker holds
a lease row in the database (``worker_leases``): it takes it only when it is free or
expired, renews it on every tick, and gives it up on exit, so a second worker on
another node waits instead of running the same jobs. A job that fails is logged and
retried at its next interval; the others go on. ``--once`` runs every job once and
exits non-zero if any failed (for a systemd timer or cron).

Each package adds its jobs with :func:`register_job` from its ``init_app`` (TUF refresh
and export, rollout phases, adoption counted per day, the mail outbox, auto-closing tickets).

Failover: a worker that is killed stops renewing, and the next worker takes the lease once
it has expired (``--lease-seconds``, default 60; renewed every ``--tick``). Whoever takes
an expired lease from another holder runs the takeover hooks (:func:`register_takeover_hook`)
with the dead holder's id in the same transaction, so work that holder had claimed (the
mail outbox's claims, for one) is handed on at once instead of waiting for its claim to
run out. :func:`current_holder` names the lease this process holds, for such claims.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
import sys
from datetime import datetime, timedelta

import click
from flask import Flask, current_app
from flask.cli import with_appcontext
from sqlalchemy import Boolean, Float, Integer, String, Text, or_, select, update
from sqlalchemy.orm import Mapped, mapped_column

from .db import Base, db
from .models_common import UTCDateTime, utcnow

WORKER_LEASE = "worker"


class WorkerLease(Base):
    """The row a worker must hold to run jobs; expires unless renewed."""

    __tablename__ = "worker_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(255))
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class WorkerJobRun(Base):
    """Per job: how often it ran and failed, and its last run (for metrics and ``doctor``)."""

    __tablename__ = "worker_job_runs"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    runs: Mapped[int] = mapped_column(Integer, default=0)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_duration_seconds: Mapped[float | None] = mapped_column(Float)
    last_ok: Mapped[bool | None] = mapped_column(Boolean)
    last_error: Mapped[str] = mapped_column(Text, default="")


log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerJob:
    name: str
    interval_seconds: float
    run: Callable[[], object]


def register_job(app: Flask, name: str, interval_seconds: float, run: Callable[[], object]) -> None:
    """Add a periodic job (idempotent by name)."""
    jobs: list[WorkerJob] = app.extensions.setdefault("worker_jobs", [])
    jobs[:] = [j for j in jobs if j.name != name]
    jobs.append(WorkerJob(name, interval_seconds, run))


def jobs() -> list[WorkerJob]:
    return list(current_app.extensions.get("worker_jobs", []))


def register_takeover_hook(app: Flask, name: str, hook: Callable[[object, str], object]) -> None:
    """``hook(session, previous_holder)`` runs when this process takes an expired lease from another holder."""
    hooks: dict[str, Callable[[object, str], object]] = app.extensions.setdefault("worker_takeover_hooks", {})
    hooks[name] = hook


_current_holder: str | None = None
_current_ttl: float = 60.0


def current_holder() -> str | None:
    """The worker lease this process holds while it runs jobs (None outside a worker)."""
    return _current_holder


def renew_current() -> bool:
    """Renew the lease this process holds, from inside a long job; False when it was lost (stop then).

    Outside a worker (a CLI command running a job by hand) there is no lease and this is True.
    """
    if _current_holder is None:
        return True
    return acquire_lease(_current_holder, _current_ttl)


def holder_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def acquire_lease(holder: str, ttl_seconds: float) -> bool:
    """Take or renew the worker lease; False when another live worker holds it."""
    now = utcnow()
    session = db.new_session(write=True)
    try:
        if session.get(WorkerLease, WORKER_LEASE) is None:
            session.add(WorkerLease(name=WORKER_LEASE, holder=None, expires_at=None))
            session.flush()
        # the row stays locked until commit: the holder read here is the one this update replaces
        query = select(WorkerLease.holder).where(WorkerLease.name == WORKER_LEASE)
        if session.get_bind().dialect.name != "sqlite":  # SQLite: BEGIN IMMEDIATE already holds the lock
            query = query.with_for_update()
        before = session.execute(query).scalar_one_or_none()
        result = session.execute(
            update(WorkerLease)
            .where(WorkerLease.name == WORKER_LEASE,
                   or_(WorkerLease.holder.is_(None), WorkerLease.holder == holder,
                       WorkerLease.expires_at.is_(None), WorkerLease.expires_at < now))
            .values(holder=holder, expires_at=now + timedelta(seconds=ttl_seconds))
            .execution_options(synchronize_session=False))
        taken = result.rowcount == 1
        if taken and before and before != holder:
            log.warning("worker %s took over the lease from %s", holder, before)
            for name, hook in current_app.extensions.get("worker_takeover_hooks", {}).items():
                hook(session, before)
        session.commit()
        return taken
    finally:
        session.close()


def release_lease(holder: str) -> None:
    session = db.new_session(write=True)
    try:
        session.execute(update(WorkerLease).where(WorkerLease.name == WORKER_LEASE, WorkerLease.holder == holder)
                        .values(holder=None, expires_at=None))
        session.commit()
    finally:
        session.close()


def run_job(job: WorkerJob) -> bool:
    """Run one job; log and swallow its failure, record the run. True on success."""
    from .logs import job_context

    started_at = utcnow()
    started = time.monotonic()
    error = ""
    with job_context(job.name) as job_log:
        try:
            result = job.run()
            ok = True
            if result is not None:  # what the job did, e.g. the storage sweep's report
                log.info("worker job %s: %s", job.name, result)
        except Exception as e:  # noqa: BLE001 - one job's failure must not stop the others
            ok = False
            error = f"{e.__class__.__name__}: {e}"[:2000]
            log.exception("worker job %s failed", job.name)
        finally:
            db.rollback()
        duration = time.monotonic() - started
        job_log(ok, duration)
    _record_run(job.name, started_at, duration, ok, error)
    return ok


def _record_run(name: str, started_at: datetime, duration: float, ok: bool, error: str) -> None:
    session = db.new_session(write=True)
    try:
        row = session.get(WorkerJobRun, name)
        if row is None:
            row = WorkerJobRun(name=name, runs=0, failures=0, last_error="")
            session.add(row)
        row.runs += 1
        row.failures += 0 if ok else 1
        row.last_started_at = started_at
        row.last_duration_seconds = duration
        row.last_ok = ok
        row.last_error = error
        session.commit()
    except Exception:  # noqa: BLE001 - bookkeeping must not stop the worker
        session.rollback()
        log.warning("could not record the run of worker job %s", name, exc_info=True)
    finally:
        session.close()


def run_once(holder: str, ttl_seconds: float = 300) -> tuple[bool, int]:
    """Run every job once if the lease is ours: (lease taken, number of failed jobs)."""
    global _current_holder, _current_ttl
    if not acquire_lease(holder, ttl_seconds):
        return False, 0
    _current_holder, _current_ttl = holder, ttl_seconds
    try:
        failed = sum(0 if run_job(job) else 1 for job in jobs())
    finally:
        _current_holder = None
        release_lease(holder)
    return True, failed


def run_forever(holder: str, *, tick_seconds: float = 5.0, ttl_seconds: float = 60.0,
                should_stop: Callable[[], bool] = lambda: False) -> None:
    """Loop: hold the lease, run each job when its interval has passed, renew the lease every tick."""
    next_run: dict[str, float] = {}
    stopping = {"flag": False}

    def _stop(_sig: int, _frame: object) -> None:
        stopping["flag"] = True

    global _current_holder, _current_ttl
    previous = signal.signal(signal.SIGTERM, _stop)
    _current_holder, _current_ttl = holder, ttl_seconds
    try:
        while not (stopping["flag"] or should_stop()):
            if acquire_lease(holder, ttl_seconds):
                for job in jobs():
                    now = time.monotonic()
                    if next_run.get(job.name, 0.0) <= now:
                        run_job(job)
                        next_run[job.name] = time.monotonic() + job.interval_seconds
                        if not acquire_lease(holder, ttl_seconds):  # renew between jobs
                            break
            else:
                next_run.clear()  # when we get the lease later, start with every job
            deadline = time.monotonic() + tick_seconds
            while time.monotonic() < deadline and not (stopping["flag"] or should_stop()):
                time.sleep(min(0.5, tick_seconds))
    finally:
        _current_holder = None
        signal.signal(signal.SIGTERM, previous)
        release_lease(holder)


@click.command("worker")
@click.option("--once", is_flag=True, help="Run every job once and exit (non-zero if one failed).")
@click.option("--tick", type=click.FloatRange(0.1, 3600), default=5.0, show_default=True,
              help="Seconds between checks for due jobs.")
@click.option("--lease-seconds", type=click.FloatRange(1, 86400), default=60.0, show_default=True,
              help="How long the lease outlives its last renewal: a killed worker's successor waits this long.")
@with_appcontext
def worker_command(once: bool, tick: float, lease_seconds: float) -> None:
    """Run the periodic jobs (TUF refresh, rollout phases, mail outbox, ...) while holding the worker lease."""
    holder = holder_id()
    if once:
        got, failed = run_once(holder, max(lease_seconds, 300.0))
        if not got:
            click.echo("another worker holds the lease; nothing run")
            return
        click.echo(f"ran {len(jobs())} job(s), {failed} failed")
        sys.exit(1 if failed else 0)
    if tick >= lease_seconds:
        raise click.UsageError(f"--tick ({tick:g}) must be shorter than --lease-seconds ({lease_seconds:g})")
    click.echo(f"worker {holder}: jobs {', '.join(j.name for j in jobs())}")
    run_forever(holder, tick_seconds=tick, ttl_seconds=lease_seconds)


def init_app(app: Flask) -> None:
    app.cli.add_command(worker_command)
