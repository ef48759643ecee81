"""Support desk: tickets, failure groups, comments, attachments, mail in and out.

Follows the vendor's support process (``support-process.md``): every request gets a
unique number (``TICKET_PREFIX``-000123, quoted in every mail subject), has a kind
(incident, problem, service, development), a subject, a description and attachments,
moves through ``new -> in_progress -> waiting_for_customer -> processed -> closed``, and
staff may ask the customer for clarification and logs.

Modules:

* :mod:`.services` - ticket rules (numbers, life cycle, messages, notes, merge, auto-close,
  rollout-halt tickets);
* :mod:`.failures` and :mod:`.fingerprint` - failed updates grouped by fingerprint, one
  ticket per (group, customer);
* :mod:`.fixes` - releases that fix tickets and groups, and tickets that follow the fleet to "processed";
* :mod:`.mailin`, :mod:`.mailparse`, :mod:`.imap` - inbound mail; :mod:`.mailout` and
  :mod:`.mailbackends` - the outbox and its SMTP/console transports;
* :mod:`.customers` - customer users and their ``rsc_`` API tokens;
* :mod:`.api`, :mod:`.schemas`, :mod:`.cli` - the HTTP and command-line faces.

:func:`init_app` registers the report hook, the rollout-halt hook, the worker jobs
(outbox delivery, auto-close, and the IMAP poll when ``IMAP_HOST`` is set) and the commands.
"""
from __future__ import annotations

from flask import Flask

from ..errors import ConfigError


def init_app(app: Flask) -> None:
    """Wire the support desk into the app: hooks, worker jobs, CLI commands."""
    from . import cli, failures, fixes

    if app.config.get("MAIL_BACKEND") not in ("console", "smtp"):
        raise ConfigError(f"MAIL_BACKEND must be 'console' or 'smtp', got {app.config.get('MAIL_BACKEND')!r}",
                          field="MAIL_BACKEND")
    if app.config.get("SMTP_STARTTLS") and app.config.get("SMTP_TLS"):
        raise ConfigError("SMTP_STARTTLS and SMTP_TLS exclude each other", field="SMTP_TLS")

    report_hooks = app.extensions.setdefault("report_hooks", [])
    for hook in (failures.on_reports, fixes.on_reports):
        if hook not in report_hooks:
            report_hooks.append(hook)
    app.extensions["release_fixes"] = fixes.ReleaseFixes
    app.extensions["ticket_owners"] = fixes.ticket_owners
    halt_hooks = app.extensions.setdefault("rollout_halt_hooks", [])
    if failures.on_rollout_halt not in halt_hooks:
        halt_hooks.append(failures.on_rollout_halt)

    for cmd in cli.COMMANDS:
        app.cli.add_command(cmd)
    _register_jobs(app)


def _register_jobs(app: Flask) -> None:
    from ..worker import register_job, register_takeover_hook

    def deliver_outbox() -> None:
        from .mailout import deliver_outbox as deliver

        result = deliver()
        if result.sent or result.failed or result.retried:
            app.logger.info("support outbox: %s", result)

    def auto_close() -> None:
        from ..db import db
        from .services import auto_close as close

        closed = close(db.session)
        db.commit()
        if closed:
            app.logger.info("auto-closed %d processed ticket(s)", len(closed))

    register_job(app, "support-mail-outbox", float(app.config.get("MAIL_OUTBOX_INTERVAL", 30.0)), deliver_outbox)

    def release_claims(session, previous: str) -> None:  # noqa: ANN001
        from .mailout import release_claims_of

        count = release_claims_of(session, previous)
        if count:
            app.logger.warning("outbox: %d mail(s) claimed by %s are due again", count, previous)

    register_takeover_hook(app, "support-mail-outbox", release_claims)
    if app.config.get("IMAP_HOST") and app.config.get("IMAP_USER"):
        def poll_mailbox() -> None:
            from .cli import store_one
            from .imap import poll_configured

            result = poll_configured(app.config, store_one)
            if result.stored or result.failed:
                app.logger.info("support mailbox: %s", result)

        register_job(app, "support-mail-poll", float(app.config.get("IMAP_POLL_INTERVAL", 60.0)), poll_mailbox)
    register_job(app, "support-auto-close", 3600.0, auto_close)
