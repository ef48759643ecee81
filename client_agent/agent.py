"""Orchestration of one update cycle: recover -> report -> check -> verify -> download -> install -> report.

The pieces it drives each do one thing: ``client.ApiClient`` talks to the
server, ``trust`` verifies offers and downloads targets, ``installer.Installer``
installs and undoes, ``outbox.Outbox`` keeps reports until acknowledged. This
module decides the order, turns every attempt into a report, and computes how
long the daemon sleeps. The pure parts (maintenance windows, sleep times, report
shape) are plain functions tested without sockets.

Every attempt at an offer ends in a report queued in the outbox before anything
is sent: ``success``, ``rolled_back`` and ``failed`` come from the installer;
``operator_rollback`` when an operator ran ``client-agent rollback`` (not a failure:
no ticket, not counted against the rollout); ``refused`` (stage ``verify``) when TUF
does not back the offer; ``failed``
(stage ``download``) when the transfer breaks off (the partial file is kept
and resumed next time). Reports carry the last 64 KiB of hook output followed
by the tail of the agent's own log.

Maintenance windows: downloads may happen at any time; installations only while
the window is open (``run``). ``client-agent update`` is an operator's explicit
request and installs at once.

Holds: after an operator's rollback the component stays on the release it went back
to; offers for it are set aside (:func:`split_held`) until an operator releases the
hold (``client-agent release-hold``) or the server offers a release newer than the
one left, or a replacement for a yanked release.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Mapping

from packaging.version import InvalidVersion, Version

from client_agent.backoff import BackoffPolicy
from client_agent.client import ApiClient, AuthRejectedError, ApiError, CheckResult, Offer, ServerError, \
    ServerUnavailableError
from client_agent.config import AGENT_COMPONENT, AgentConfig, Enrollment, StateDir
from client_agent.delta import ArtifactStore, fetch_release
from client_agent.errors import AgentError, InstallConflictError, InvalidNameError
from client_agent.fsutil import atomic_write_bytes
from client_agent.installer import InstallOutcome, Installer, InstallerConfig, check_name, read_installed
from client_agent.outbox import FlushResult, Outbox
from client_agent.selfupdate import agent_version
from client_agent.trust import (DownloadInterruptedError, NoTrustedRootError, RepositoryUnavailableError,
                                TrustedRepository, TrustError, TufSession, VerificationError, clean_downloads,
                                decide)

log = logging.getLogger(__name__)
#: One line per check and per install: shown by ``client-agent run`` at its default log level.
activity = logging.getLogger("client_agent.activity")

REPORT_TAIL_CHARS = 64 * 1024
REPORT_BATCH_SIZE = 50  # reports per request (the server takes up to 100)
AGENT_LOG_TAIL_CHARS = 16 * 1024
ERROR_MESSAGE_CHARS = 4000
DEFAULT_POLL_INTERVAL = 3600.0
MIN_SLEEP = 1.0

# --------------------------------------------------------------------------- maintenance windows

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class Window:
    """A weekly maintenance window: start/end in minutes after midnight, on ``days`` (None: every day).

    A window whose end is before its start runs past midnight and belongs to the day it starts on.
    """

    start: int
    end: int
    days: frozenset[int] | None = None

    def _day_ok(self, day: int) -> bool:
        return self.days is None or day in self.days

    def contains(self, now: datetime) -> bool:
        minute = now.hour * 60 + now.minute
        today = now.weekday()
        if self.start == self.end:
            return self._day_ok(today)
        if self.start < self.end:
            return self._day_ok(today) and self.start <= minute < self.end
        if minute >= self.start:
            return self._day_ok(today)
        return minute < self.end and self._day_ok((today - 1) % 7)

    def seconds_until_open(self, now: datetime) -> float:
        """0 when open, else seconds until the next opening (within the coming week)."""
        if self.contains(now):
            return 0.0
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        for offset in range(0, 8):
            day = midnight + timedelta(days=offset)
            if not self._day_ok(day.weekday()):
                continue
            opening = day + timedelta(minutes=self.start)
            if opening > now:
                return (opening - now).total_seconds()
        return 7 * 86400.0


def parse_window(spec: str) -> Window:
    """Parse ``'HH:MM-HH:MM'``, optionally after days: ``'sat-sun 00:00-06:00'``, ``'mon 01:00-02:00'``."""
    text = spec.strip().lower()
    days: frozenset[int] | None = None
    parts = text.split()
    if len(parts) == 2:
        day_spec, text = parts
        first, _, last = day_spec.partition("-")
        if first not in _DAYS or (last and last not in _DAYS):
            raise ValueError(f"unknown day in maintenance window {spec!r}")
        a = _DAYS.index(first)
        b = _DAYS.index(last) if last else a
        days = frozenset((a + i) % 7 for i in range((b - a) % 7 + 1))
    elif len(parts) != 1:
        raise ValueError(f"expected 'HH:MM-HH:MM', optionally after days such as 'sat-sun', got {spec!r}")
    try:
        start_s, end_s = text.split("-")
        start = _minutes(start_s, allow_24=False)
        end = _minutes(end_s, allow_24=True)
    except ValueError:
        raise ValueError(f"expected 'HH:MM-HH:MM', optionally after days such as 'sat-sun', got {spec!r}") from None
    return Window(start, end % 1440 if end != 1440 else 1440, days)


def _minutes(text: str, *, allow_24: bool) -> int:
    hh, mm = text.split(":")
    if len(hh) != 2 or len(mm) != 2:
        raise ValueError(text)
    h, m = int(hh), int(mm)
    if not (0 <= m < 60) or not (0 <= h < 24 or (allow_24 and h == 24 and m == 0)):
        raise ValueError(text)
    return h * 60 + m


def effective_window(config: AgentConfig, server_window: str | None) -> Window | None:
    """The window that applies: the config's override ("any" = none), else the server's."""
    spec = config.maintenance_window
    if spec == "any":
        return None
    if spec is None:
        spec = server_window
    if not spec:
        return None
    try:
        return parse_window(spec)
    except ValueError:
        log.warning("ignoring unparsable maintenance window %r", spec)
        return None


# --------------------------------------------------------------------------- reports


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


def tail_of_file(path: Path, chars: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - chars * 2))
            data = f.read()
    except OSError:
        return ""
    return data.decode("utf-8", errors="replace")[-chars:]


def server_report(report: Mapping[str, Any], *, agent_log_tail: str = "",
                  details: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Shape a report (the installer's or the agent's) as the server's report schema.

    ``log_tail`` is the hook output tail followed by the agent log tail,
    together at most 64 KiB characters (the hook output is shortened first).
    """
    if "duration_seconds" in report and "failed_stage" not in report:
        return dict(report)  # already in server shape
    duration = float(report.get("duration") or 0.0)
    hook_tail = str(report.get("log_tail") or "")
    agent_part = f"\n--- agent log ---\n{agent_log_tail}" if agent_log_tail else ""
    room = max(0, REPORT_TAIL_CHARS - len(agent_part))
    log_tail = (hook_tail[-room:] if room else "") + agent_part
    message = report.get("error_message")
    return {
        "id": str(report["id"]),
        "component": report["component"],
        "from_version": report.get("from_version"),
        "to_version": report["to_version"],
        "outcome": report["outcome"],
        "stage": report.get("failed_stage", report.get("stage")),
        "error_code": report.get("error_code"),
        "error_message": None if message is None else str(message)[:ERROR_MESSAGE_CHARS],
        "duration_seconds": round(max(0.0, duration), 3),
        "log_tail": log_tail[-REPORT_TAIL_CHARS:],
        "started_at": report.get("started_at") or _iso(time.time() - duration),
        "details": dict(details or {}) | dict(report.get("details") or {}),
    }


class ReportOutbox(Outbox):
    """The durable outbox, storing reports already shaped for the server (with the agent log tail)."""

    def __init__(self, directory: Path, *, log_file: Path, policy: BackoffPolicy | None = None,
                 details: Mapping[str, Any] | None = None) -> None:
        super().__init__(directory, policy=policy)
        self.log_file = log_file
        self.details = dict(details or {})
        self.extra: dict[str, Any] = {}  # optional top-level report fields (transfer byte figures)

    def add(self, report: Mapping[str, Any], *, now: float | None = None) -> str:
        shaped = server_report(report, agent_log_tail=tail_of_file(self.log_file, AGENT_LOG_TAIL_CHARS),
                               details=self.details) | self.extra
        log.info("report %s queued: %s %s -> %s %s%s", shaped["id"], shaped["component"],
                 shaped["from_version"] or "-", shaped["to_version"], shaped["outcome"],
                 f" ({shaped['stage']}: {shaped['error_code']})" if shaped.get("error_code") else "")
        return super().add(shaped, now=now)


# --------------------------------------------------------------------------- attempts


@dataclass(frozen=True)
class Attempt:
    """What happened to one offer in one cycle.

    outcome: success | rolled_back | failed | refused (reported), or deferred
    (downloaded, waiting for the maintenance window; not reported).
    """

    component: str
    from_version: str | None
    to_version: str
    outcome: str
    stage: str | None = None
    error_code: str | None = None
    message: str = ""
    transient: bool = False


@dataclass
class CycleResult:
    """Result of one daemon cycle, with what the daemon needs to choose its sleep."""

    attempts: list[Attempt] = field(default_factory=list)
    recovered: InstallOutcome | None = None
    error: AgentError | None = None
    retry_after: float | None = None
    poll_interval: float | None = None
    window_wait: float | None = None
    self_updated: bool = False


def next_sleep(result: CycleResult, *, config: AgentConfig, failures: int, next_report_due: float | None,
               rng: Callable[[], float] = random.random) -> float:
    """Seconds to sleep after a cycle.

    After an error: capped exponential backoff with jitter (half fixed, half
    random), never shorter than the server's Retry-After. Otherwise the poll
    interval (config override, else the server's) with +-10% jitter, shortened
    to the opening of the maintenance window when installs wait for it, or to
    the next due report retry.
    """
    if result.error is not None:
        policy = BackoffPolicy(base=config.backoff_base, cap=config.backoff_cap)
        ceiling = policy.ceiling(max(1, failures))
        delay = ceiling / 2 + rng() * ceiling / 2
        if result.retry_after is not None:
            delay = max(delay, result.retry_after)
        return max(MIN_SLEEP, delay)
    poll = config.poll_interval or result.poll_interval or DEFAULT_POLL_INTERVAL
    delay = poll * (0.9 + 0.2 * rng())
    if result.window_wait is not None:
        delay = min(delay, result.window_wait + rng() * min(300.0, poll / 10))
    if next_report_due is not None:
        delay = min(delay, next_report_due)
    return max(MIN_SLEEP, delay)


def _older(a: str, b: str | None) -> bool:
    try:
        return b is not None and Version(a) < Version(b)
    except InvalidVersion:
        return False


# --------------------------------------------------------------------------- holds


def split_held(offers: list[Offer], holds: Mapping[str, Mapping[str, Any]]) -> tuple[list[Offer], list[Offer]]:
    """(offers to act on, offers held back by an operator's rollback).

    A hold keeps the component off the release that was left and everything up to it;
    a release newer than the one left, or the replacement of a yanked release, goes through.
    """
    kept: list[Offer] = []
    held: list[Offer] = []
    for offer in offers:
        hold = holds.get(offer.component)
        if hold is None or offer.downgrade or _older(str(hold.get("left")), offer.version):
            kept.append(offer)
        else:
            held.append(offer)
    return kept, held


# --------------------------------------------------------------------------- the agent


ProgressFactory = Callable[[str, int], Callable[[int, int, int], Any]]


class Agent:
    """One enrolled installation's agent. Callers hold the instance lock for every mutating call."""

    def __init__(self, state: StateDir, config: AgentConfig, enrollment: Enrollment, *,
                 api: ApiClient | None = None, repo: TrustedRepository | None = None,
                 progress: ProgressFactory | None = None, clock: Callable[[], float] = time.time) -> None:
        self.state = state
        self.config = config
        self.enrollment = enrollment
        self.version = agent_version()
        self.api = api or ApiClient(config.server_url, enrollment.token, timeout=config.request_timeout,
                                    user_agent=f"client-agent/{self.version}")
        self.repo = repo or TrustedRepository(state.tuf_dir, enrollment.tuf_metadata_url, enrollment.tuf_targets_url,
                                              enrollment.root_json, timeout=config.request_timeout)
        self.progress = progress
        self.clock = clock
        self.outbox = ReportOutbox(state.outbox_dir, log_file=state.log_file,
                                   policy=BackoffPolicy(base=config.backoff_base, cap=config.backoff_cap),
                                   details={"agent_version": self.version,
                                            "installation_id": enrollment.installation_id})
        self.artifacts = ArtifactStore(state.path / "artifacts")
        self.installer = Installer(InstallerConfig(state.path, Path(config.install_dir),
                                                   keep_releases=config.keep_releases), self.outbox)

    # ------------------------------------------------------------ state

    def installed_versions(self) -> dict[str, str]:
        """Committed versions, plus the agent itself when it has not self-updated yet."""
        installed = read_installed(self.state.path)
        if self.config.self_update and AGENT_COMPONENT not in installed:
            installed[AGENT_COMPONENT] = self.version
        return installed

    def wanted_components(self, installed: Mapping[str, str]) -> list[str]:
        return sorted(c for c in self.config.components if c not in installed)

    # ------------------------------------------------------------ steps

    def recover(self) -> InstallOutcome | None:
        """Finish or undo an installation interrupted by a crash (its report is queued)."""
        outcome = self.installer.recover()
        if outcome is not None:
            log.warning("recovered interrupted installation of %s %s: %s", outcome.component,
                        outcome.to_version, outcome.outcome)
        return outcome

    def rollback(self, component: str) -> InstallOutcome:
        """Operator rollback to the previous release on disk, reported as ``operator_rollback``.

        The component is then held on that release (see :func:`split_held`).
        """
        self.outbox.details["kind"] = "operator_rollback"
        try:
            outcome = self.installer.rollback_to_previous(component)
        finally:
            self.outbox.details.pop("kind", None)
        holds = self.holds()
        holds[component] = {"version": outcome.to_version, "left": outcome.from_version, "since": _iso(self.clock())}
        self.state.update_status(holds=holds)
        releases = self.state.load_releases()
        log.info("operator rollback of %s: %s -> %s: %s", component, outcome.from_version, outcome.to_version,
                 outcome.outcome)
        if outcome.to_version not in releases.get(component, {}):
            log.debug("no target path recorded for %s %s", component, outcome.to_version)
        return outcome

    def holds(self) -> dict[str, dict[str, Any]]:
        """Components held by an operator's rollback: {component: {"version", "left", "since"}}."""
        data = self.state.load_status().get("holds") or {}
        return {str(k): dict(v) for k, v in data.items() if isinstance(v, dict)} if isinstance(data, dict) else {}

    def release_hold(self, component: str) -> dict[str, Any] | None:
        """Let offers for ``component`` through again; returns the hold that was lifted, if any."""
        holds = self.holds()
        lifted = holds.pop(component, None)
        if lifted is not None:
            self.state.update_status(holds=holds)
            log.info("hold on %s %s released by an operator", component, lifted.get("version"))
        return lifted

    def without_held(self, offers: list[Offer]) -> list[Offer]:
        """The offers not held back by an operator's rollback (the held ones are logged)."""
        kept, held = split_held(offers, self.holds())
        for o in held:
            hold = self.holds()[o.component]
            log.info("%s is held on %s after an operator's rollback from %s: not installing %s "
                     "(client-agent release-hold %s)", o.component, hold.get("version"), hold.get("left"),
                     o.version, o.component)
        return kept

    def flush_reports(self, *, all_pending: bool = False) -> FlushResult:
        """Send due reports (``all_pending``: every report, due or not); each stays queued until acknowledged."""
        now = self.clock()
        if all_pending:
            now = max([now] + [p.next_try_at for p in self.outbox.pending()])
        result = self.outbox.flush_batches(self._send_reports, now=now, batch_size=REPORT_BATCH_SIZE)
        if result.sent:
            log.info("delivered %d report(s)", len(result.sent))
        return result

    def _send_reports(self, reports: list[dict[str, Any]]) -> bool | float | dict[str, bool | float]:
        """Send one batch; a batch the server refuses as such is sent again report by report,
        so that one report it will never accept is set aside without holding back the others."""
        if len(reports) == 1:
            return self._send_report(reports[0])
        try:
            self.api.send_reports(reports)
        except ServerUnavailableError as exc:
            log.info("%d reports not delivered: %s", len(reports), exc)
            return exc.retry_after if exc.retry_after is not None else False
        except AuthRejectedError as exc:
            log.error("%d reports not delivered: %s", len(reports), exc)
            return False
        except ApiError:
            return {str(r.get("id")): self._send_report(r) for r in reports}
        except ServerError as exc:
            log.info("%d reports not delivered: %s", len(reports), exc)
            return False
        return True

    def _send_report(self, report: dict[str, Any]) -> bool | float:
        try:
            self.api.send_reports([report])
        except ServerUnavailableError as exc:
            log.info("report %s not delivered: %s", report.get("id"), exc)
            return exc.retry_after if exc.retry_after is not None else False
        except AuthRejectedError as exc:
            log.error("report %s not delivered: %s", report.get("id"), exc)
            return False
        except ApiError as exc:
            # The server will never accept this report as it is: set it aside, do not block the queue.
            log.error("report %s rejected by the server, set aside in rejected-reports.jsonl: %s",
                      report.get("id"), exc)
            import json

            path = self.state.path / "rejected-reports.jsonl"
            line = json.dumps({"report": report, "error": str(exc)}) + "\n"
            old = path.read_bytes() if path.exists() else b""
            atomic_write_bytes(path, old + line.encode())
            return True
        except ServerError as exc:
            log.info("report %s not delivered: %s", report.get("id"), exc)
            return False
        return True

    def next_report_due(self) -> float | None:
        pending = self.outbox.pending()
        if not pending:
            return None
        return max(0.0, min(p.next_try_at for p in pending) - self.clock())

    def check(self) -> CheckResult:
        """Ask the server for offers; remember when and what in status.json."""
        installed = self.installed_versions()
        now = self.clock()
        try:
            result = self.api.check(installed, components=self.wanted_components(installed),
                                    agent_version=self.version, state="idle")
        except ServerError as exc:
            self.state.update_status(last_check_at=_iso(now), last_check_ok=False, last_error=str(exc))
            activity.info("check failed: %s", exc)
            raise
        if result.offers:
            activity.info("check: %d offer(s): %s", len(result.offers),
                          ", ".join(f"{o.component} {o.from_version or '-'} -> {o.version}" for o in result.offers))
        else:
            activity.info("check: nothing new (next check in %ss)", result.poll_interval)
        self.state.update_status(
            last_check_at=_iso(now), last_check_ok=True, last_error=None,
            offers=[{"component": o.component, "version": o.version, "from_version": o.from_version,
                     "critical": o.critical} for o in result.offers],
            poll_interval=result.poll_interval, maintenance_window=result.maintenance_window)
        return result

    def process(self, offers: list[Offer], *, install: bool = True, only: str | None = None) -> list[Attempt]:
        """Verify, download and (if ``install``) install each offer in the given (install) order.

        Stops at the first transient failure (server or network gone): the
        remaining offers are tried again on the next cycle.
        """
        offers = [o for o in offers if only is None or o.component == only]
        if not offers:
            return []
        attempts: list[Attempt] = []
        try:
            session = self.repo.open()
        except VerificationError as exc:
            return [self._refuse(o, exc, self.clock()) for o in offers]
        except NoTrustedRootError as exc:
            return [self._refuse(o, VerificationError("no_trusted_root", str(exc), o.target_path), self.clock())
                    for o in offers]
        except TrustError as exc:  # repository unavailable
            log.error("cannot verify offers: %s", exc)
            raise
        planned = self.installed_versions()
        keep: set[Path] = set()
        for offer in offers:
            attempt = self._attempt(session, offer, planned, install, keep)
            attempts.append(attempt)
            if attempt.transient:
                break
        if not any(a.transient for a in attempts) and self.state.downloads_dir.exists():
            clean_downloads(self.state.downloads_dir, keep | set(self.state.downloads_dir.glob("*.part")))
        return attempts

    def _attempt(self, session: TufSession, offer: Offer, planned: dict[str, str], install: bool,
                 keep: set[Path]) -> Attempt:
        started = self.clock()
        component, version = offer.component, offer.version
        installed_version = planned.get(component)
        try:
            check_name("component", component)
            check_name("version", version)
            found = session.target(offer.target_path)
            installed_signed = None
            if installed_version is not None and (offer.downgrade or _older(version, installed_version)):
                path = self.state.load_releases().get(component, {}).get(installed_version)
                entry = session.target(path) if path else None
                installed_signed = entry[1] if entry else None
            decide(component=component, version=version, target_path=offer.target_path,
                   signed=found[1] if found else None, installed_version=installed_version,
                   installed_signed=installed_signed, installed={**planned, component: version})
            assert found is not None
            info = found[0]
        except InvalidNameError as exc:
            return self._refuse(offer, VerificationError("verification_failed", str(exc), offer.target_path),
                                started)
        except VerificationError as exc:
            return self._refuse(offer, exc, started)
        except RepositoryUnavailableError as exc:
            return self._download_failed(offer, exc, started, stage="verify")
        try:
            progress = self.progress(f"{component} {version}", info.length) if self.progress else None
            fetched = fetch_release(session, info, component=component, installed_version=installed_version,
                                    installed_path=self.state.load_releases().get(component, {}).get(
                                        installed_version or ""), store=self.artifacts,
                                    downloads=self.state.downloads_dir, progress=progress)
            artifact = fetched.path
        except VerificationError as exc:
            return self._refuse(offer, exc, started)
        except (DownloadInterruptedError, OSError) as exc:
            return self._download_failed(offer, exc, started, stage="download")
        if not install:
            keep.add(artifact)
            log.info("%s %s downloaded and verified; waiting for the maintenance window", component, version)
            return Attempt(component, installed_version, version, "deferred",
                           message="downloaded; waiting for the maintenance window")
        layout = self.installer.layout(component)
        from_version = layout.current_version()
        report_id = str(uuid.uuid4())
        log.info("installing %s %s -> %s", component, from_version or "-", version)
        self.outbox.extra = fetched.report_fields()
        self.outbox.details.update(fetched.report_details())
        try:
            outcome = self.installer.install(artifact, component, from_version, version, report_id=report_id)
        except InstallConflictError as exc:
            self._queue(offer, started, outcome="failed", stage="install", code="install_conflict",
                        message=str(exc), report_id=report_id, from_version=from_version)
            return Attempt(component, from_version, version, "failed", "install", "install_conflict", str(exc))
        finally:
            self.outbox.extra = {}
            for key in fetched.report_details():
                self.outbox.details.pop(key, None)
        if outcome.outcome == "success":
            self.state.record_release(component, version, info.path)
            planned[component] = version
            self._forget_failure(component)
            self._drop_offer(component, version)
            if component in self.holds():  # a newer release than the one left went in
                holds = self.holds()
                holds.pop(component, None)
                self.state.update_status(holds=holds)
        else:
            self._remember_failure(component, version)
        activity.info("install %s %s -> %s: %s%s", component, outcome.from_version or "-", version, outcome.outcome,
                      f" at {outcome.failed_stage} ({outcome.error_code})" if outcome.outcome != "success" else "")
        self._keep_artifact(component, version, artifact, outcome.outcome == "success")
        log.log(logging.INFO if outcome.outcome == "success" else logging.ERROR,
                "%s %s -> %s: %s%s", component, outcome.from_version or "-", version, outcome.outcome,
                f" at {outcome.failed_stage} ({outcome.error_code}): {outcome.error_message}"
                if outcome.outcome != "success" else "")
        return Attempt(component, outcome.from_version, version, outcome.outcome, outcome.failed_stage,
                       outcome.error_code, outcome.error_message or "")

    def _keep_artifact(self, component: str, version: str, artifact: Path, installed: bool) -> None:
        """Keep the installed release's artifact as the base of the next delta patch; drop any other."""
        if installed:
            try:
                self.artifacts.keep(component, version, artifact)
                return
            except OSError as exc:
                log.warning("cannot keep the artifact of %s %s for delta updates: %s", component, version, exc)
        artifact.unlink(missing_ok=True)

    def _drop_offer(self, component: str, version: str) -> None:
        """An offer just installed is no longer pending (``status`` stops showing it)."""
        offers = self.state.load_status().get("offers") or []
        kept = [o for o in offers if not (isinstance(o, dict) and o.get("component") == component
                                          and o.get("version") == version)]
        if len(kept) != len(offers):
            self.state.update_status(offers=kept)

    def _remember_failure(self, component: str, version: str) -> None:
        failed = dict(self.state.load_status().get("failed_versions") or {})
        failed[component] = version
        self.state.update_status(failed_versions=failed)

    def _forget_failure(self, component: str) -> None:
        failed = dict(self.state.load_status().get("failed_versions") or {})
        if failed.pop(component, None) is not None:
            self.state.update_status(failed_versions=failed)

    def failed_versions(self) -> dict[str, str]:
        """Releases whose installation failed here; the daemon does not retry them by itself."""
        data = self.state.load_status().get("failed_versions") or {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def _queue(self, offer: Offer, started: float, *, outcome: str, stage: str, code: str, message: str,
               report_id: str | None = None, from_version: str | None = None) -> None:
        self.outbox.add({
            "id": report_id or str(uuid.uuid4()), "component": offer.component,
            "from_version": from_version if from_version is not None else offer.from_version,
            "to_version": offer.version, "outcome": outcome, "failed_stage": stage, "error_code": code,
            "error_message": message, "duration": max(0.0, self.clock() - started), "log_tail": "",
            "details": {"target_path": offer.target_path},
        })

    def _refuse(self, offer: Offer, exc: VerificationError, started: float) -> Attempt:
        log.error("refusing %s %s: %s", offer.component, offer.version, exc)
        self._queue(offer, started, outcome="refused", stage="verify", code=exc.code, message=str(exc))
        return Attempt(offer.component, offer.from_version, offer.version, "refused", "verify", exc.code, str(exc))

    def _download_failed(self, offer: Offer, exc: Exception, started: float, *, stage: str) -> Attempt:
        log.error("cannot fetch %s %s: %s", offer.component, offer.version, exc)
        self._queue(offer, started, outcome="failed", stage=stage, code="download_failed", message=str(exc))
        return Attempt(offer.component, offer.from_version, offer.version, "failed", stage, "download_failed",
                       str(exc), transient=True)

    # ------------------------------------------------------------ cycles

    def cycle(self, *, now: datetime | None = None) -> CycleResult:
        """One daemon cycle: send reports, check, verify and download, install inside the window, send."""
        result = CycleResult()
        self.flush_reports()
        try:
            check = self.check()
            result.poll_interval = check.poll_interval
            window = effective_window(self.config, check.maintenance_window)
            local_now = now or datetime.now().astimezone()
            wait = window.seconds_until_open(local_now) if window is not None else 0.0
            install = wait == 0.0
            failed = self.failed_versions()
            offers = [o for o in self.without_held(check.offers) if failed.get(o.component) != o.version]
            for o in check.offers:
                if failed.get(o.component) == o.version:
                    log.info("not retrying %s %s, which failed here (use 'client-agent update' to retry)",
                             o.component, o.version)
            result.attempts = self.process(offers, install=install)
            if any(a.outcome == "deferred" for a in result.attempts):
                result.window_wait = wait
            if any(a.transient for a in result.attempts):
                result.error = ServerUnavailableError(self.config.server_url, "download failed")
        except (ServerUnavailableError, RepositoryUnavailableError) as exc:
            result.error = exc
            result.retry_after = getattr(exc, "retry_after", None)
            log.warning("update cycle failed: %s", exc)
        except AgentError as exc:
            result.error = exc
            log.error("update cycle failed: %s", exc)
        self.flush_reports()
        result.self_updated = any(a.component == AGENT_COMPONENT and a.outcome == "success"
                                  for a in result.attempts)
        self.state.update_status(next_check_in=None)
        return result

    def close(self) -> None:
        self.api.close()
