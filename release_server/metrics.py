"""Prometheus metrics: the series an operator watches, served at ``/metrics``.

Two kinds of series:

* **Counters and histograms** counted where things happen (checks by result, offers by
  component, bytes served by route, reports by outcome, requests). They are defined
  here, once; other modules call the small ``count_*`` helpers. Under gunicorn they use
  prometheus-client's multiprocess mode, so every worker's counts add up: the
  directory is ``PROMETHEUS_MULTIPROC_DIR`` when set, else one made per gunicorn master
  under ``<instance>/metrics/`` by :func:`prepare_multiprocess_dir` (called by the app
  factory before prometheus-client is imported).
* **State read from the database at scrape time** (open failure groups, rollouts by
  state and their failure rate, tickets by status and kind, outbox depth and the age of
  its oldest mail, seconds until each TUF role expires, the worker lease and the
  worker's job runs), by :class:`StateCollector`, so every node reports the same figures.

Access: with ``METRICS_TOKEN`` set, a request needs ``Authorization: Bearer <token>``;
without it, only loopback clients are answered (403 otherwise), and not a request that
came through a proxy (it carries ``X-Forwarded-For``, ``Forwarded`` or ``X-Real-IP``),
since a proxy on the same host connects from loopback on behalf of anyone.
"""
from __future__ import annotations

import hmac
import ipaddress
import os
from collections.abc import Iterable, Iterator
from typing import Any

from .metrics_dir import MULTIPROC_ENV, prepare_multiprocess_dir  # noqa: F401 - re-exported

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

PREFIX = "release_server"

CHECKS = Counter(f"{PREFIX}_checks", "Update checks answered, by result (offers, nothing_new)", ["result"])
OFFERS = Counter(f"{PREFIX}_offers", "Offers made to installations, by component", ["component"])
BYTES_SERVED = Counter(f"{PREFIX}_bytes_served", "Bytes of files sent (artifacts, TUF metadata and targets, "
                       "attachments), by route", ["route"])
REPORTS = Counter(f"{PREFIX}_reports", "Update reports received, by outcome", ["outcome"])
REQUESTS = Counter(f"{PREFIX}_http_requests", "HTTP requests answered, by method, route and status class",
                   ["method", "route", "status"])
REQUEST_SECONDS = Histogram(f"{PREFIX}_http_request_duration_seconds", "Time to answer a request, by route",
                            ["route"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))


_CHILDREN_MAX = 4096  # label combinations kept resolved per process (methods and routes are few)
_children: dict[tuple, Any] = {}


def _child(metric: Any, *labels: str) -> Any:
    """``metric.labels(*labels)``, resolved once per process: the hot path counts without building it again.

    Under prometheus-client's multiprocess mode a child checks the process id on every
    increment, so one resolved before a fork still counts into the right file."""
    key = (id(metric), labels)
    child = _children.get(key)
    if child is None:
        child = metric.labels(*labels)
        if len(_children) < _CHILDREN_MAX:
            _children[key] = child
    return child


def count_check(result: str) -> None:
    """One answered check: ``offers`` when something was offered, else ``nothing_new``."""
    _child(CHECKS, result).inc()


def count_offers(components: Iterable[str]) -> None:
    for component in components:
        _child(OFFERS, component).inc()


def count_bytes(route: str, nbytes: int | None) -> None:
    if nbytes:
        _child(BYTES_SERVED, route).inc(nbytes)


def count_report(outcome: str) -> None:
    _child(REPORTS, outcome).inc()


def count_request(method: str, route: str | None, status: int, seconds: float) -> None:
    route = route or "(unmatched)"
    _child(REQUESTS, method, route, f"{status // 100}xx").inc()
    _child(REQUEST_SECONDS, route).observe(seconds)


# ---------------------------------------------------------------- state at scrape time

class StateCollector(Collector):
    """Figures read from the database when scraped (inside the app context of the request)."""

    def collect(self) -> Iterator[Any]:
        from .db import db

        session = db.session
        yield from _support_state(session)
        yield from _rollout_state(session)
        yield from _tuf_state(session)
        yield from _worker_state(session)


def _support_state(session: Any) -> Iterator[Any]:
    from sqlalchemy import distinct, func, select

    from .models_common import utcnow
    from .support.models import MailMessage, Ticket

    open_groups = session.scalar(select(func.count(distinct(Ticket.failure_group_id))).where(
        Ticket.failure_group_id.is_not(None), Ticket.status.not_in(("processed", "closed")))) or 0
    g = GaugeMetricFamily(f"{PREFIX}_failure_groups_open", "Failure groups with an open ticket")
    g.add_metric([], open_groups)
    yield g

    tickets = GaugeMetricFamily(f"{PREFIX}_tickets", "Tickets by status and kind", labels=["status", "kind"])
    for status, kind, n in session.execute(select(Ticket.status, Ticket.kind, func.count()).group_by(
            Ticket.status, Ticket.kind)):
        tickets.add_metric([status, kind], n)
    yield tickets

    waiting = (MailMessage.direction == "out") & MailMessage.status.in_(("pending", "sending"))
    depth, oldest = session.execute(select(func.count(), func.min(MailMessage.created_at)).where(waiting)).one()
    d = GaugeMetricFamily(f"{PREFIX}_outbox_depth", "Outbound mails waiting to be sent")
    d.add_metric([], depth or 0)
    yield d
    age = GaugeMetricFamily(f"{PREFIX}_outbox_oldest_age_seconds", "Age of the oldest mail waiting (0: none)")
    if oldest is not None:
        if oldest.tzinfo is None:
            from datetime import timezone

            oldest = oldest.replace(tzinfo=timezone.utc)
        age.add_metric([], max(0.0, (utcnow() - oldest).total_seconds()))
    else:
        age.add_metric([], 0.0)
    yield age


def _rollout_state(session: Any) -> Iterator[Any]:
    from sqlalchemy import func, select

    from .rollouts.models import Rollout

    states = GaugeMetricFamily(f"{PREFIX}_rollouts", "Rollouts by state", labels=["state"])
    counts = dict(session.execute(select(Rollout.state, func.count()).group_by(Rollout.state)).all())
    for state in ("draft", "running", "paused", "halted", "completed"):
        states.add_metric([state], counts.get(state, 0))
    yield states
    rate = GaugeMetricFamily(f"{PREFIX}_rollout_failure_rate",
                             "Failures among attempts of each rollout that is not completed",
                             labels=["rollout", "component", "version", "state"])
    attempts = GaugeMetricFamily(f"{PREFIX}_rollout_attempts", "Attempts reported for each rollout not completed",
                                 labels=["rollout", "component", "version", "state"])
    for ro in session.scalars(select(Rollout).where(Rollout.state.in_(("running", "paused", "halted")))):
        labels = [str(ro.id), ro.release.component.name, str(ro.release.version), ro.state]
        rate.add_metric(labels, (ro.failures / ro.attempts) if ro.attempts else 0.0)
        attempts.add_metric(labels, ro.attempts)
    yield rate
    yield attempts


def _tuf_state(session: Any) -> Iterator[Any]:
    from sqlalchemy import select

    from .models_common import utcnow
    from .signing import metadata as md
    from .signing.models import TufRole

    g = GaugeMetricFamily(f"{PREFIX}_tuf_role_expires_in_seconds",
                          "Seconds until each TUF role expires (bins: the earliest bin)", labels=["role"])
    now = utcnow()
    earliest_bin = None
    for row in session.scalars(select(TufRole)):
        if row.version == 0:
            continue  # not signed yet
        seconds = (row.expires - now).total_seconds()
        if row.name.startswith(md.BINS_PREFIX + "-"):
            earliest_bin = seconds if earliest_bin is None else min(earliest_bin, seconds)
        else:
            g.add_metric([row.name], seconds)
    if earliest_bin is not None:
        g.add_metric([md.BINS_PREFIX], earliest_bin)
    yield g


def _worker_state(session: Any) -> Iterator[Any]:
    from sqlalchemy import select

    from .models_common import utcnow
    from .worker import WORKER_LEASE, WorkerJobRun, WorkerLease

    lease = session.get(WorkerLease, WORKER_LEASE)
    now = utcnow()
    held = GaugeMetricFamily(f"{PREFIX}_worker_lease_held", "1 while a worker holds a live lease, by holder",
                             labels=["holder"])
    remaining = GaugeMetricFamily(f"{PREFIX}_worker_lease_expires_in_seconds",
                                  "Seconds until the worker lease expires unless renewed (negative: stale)")
    if lease is not None and lease.holder and lease.expires_at is not None:
        left = (lease.expires_at - now).total_seconds()
        held.add_metric([lease.holder], 1 if left > 0 else 0)
        remaining.add_metric([], left)
    else:
        held.add_metric([""], 0)
    yield held
    yield remaining
    runs = CounterMetricFamily(f"{PREFIX}_worker_job_runs", "Worker job runs, by job", labels=["job"])
    failures = CounterMetricFamily(f"{PREFIX}_worker_job_failures", "Worker job runs that failed, by job",
                                   labels=["job"])
    duration = GaugeMetricFamily(f"{PREFIX}_worker_job_last_duration_seconds", "Duration of each job's last run",
                                 labels=["job"])
    last = GaugeMetricFamily(f"{PREFIX}_worker_job_last_run_timestamp_seconds",
                             "When each job last started (Unix time)", labels=["job"])
    for row in session.scalars(select(WorkerJobRun).order_by(WorkerJobRun.name)):
        runs.add_metric([row.name], row.runs)
        failures.add_metric([row.name], row.failures)
        if row.last_duration_seconds is not None:
            duration.add_metric([row.name], row.last_duration_seconds)
        if row.last_started_at is not None:
            last.add_metric([row.name], row.last_started_at.timestamp())
    yield runs
    yield failures
    yield duration
    yield last


# ---------------------------------------------------------------- the endpoint

def exposition() -> bytes:
    """The text exposition of every series (all gunicorn workers' counters summed)."""
    registry = CollectorRegistry()
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
    else:
        for collector in (CHECKS, OFFERS, BYTES_SERVED, REPORTS, REQUESTS, REQUEST_SECONDS):
            registry.register(collector)
    registry.register(StateCollector())
    return generate_latest(registry)


PROXY_HEADERS = ("X-Forwarded-For", "Forwarded", "X-Real-IP")


def _allowed(config: Any, remote_addr: str | None, authorization: str, proxied: bool = False) -> tuple[bool, int]:
    """Token when METRICS_TOKEN is set; else a loopback client that did not come through a proxy."""
    token = config.get("METRICS_TOKEN")
    if token:
        scheme, _, given = authorization.partition(" ")
        ok = scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), str(token).encode())
        return ok, 401
    if proxied:  # a proxy on this host connects from loopback on behalf of anyone
        return False, 403
    try:
        return ipaddress.ip_address(remote_addr or "").is_loopback, 403
    except ValueError:
        return False, 403


def init_app(app: Any) -> None:
    import time

    from flask import Response, current_app, request

    from .api import error_response

    from .logs import request_started

    @app.after_request
    def _metrics_count(response: Any) -> Any:
        # the start time is the request log's (release_server.logs): one hook fewer per request
        started = request_started()
        if started is not None and request.endpoint != "metrics_view":
            rule = request.url_rule
            count_request(request.method, rule.rule if rule is not None else None, response.status_code,
                          time.perf_counter() - started)
        return response

    @app.get("/metrics")
    def metrics_view() -> Any:
        ok, status = _allowed(current_app.config, request.remote_addr, request.headers.get("Authorization", ""),
                              proxied=any(h in request.headers for h in PROXY_HEADERS))
        if not ok:
            if status == 401:
                return error_response(401, "unauthenticated", "metrics need Authorization: Bearer <METRICS_TOKEN>",
                                      "Authorization", {"WWW-Authenticate": 'Bearer realm="metrics"'})
            return error_response(403, "forbidden", "metrics answer loopback clients only unless METRICS_TOKEN "
                                  "is set", None)
        resp = Response(exposition(), headers={"Cache-Control": "no-store"})
        resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return resp
