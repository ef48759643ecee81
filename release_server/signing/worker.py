"""``release-server worker``: the periodic jobs, run by one worker at a time.

Jobs are registered in ``app.extensions["worker_jobs"]`` as :class:`WorkerJob` (name,
interval in seconds, a callable run inside the application context). The worker holds
a lease row in the database (``worker_leases``): it takes it only when it is free or
expired, renews it on every tick, and gives it up on exit, so a second worker on
another node waits instead of running the same jobs. A job that fails is logged and
retried at its next interval; the others go on. ``--once`` runs every job once and
exits non-zero if any failed (for a systemd timer or cron).

This module lives in the signing package because TUF refresh is its first job; other
packages add theirs with :func:`register_job`.
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
from datetime import timedelta

from flask import Flask, current_app
from sqlalchemy import or_, update

from ..db import db
from .models import WORKER_LEASE, WorkerLease
from .services import utcnow

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
        result = session.execute(
            update(WorkerLease)
            .where(WorkerLease.name == WORKER_LEASE,
                   or_(WorkerLease.holder.is_(None), WorkerLease.holder == holder,
                       WorkerLease.expires_at.is_(None), WorkerLease.expires_at < now))
            .values(holder=holder, expires_at=now + timedelta(seconds=ttl_seconds)))
        session.commit()
        return result.rowcount == 1
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
    """Run one job; log and swallow its failure. True on success."""
    started = time.monotonic()
    try:
        job.run()
    except Exception:  # noqa: BLE001 - one job's failure must not stop the others
        log.exception("worker job %s failed", job.name)
        db.rollback()
        return False
    finally:
        db.rollback()
    log.info("worker job %s done in %.2fs", job.name, time.monotonic() - started)
    return True


def run_once(holder: str, ttl_seconds: float = 300) -> tuple[bool, int]:
    """Run every job once if the lease is ours: (lease taken, number of failed jobs)."""
    if not acquire_lease(holder, ttl_seconds):
        return False, 0
    try:
        failed = sum(0 if run_job(job) else 1 for job in jobs())
    finally:
        release_lease(holder)
    return True, failed


def run_forever(holder: str, *, tick_seconds: float = 5.0, ttl_seconds: float = 60.0,
                should_stop: Callable[[], bool] = lambda: False) -> None:
    """Loop: hold the lease, run each job when its interval has passed, renew the lease every tick."""
    next_run: dict[str, float] = {}
    stopping = {"flag": False}

    def _stop(_sig: int, _frame: object) -> None:
        stopping["flag"] = True

    previous = signal.signal(signal.SIGTERM, _stop)
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
        signal.signal(signal.SIGTERM, previous)
        release_lease(holder)
