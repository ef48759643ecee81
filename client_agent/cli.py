"""The ``client-agent`` command line.

Commands::

    client-agent enroll --server URL --token T --install-dir DIR [--channel C] [--force] ...
    client-agent check                       what the server offers, with changelogs
    client-agent update [--component C] [--yes]
    client-agent run [--once]                the daemon (or one cycle, for a systemd timer)
    client-agent status [--json]
    client-agent rollback --component C      back to the previous release on disk
    client-agent self-check                  used by a new agent release before it is switched to
    client-agent collect-logs --ticket N     upload a diagnostic bundle to a support request
    client-agent report-issue --kind K --subject S [--description D] [--screenshot F] [--attach-logs]

Every command takes ``--state-dir`` (default ``$CLIENT_AGENT_STATE_DIR`` or
``/var/lib/client-agent``) and ``-v`` for more output. Commands that change the
installation hold the single-instance lock and first finish or undo an
installation interrupted by a crash (and report it).

Exit codes: 0 success; 1 an update or rollback failed (the previous release is
running); 2 bad arguments or configuration; 3 not enrolled, or already enrolled;
4 the server or the TUF repository is unreachable (try again later); 5 an offer
was refused because TUF does not verify it; 6 another agent is running;
7 the server rejected our credentials; 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import logging.handlers
import os
import platform
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from client_agent.errors import AgentError, AlreadyRunningError, NoPreviousReleaseError, StateError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_ENROLLMENT = 3
EXIT_UNAVAILABLE = 4
EXIT_REFUSED = 5
EXIT_LOCKED = 6
EXIT_AUTH = 7
EXIT_INTERRUPTED = 130

log = logging.getLogger("client_agent")


class UsageError(AgentError):
    """A command was given arguments it cannot act on."""


class EnrollmentRefusedError(AgentError):
    """The server refused the enrollment token (unknown, revoked, expired or used up)."""

    def __init__(self, server_message: str) -> None:
        super().__init__(f"the server refused the enrollment token: {server_message}")
        self.server_message = server_message


# --------------------------------------------------------------------------- plumbing


class _ConsoleFilter(logging.Filter):
    """Warnings and errors, plus (for ``run``) the one-line-per-check-and-install activity log."""

    def __init__(self, level: int, activity: bool) -> None:
        super().__init__()
        self.level, self.activity = level, activity

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= self.level:
            return True
        return self.activity and record.name == "client_agent.activity" and record.levelno >= logging.INFO


def _setup_logging(state_dir: Path | None, verbose: int, *, activity: bool = False) -> None:
    root = logging.getLogger("client_agent")
    root.setLevel(logging.DEBUG)
    root.propagate = False
    _close_logging()
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.DEBUG)
    console.addFilter(_ConsoleFilter(logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING,
                                     activity))
    console.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    root.addHandler(console)
    if state_dir is not None and state_dir.is_dir():
        from client_agent.config import LOG_NAME

        fh = logging.handlers.RotatingFileHandler(state_dir / LOG_NAME, maxBytes=1024 * 1024, backupCount=3,
                                                  encoding="utf-8")
        fh.setLevel(logging.DEBUG if verbose > 1 else logging.INFO)
        fh.setFormatter(logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"))
        root.addHandler(fh)
        os.chmod(state_dir / LOG_NAME, 0o600)


def _close_logging() -> None:
    root = logging.getLogger("client_agent")
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()


def _tqdm_progress(desc: str, total: int) -> Callable[[int, int, int], None]:
    from tqdm import tqdm

    bar: Any = None

    def update(received: int, length: int, start: int) -> None:
        nonlocal bar
        if bar is not None and received < bar.n:  # the transfer started over
            bar.close()
            bar = None
        if bar is None:
            bar = tqdm(total=length, initial=start, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
                       file=sys.stderr, leave=False, disable=None)
            if start:
                log.info("resuming %s at %d of %d bytes", desc, start, length)
        bar.update(received - bar.n)
        if received >= length:
            bar.close()

    return update


def _say(text: str = "") -> None:
    print(text, flush=True)


def _load(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    from client_agent.config import StateDir

    state = StateDir.resolve(args.state_dir)
    config = state.load_config()
    enrollment = state.load_enrollment()
    return state, config, enrollment


def _agent(args: argparse.Namespace, *, progress: bool = False) -> Any:
    from client_agent.agent import Agent

    state, config, enrollment = _load(args)
    return Agent(state, config, enrollment, progress=_tqdm_progress if progress else None)


def _lock(state: Any) -> Any:
    from client_agent.fsutil import InstanceLock

    state.ensure()
    return InstanceLock(state.lock_file)  # acquired by ``with`` (or ``acquire()``)


def _print_recovered(outcome: Any) -> None:
    if outcome is None:
        return
    what = {"success": "finished", "rolled_back": "undone", "failed": "could not be undone"}[outcome.outcome]
    _say(f"An installation of {outcome.component} {outcome.to_version} was interrupted "
         f"(at step {outcome.failed_stage or 'committed'}); it was {what}; "
         f"{outcome.component} {outcome.to_version if outcome.outcome == 'success' else outcome.from_version or '(none)'}"
         " is running. The outcome will be reported.")


def _print_offer(offer: Any) -> None:
    flags = [f for f, on in (("critical", offer.critical), ("downgrade: the installed release is yanked",
                                                            offer.downgrade)) if on]
    extra = f"  [{', '.join(flags)}]" if flags else ""
    _say(f"{offer.component}: {offer.from_version or '(not installed)'} -> {offer.version}{extra}")
    if offer.changelog.strip():
        for line in offer.changelog.strip().splitlines():
            _say(f"    {line}")
    _say()


def _print_attempts(attempts: list[Any]) -> None:
    for a in attempts:
        if a.outcome == "success":
            _say(f"{a.component}: updated {a.from_version or '(none)'} -> {a.to_version}")
        elif a.outcome == "rolled_back":
            _say(f"{a.component}: update to {a.to_version} failed at {a.stage} ({a.error_code}); "
                 f"rolled back, {a.from_version} is running")
        elif a.outcome == "refused":
            _say(f"{a.component}: refused {a.to_version}: {a.message} [{a.error_code}]")
        elif a.outcome == "deferred":
            _say(f"{a.component}: {a.to_version} downloaded; it will be installed in the maintenance window")
        else:
            _say(f"{a.component}: update to {a.to_version} failed at {a.stage} ({a.error_code}): {a.message}")


def _attempts_exit(attempts: list[Any]) -> int:
    outcomes = {a.outcome for a in attempts}
    if outcomes & {"failed", "rolled_back"}:
        if all(a.transient for a in attempts if a.outcome in ("failed", "rolled_back")):
            return EXIT_UNAVAILABLE
        return EXIT_FAILED
    if "refused" in outcomes:
        return EXIT_REFUSED
    return EXIT_OK


def _report_delivery(agent: Any) -> None:
    pending = agent.outbox.pending()
    if pending:
        _say(f"{len(pending)} report(s) waiting for the server; they will be sent later.")


# --------------------------------------------------------------------------- commands


def cmd_enroll(args: argparse.Namespace) -> int:
    from client_agent.client import ApiClient, AuthRejectedError
    from client_agent.config import AgentConfig, AlreadyEnrolledError, ConfigError, Enrollment, StateDir
    from client_agent.installer import read_installed
    from client_agent.selfupdate import agent_version
    from client_agent.trust import remove_tree

    state = StateDir.resolve(args.state_dir)
    existing = state.enrollment_or_none()
    if existing is not None and not args.force:
        raise AlreadyEnrolledError(state.path, existing.installation_id)
    token = args.token or os.environ.get("CLIENT_AGENT_ENROLLMENT_TOKEN")
    if not token:
        raise UsageError("an enrollment token is required (--token or CLIENT_AGENT_ENROLLMENT_TOKEN)")
    config = AgentConfig(server_url=args.server, install_dir=os.path.abspath(args.install_dir),
                         channel=args.channel, components=sorted(set(args.component or [])),
                         self_update=not args.no_self_update, maintenance_window=None)
    root_override = _read_root_file(args.root) if args.root else None
    state.ensure()
    _setup_logging(state.path, args.verbose)
    with _lock(state):
        installed = read_installed(state.path)
        if config.self_update:
            installed.setdefault("client-agent", agent_version())
        body = {"enrollment_token": token, "name": args.name or socket.gethostname(),
                "hostname": socket.getfqdn(), "platform": f"{platform.system()} {platform.machine()}".strip(),
                "agent_version": agent_version(), "channel": args.channel, "tags": sorted(set(args.tag or [])),
                "installed": installed, "components": list(config.components)}
        if args.maintenance_window:
            body["maintenance_window"] = args.maintenance_window
        api = ApiClient(config.server_url, timeout=config.request_timeout, user_agent=f"client-agent/{agent_version()}")
        try:
            answer = api.enroll(body)
        except AuthRejectedError as exc:
            raise EnrollmentRefusedError(str(exc).split(": ", 1)[-1]) from exc
        finally:
            api.close()
        root = answer.get("root_json")
        if root_override is not None:
            if root is not None and root.get("signed") != root_override.get("signed"):
                log.warning("the server's root differs from %s; trusting the file", args.root)
            root = root_override
        elif root is not None:
            try:
                root = json.loads(_check_root(json.dumps(root).encode(), "the server's root_json"))
            except ConfigError:
                raise
        enrollment = Enrollment(
            installation_id=answer["installation_id"], token=answer["token"],
            customer=str(answer.get("customer", "")), channel=str(answer.get("channel", args.channel)),
            tuf_metadata_url=str(answer.get("tuf_metadata_url") or f"{config.server_url}/tuf/metadata/"),
            tuf_targets_url=str(answer.get("tuf_targets_url") or f"{config.server_url}/tuf/targets/"),
            root_json=root)
        if args.force:
            remove_tree(state.tuf_dir)  # a new root: start the metadata cache afresh
        state.save_config(config)
        state.save_enrollment(enrollment)
        log.info("enrolled as installation %s (customer %s, channel %s)", enrollment.installation_id,
                 enrollment.customer, enrollment.channel)
    _say(f"Enrolled as installation {enrollment.installation_id} "
         f"(customer {enrollment.customer}, channel {enrollment.channel}).")
    _say(f"State: {state.path}  Install dir: {config.install_dir}")
    unknown = [str(c) for c in answer.get("unknown_components") or []]
    if unknown:
        print(f"client-agent: warning: the server knows no component named {', '.join(unknown)}; "
              "nothing will be offered for it (check the name with the vendor, then "
              "'client-agent enroll --force ...')", file=sys.stderr)
    if root is None:
        print("client-agent: error: the server has no TUF repository yet, so updates cannot be verified; "
              "enroll again with --force (or --root FILE) once it is set up", file=sys.stderr)
        return EXIT_REFUSED
    return EXIT_OK


def _check_root(data: bytes, what: str) -> bytes:
    from tuf.api.metadata import Metadata, Root

    from client_agent.config import ConfigError

    try:
        md = Metadata[Root].from_bytes(data)
        md.signed.verify_delegate(Root.type, md.signed_bytes, md.signatures)
    except Exception as exc:  # noqa: BLE001 - any failure means "not a usable root"
        raise ConfigError("root", f"{what} is not a self-signed TUF root: {exc}") from exc
    return data


def _read_root_file(path: str) -> dict[str, Any]:
    from client_agent.config import ConfigError

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError("root", f"cannot read {path}: {exc.strerror}") from exc
    return json.loads(_check_root(data, path))


def cmd_check(args: argparse.Namespace) -> int:
    agent = _agent(args)
    _setup_logging(agent.state.path, args.verbose)
    try:
        result = agent.check()
    finally:
        agent.close()
    if not result.offers:
        _say("Everything is up to date.")
        return EXIT_OK
    _say(f"{len(result.offers)} update(s) available:\n")
    for offer in result.offers:
        _print_offer(offer)
    if result.maintenance_window:
        _say(f"Maintenance window: {result.maintenance_window}")
    return EXIT_OK


def cmd_update(args: argparse.Namespace) -> int:
    agent = _agent(args, progress=True)
    _setup_logging(agent.state.path, args.verbose)
    with _lock(agent.state):
        try:
            _print_recovered(agent.recover())
            agent.flush_reports(all_pending=True)
            result = agent.check()
            offers = [o for o in result.offers if args.component is None or o.component == args.component]
            if not offers:
                _say(f"{args.component or 'Everything'} is up to date.")
                return EXIT_OK
            for offer in offers:
                _print_offer(offer)
            if not args.yes:
                if not sys.stdin.isatty():
                    raise UsageError("not asking for confirmation without a terminal; pass --yes")
                answer = input(f"Install {len(offers)} update(s)? [y/N] ").strip().lower()
                if answer not in ("y", "yes"):
                    _say("Nothing installed.")
                    return EXIT_OK
            attempts = agent.process(offers, install=True, only=args.component)
            _print_attempts(attempts)
            agent.flush_reports()
            _report_delivery(agent)
            return _attempts_exit(attempts)
        finally:
            agent.close()


def cmd_run(args: argparse.Namespace) -> int:
    from client_agent.agent import next_sleep
    from client_agent.client import ServerUnavailableError
    from client_agent.selfupdate import maybe_reexec, should_reexec
    from client_agent.trust import RepositoryUnavailableError

    agent = _agent(args)
    _setup_logging(agent.state.path, args.verbose, activity=True)
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("received %s; stopping after the current step", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    if not args.once:
        signal.signal(signal.SIGINT, on_signal)
    lock = _lock(agent.state)
    lock.acquire()
    exit_code = EXIT_OK
    restart = False
    try:
        log.info("agent %s started (%s)", agent.version, "one cycle" if args.once else "daemon")
        recovered = agent.recover()
        _print_recovered(recovered)
        failures = 0
        while not stop.is_set():
            result = agent.cycle()
            if result.error is None:
                failures = 0
            else:
                failures += 1
            if args.once:
                _print_attempts(result.attempts)
                if result.error is not None:
                    print(f"client-agent: error: {result.error}", file=sys.stderr)
                    exit_code = (EXIT_UNAVAILABLE
                                 if isinstance(result.error, (ServerUnavailableError, RepositoryUnavailableError))
                                 else _exit_code_for(result.error))
                if exit_code == EXIT_OK:
                    exit_code = _attempts_exit(result.attempts)
                break
            if result.self_updated and should_reexec(agent.config.install_dir) is not None:
                log.info("the agent updated itself; restarting on the new release")
                restart = True
                break
            delay = next_sleep(result, config=agent.config, failures=failures,
                               next_report_due=agent.next_report_due())
            agent.state.update_status(next_check_at=time.strftime("%Y-%m-%dT%H:%M:%S%z",
                                                                  time.localtime(time.time() + delay)))
            log.info("next check in %.0f s", delay)
            stop.wait(delay)
        log.info("agent stopped")
    finally:
        agent.close()
        lock.release()
    if restart:
        maybe_reexec(agent.config.install_dir, _ORIGINAL_ARGV or ["run"])
    return exit_code


def cmd_status(args: argparse.Namespace) -> int:
    from client_agent.config import StateDir
    from client_agent.installer import ComponentLayout, read_history, read_installed
    from client_agent.journal import read_journal
    from client_agent.outbox import Outbox
    from client_agent.selfupdate import PACKAGE_DIR, agent_version

    state = StateDir.resolve(args.state_dir)
    config = state.load_config()
    enrollment = state.load_enrollment()
    installed = read_installed(state.path)
    history = read_history(state.path)
    status = state.load_status()
    pending = Outbox(state.outbox_dir).pending() if state.outbox_dir.exists() else []
    journal = read_journal(state.path)
    components = {}
    for comp in sorted(set(installed) | set(config.components)):
        layout = ComponentLayout(Path(config.install_dir), comp)
        components[comp] = {"installed": installed.get(comp), "current": layout.current_version(),
                            "releases_on_disk": layout.release_versions(), "history": history.get(comp, [])}
    data = {
        "enrollment": {"installation_id": enrollment.installation_id, "customer": enrollment.customer,
                       "channel": enrollment.channel, "server_url": config.server_url,
                       "enrolled_at": enrollment.enrolled_at, "trusted_root": enrollment.root_json is not None},
        "agent": {"version": agent_version(), "path": str(PACKAGE_DIR)},
        "install_dir": config.install_dir,
        "components": components,
        "last_check_at": status.get("last_check_at"), "last_check_ok": status.get("last_check_ok"),
        "last_error": status.get("last_error"), "offers": status.get("offers", []),
        "next_check_at": status.get("next_check_at"),
        "maintenance_window": config.maintenance_window or status.get("maintenance_window"),
        "failed_versions": status.get("failed_versions") or {},
        "pending_reports": [{"id": p.id, "component": p.report.get("component"),
                             "to_version": p.report.get("to_version"), "outcome": p.report.get("outcome"),
                             "attempts": p.attempts, "last_error": p.last_error} for p in pending],
        "interrupted_installation": None if journal is None else {
            "component": journal.component, "from_version": journal.from_version,
            "to_version": journal.to_version, "step": journal.step},
    }
    if args.json:
        print(json.dumps(data, indent=2, sort_keys=True))
        return EXIT_OK
    e = data["enrollment"]
    _say(f"Enrollment:      installation {e['installation_id']} (customer {e['customer']}, channel "
         f"{e['channel']}) at {e['server_url']}, since {e['enrolled_at']}")
    if not e["trusted_root"]:
        _say("                 NO trusted TUF root: updates will be refused")
    _say(f"Agent:           {data['agent']['version']} ({data['agent']['path']})")
    _say(f"Install dir:     {config.install_dir}")
    _say("Components:")
    if not components:
        _say("  (none)")
    for comp, c in components.items():
        others = [v for v in c["releases_on_disk"] if v != c["current"]]
        _say(f"  {comp:<20} {c['installed'] or '(not installed)'}"
             + (f"  (other releases on disk: {', '.join(others)})" if others else ""))
    check = data["last_check_at"] or "never"
    if data["last_check_at"]:
        check += " (ok)" if data["last_check_ok"] else f" (failed: {data['last_error']})"
    _say(f"Last check:      {check}")
    if data["offers"]:
        _say("Offered:         " + ", ".join(f"{o['component']} {o['version']}" for o in data["offers"]))
    if data["next_check_at"]:
        _say(f"Next check:      {data['next_check_at']}")
    _say(f"Window:          {data['maintenance_window'] or 'any time'}")
    _say(f"Pending reports: {len(pending)}")
    for p in data["pending_reports"]:
        _say(f"  {p['component']} {p['to_version']} {p['outcome']} ({p['attempts']} attempt(s))")
    if journal is not None:
        _say(f"Interrupted:     {journal.component} {journal.from_version or '-'} -> {journal.to_version} "
             f"at step {journal.step}; the next update or run will finish or undo it")
    return EXIT_OK


def cmd_rollback(args: argparse.Namespace) -> int:
    agent = _agent(args)
    _setup_logging(agent.state.path, args.verbose)
    with _lock(agent.state):
        try:
            _print_recovered(agent.recover())
            outcome = agent.rollback(args.component)
            agent.flush_reports()
            if outcome.outcome == "failed":
                _say(f"{args.component}: switched back to {outcome.to_version}, but its rollback hook failed: "
                     f"{outcome.error_message}")
                _report_delivery(agent)
                return EXIT_FAILED
            _say(f"{args.component}: rolled back from {outcome.from_version} to {outcome.to_version}.")
            _report_delivery(agent)
            return EXIT_OK
        finally:
            agent.close()


def cmd_self_check(args: argparse.Namespace) -> int:
    from client_agent.selfupdate import PACKAGE_DIR, agent_version, self_check

    problems = self_check()
    if problems:
        for p in problems:
            print(f"self-check: {p}", file=sys.stderr)
        print(f"self-check FAILED for the agent in {PACKAGE_DIR}", file=sys.stderr)
        return EXIT_FAILED
    _say(f"self-check passed: client-agent {agent_version()} in {PACKAGE_DIR}")
    return EXIT_OK


def _bundle(args: argparse.Namespace, state: Any, config: Any, enrollment: Any) -> Any:
    import tempfile

    from client_agent.installer import read_installed
    from client_agent.selfupdate import agent_version
    from client_agent.support import build_bundle

    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = Path(args.output) if getattr(args, "output", None) else \
        Path(tempfile.mkdtemp(prefix="client-agent-")) / f"diagnostics-{stamp}.tar.gz"
    extra = {"installation_id": enrollment.installation_id, "customer": enrollment.customer,
             "channel": enrollment.channel, "agent_version": agent_version(),
             "installed": read_installed(state.path), "install_dir": str(config.install_dir)}
    return build_bundle(state.path, out, install_dir=str(config.install_dir), log_files=list(config.log_files),
                        extra=extra)


def cmd_collect_logs(args: argparse.Namespace) -> int:
    from client_agent.client import ApiClient

    state, config, enrollment = _load(args)
    _setup_logging(state.path, args.verbose)
    bundle = _bundle(args, state, config, enrollment)
    _say(f"Diagnostic bundle: {bundle.path} ({bundle.size} bytes, {len(bundle.members)} files)")
    if args.no_upload:
        return EXIT_OK
    client = ApiClient(config.server_url, enrollment.token)
    try:
        with bundle.path.open("rb") as fh:
            client.upload_attachments(args.ticket, [(bundle.path.name, fh, "application/gzip")])
    finally:
        client.close()
    _say(f"Attached to {args.ticket}.")
    return EXIT_OK


def cmd_report_issue(args: argparse.Namespace) -> int:
    from client_agent.client import ApiClient
    from client_agent.support import check_attachment, guess_type

    state, config, enrollment = _load(args)
    _setup_logging(state.path, args.verbose)
    screenshot = check_attachment(args.screenshot) if args.screenshot else None
    description = args.description
    if description == "-":
        description = sys.stdin.read()
    client = ApiClient(config.server_url, enrollment.token)
    try:
        ticket = client.create_ticket({"kind": args.kind, "subject": args.subject, "description": description,
                                       "priority": args.priority})
        number = ticket["number"]
        files = []
        handles = []
        try:
            if screenshot is not None:
                fh = screenshot.open("rb")
                handles.append(fh)
                files.append((screenshot.name, fh, guess_type(screenshot)))
            if args.attach_logs:
                bundle = _bundle(args, state, config, enrollment)
                fh = bundle.path.open("rb")
                handles.append(fh)
                files.append((bundle.path.name, fh, "application/gzip"))
            if files:
                client.upload_attachments(number, files)
        finally:
            for fh in handles:
                fh.close()
    finally:
        client.close()
    _say(number)
    print(f"Request {number} registered ({args.kind}); quote it in every message about it.", file=sys.stderr)
    return EXIT_OK


# --------------------------------------------------------------------------- parser and main


def build_parser() -> argparse.ArgumentParser:
    def options(suppress: bool) -> argparse.ArgumentParser:
        # Sub-commands repeat the options with suppressed defaults, so that a value given
        # before the command name is not overwritten by the sub-command's default.
        p = argparse.ArgumentParser(add_help=False)
        p.add_argument("--state-dir", metavar="DIR", default=argparse.SUPPRESS if suppress else None,
                       help="agent state folder (default: $CLIENT_AGENT_STATE_DIR or /var/lib/client-agent)")
        p.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS if suppress else 0,
                       help="more output (twice: debug)")
        return p

    common = options(True)
    parser = argparse.ArgumentParser(prog="client-agent", parents=[options(False)],
                                     description="Checks for, verifies, installs and reports updates of this "
                                                 "installation's components.")
    parser.add_argument("--version", action="store_true", help="print the agent's version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("enroll", parents=[common], help="register this installation with the release server")
    p.add_argument("--server", required=True, metavar="URL", help="release server base URL")
    p.add_argument("--token", metavar="TOKEN", help="enrollment token (or $CLIENT_AGENT_ENROLLMENT_TOKEN)")
    p.add_argument("--install-dir", required=True, metavar="DIR", help="where components are installed")
    p.add_argument("--channel", default="stable", help="release channel (default: stable)")
    p.add_argument("--name", help="installation name shown to the vendor (default: host name)")
    p.add_argument("--tag", action="append", metavar="TAG", help="tag (repeatable)")
    p.add_argument("--component", action="append", metavar="NAME",
                   help="component this installation runs, installed on the first update (repeatable)")
    p.add_argument("--maintenance-window", metavar="SPEC", help="e.g. '01:00-05:00' or 'sat-sun 00:00-06:00'")
    p.add_argument("--root", metavar="FILE", help="trusted TUF root.json obtained out of band (preferred)")
    p.add_argument("--no-self-update", action="store_true", help="do not update the agent itself")
    p.add_argument("--force", action="store_true", help="enroll again although this state folder is enrolled")
    p.set_defaults(func=cmd_enroll)

    p = sub.add_parser("check", parents=[common], help="show the updates the server offers, with changelogs")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("update", parents=[common], help="verify, download and install the offered updates now")
    p.add_argument("--component", metavar="NAME", help="only this component")
    p.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    p.set_defaults(func=cmd_update)

    p = sub.add_parser("run", parents=[common], help="run the update loop (daemon)")
    p.add_argument("--once", action="store_true", help="one cycle, then exit (for a systemd timer)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("status", parents=[common], help="installed versions, last check, pending reports")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("rollback", parents=[common], help="switch a component back to its previous release")
    p.add_argument("--component", required=True, metavar="NAME")
    p.set_defaults(func=cmd_rollback)

    p = sub.add_parser("self-check", parents=[common], help="check that this agent's code can run")
    p.set_defaults(func=cmd_self_check)

    p = sub.add_parser("collect-logs", parents=[common],
                       help="upload a diagnostic bundle (logs, versions, system facts) to a support request")
    p.add_argument("--ticket", required=True, metavar="NUMBER", help="the request's number, e.g. OTK-000123")
    p.add_argument("--output", metavar="FILE", help="also keep the bundle here (.tar.gz)")
    p.add_argument("--no-upload", action="store_true", help="only write the bundle")
    p.set_defaults(func=cmd_collect_logs)

    p = sub.add_parser("report-issue", parents=[common], help="file a support request and print its number")
    p.add_argument("--kind", required=True, choices=["incident", "problem", "service", "development"],
                   help="incident: one user hit a failure; problem: the application stopped or is unusable; "
                        "service: a question; development: a change or improvement proposal")
    p.add_argument("--subject", required=True)
    p.add_argument("--description", default="", help="text, or - to read it from standard input")
    p.add_argument("--priority", default="normal", choices=["low", "normal", "high", "urgent"])
    p.add_argument("--screenshot", metavar="FILE", help="an image of the failure")
    p.add_argument("--attach-logs", action="store_true", help="attach a diagnostic bundle")
    p.set_defaults(func=cmd_report_issue)
    return parser


def _exit_code_for(exc: BaseException) -> int:
    from client_agent.client import ApiError, AuthRejectedError, ServerUnavailableError
    from client_agent.config import AlreadyEnrolledError, ConfigError, NotEnrolledError
    from client_agent.trust import NoTrustedRootError, RepositoryUnavailableError, VerificationError

    if isinstance(exc, AlreadyRunningError):
        return EXIT_LOCKED
    if isinstance(exc, (NotEnrolledError, AlreadyEnrolledError, EnrollmentRefusedError)):
        return EXIT_ENROLLMENT
    from client_agent.support import SupportRequestError

    if isinstance(exc, (ConfigError, UsageError, SupportRequestError)):
        return EXIT_USAGE
    if isinstance(exc, AuthRejectedError):
        return EXIT_AUTH
    if isinstance(exc, (ServerUnavailableError, RepositoryUnavailableError)):
        return EXIT_UNAVAILABLE
    if isinstance(exc, (VerificationError, NoTrustedRootError)):
        return EXIT_REFUSED
    if isinstance(exc, (ApiError, NoPreviousReleaseError, StateError)):
        return EXIT_FAILED
    return EXIT_FAILED


_ORIGINAL_ARGV: list[str] | None = None


def _maybe_launch_current(args: argparse.Namespace, argv: list[str]) -> None:
    """Run the self-updated agent (``<install_dir>/client-agent/current``) if there is one."""
    if args.command in ("self-check", "enroll") or (args.command is None and not args.version):
        return
    from client_agent.config import StateDir
    from client_agent.selfupdate import maybe_reexec

    try:
        config = StateDir.resolve(args.state_dir).load_config()
    except AgentError:
        return  # not enrolled: the command itself will say so
    if config.self_update:
        maybe_reexec(config.install_dir, argv)


def main(argv: Sequence[str] | None = None) -> int:
    global _ORIGINAL_ARGV
    raw = list(sys.argv[1:] if argv is None else argv)
    _ORIGINAL_ARGV = raw
    parser = build_parser()
    args = parser.parse_args(raw)
    if args.version:
        try:
            _maybe_launch_current(args, raw)
        except AgentError:
            pass
        from client_agent.selfupdate import PACKAGE_DIR, agent_version

        _say(f"client-agent {agent_version()} ({PACKAGE_DIR})")
        return EXIT_OK
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    from client_agent.selfupdate import PYTHON_ENV

    os.environ.setdefault(PYTHON_ENV, sys.executable)  # hooks of agent releases run the same interpreter
    try:
        _maybe_launch_current(args, raw)
        return int(args.func(args))
    except KeyboardInterrupt:
        print("client-agent: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except AgentError as exc:
        print(f"client-agent: error: {exc}", file=sys.stderr)
        root = logging.getLogger("client_agent")
        record = root.makeRecord(root.name, logging.ERROR, __file__, 0, "%s failed: %s", (args.command, exc), None)
        for handler in root.handlers:
            if isinstance(handler, logging.FileHandler):
                handler.handle(record)
        return _exit_code_for(exc)
    finally:
        _close_logging()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
