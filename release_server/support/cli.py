"""Support commands: ``tickets ...`` and ``customer-users ...`` for staff, ``mail ...``, and ``mailgate``.

``mailgate`` is an MTA pipe: it reads one RFC 822 message on standard input and posts
it to the server over HTTP. Its token comes from ``--token-file`` /
``RELEASE_SERVER_TOKEN_FILE`` or ``RELEASE_SERVER_TOKEN``; ``--token`` on the command line
still works but warns, since every local user sees it in ``ps`` and the MTA logs it.
Its exit status follows ``sysexits.h`` so the MTA does the right thing: 0 stored; 75
(EX_TEMPFAIL) when the server cannot be reached, answers 5xx, or refuses the token (the MTA keeps the message and retries); 65 (EX_DATAERR) when the
message cannot be parsed at all (the server still stored it raw) or is refused as too
large or empty. Without a token, or with a token file it cannot read, it exits 75 so the
MTA keeps the message until the configuration is mended.
"""
from __future__ import annotations

import sys

import click
from flask import current_app
from flask.cli import with_appcontext

from ..errors import ReleaseServerError
from .vocabulary import DEPARTMENTS, KINDS, PRIORITIES, REVIEW_OUTCOMES, STATUSES

EX_OK, EX_DATAERR, EX_TEMPFAIL = 0, 65, 75
ACTOR = "cli"


def _fail(e: ReleaseServerError) -> None:
    click.echo(f"error: {e.message}", err=True)
    sys.exit(1)


def _staff():  # noqa: ANN202
    from .services import Actor

    return Actor(ACTOR, "staff")


# ---------------------------------------------------------------- mailgate (no database access)

@click.command("mailgate")
@click.option("--server", envvar="RELEASE_SERVER_URL", required=True, help="Server URL [env RELEASE_SERVER_URL].")
@click.option("--token-file", envvar="RELEASE_SERVER_TOKEN_FILE", type=click.Path(dir_okay=False),
              help="File holding the support API token [env RELEASE_SERVER_TOKEN_FILE].")
@click.option("--token", envvar="RELEASE_SERVER_TOKEN",
              help="The token itself [env RELEASE_SERVER_TOKEN]; on the command line it shows in ps and the "
                   "MTA's log, so prefer --token-file or the environment.")
@click.option("--timeout", type=float, default=60.0, show_default=True)
@click.pass_context
def mailgate(ctx: click.Context, server: str, token_file: str | None, token: str | None, timeout: float) -> None:
    """Read one RFC 822 message on stdin and hand it to the server (for an MTA pipe)."""
    from click.core import ParameterSource

    if token and ctx.get_parameter_source("token") == ParameterSource.COMMANDLINE:
        click.echo("mailgate: warning: --token on the command line is visible to every user (ps) and in the "
                   "MTA's log; use --token-file or RELEASE_SERVER_TOKEN", err=True)
    if token_file:
        try:
            with open(token_file, encoding="utf-8") as fh:
                token = fh.read().strip()
        except (OSError, UnicodeDecodeError) as e:
            click.echo(f"mailgate: cannot read the token file {token_file}: {e}; the MTA will retry", err=True)
            sys.exit(EX_TEMPFAIL)
    if not token:
        click.echo("mailgate: no token: give --token-file or set RELEASE_SERVER_TOKEN (or "
                   "RELEASE_SERVER_TOKEN_FILE); the MTA will retry", err=True)
        sys.exit(EX_TEMPFAIL)
    raw = sys.stdin.buffer.read()
    sys.exit(deliver(server, token, raw, timeout=timeout))


def deliver(server: str, token: str, raw: bytes, *, timeout: float = 60.0) -> int:
    """Post one raw message to the server; returns the exit status (see the module docstring)."""
    import requests  # here: the other commands of ``release-server`` start without it

    url = server.rstrip("/") + "/api/v1/support/mail"
    try:
        resp = requests.post(url, data=raw, timeout=timeout,
                             headers={"Authorization": f"Bearer {token}", "Content-Type": "message/rfc822"})
    except requests.RequestException as e:
        click.echo(f"mailgate: cannot reach {server}: {e.__class__.__name__}: {e}; the MTA will retry", err=True)
        return EX_TEMPFAIL
    with resp:
        try:
            data = resp.json()
        except ValueError:
            data = {}
        if 200 <= resp.status_code < 300:
            click.echo(f"mailgate: {data.get('outcome', 'stored')} {data.get('ticket') or ''}".rstrip(), err=True)
            return EX_OK
        err = data.get("error", {}) if isinstance(data, dict) else {}
        message = f"{resp.status_code} {err.get('code', resp.reason)}: {err.get('message', '')}"
        if resp.status_code in (400, 413, 422):
            click.echo(f"mailgate: refused for good: {message}", err=True)
            return EX_DATAERR
        click.echo(f"mailgate: temporary failure: {message}; the MTA will retry", err=True)
        return EX_TEMPFAIL


# ---------------------------------------------------------------- mail

@click.group("mail", help="Support mail: poll IMAP, deliver the outbox, ingest a file.")
def mail_group() -> None:
    pass


def store_one(raw: bytes) -> str:
    """Ingest one raw message in a transaction of its own; returns the outcome."""
    from ..db import db
    from ..storage import get_storage
    from .mailin import ingest

    session = db.new_session(write=True)
    try:
        result = ingest(session, get_storage(), raw)
        session.commit()
        return result.outcome
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


@mail_group.command("poll")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most this many messages (IMAP_BATCH).")
@with_appcontext
def mail_poll(limit: int | None) -> None:
    """Fetch the messages not processed yet from the IMAP folder, store them, mark them done."""
    from .imap import poll_configured

    try:
        result = poll_configured(current_app.config, store_one, limit=limit)
    except ReleaseServerError as e:
        _fail(e)
    click.echo(str(result))
    if result.failed:
        sys.exit(1)


@mail_group.command("send-outbox")
@with_appcontext
def mail_send_outbox() -> None:
    """Deliver the due messages of the outbox now (the worker does this periodically)."""
    from .mailout import deliver_outbox

    click.echo(str(deliver_outbox()))


@mail_group.command("ingest")
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False), required=True)
@with_appcontext
def mail_ingest(files: tuple[str, ...]) -> None:
    """Store messages from .eml files as if they had arrived by mail."""
    for path in files:
        with open(path, "rb") as fh:
            raw = fh.read()
        try:
            click.echo(f"{path}: {store_one(raw)}")
        except ReleaseServerError as e:
            _fail(e)


# ---------------------------------------------------------------- tickets

@click.group("tickets", help="Support tickets.")
def tickets_group() -> None:
    pass


@tickets_group.command("list")
@click.option("--status", multiple=True, type=click.Choice(STATUSES), help="Only these statuses (repeatable).")
@click.option("--kind", default=None, type=click.Choice(KINDS), help="Only this kind.")
@click.option("--customer", default=None, help="Customer id or name.")
@click.option("--queue", type=click.Choice(["unassigned"]), default=None, help="Tickets with no customer yet.")
@click.option("--search", "-q", "q", default=None, help="Text search.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="JSON (a list of tickets).")
@with_appcontext
def tickets_list(status: tuple[str, ...], kind: str | None, customer: str | None, queue: str | None,
                 q: str | None, limit: int, as_json: bool) -> None:
    """List tickets, newest activity first."""
    from ..db import db
    from .services import TicketFilter, list_tickets

    try:
        rows, total = list_tickets(db.session, _staff(), TicketFilter(
            status=list(status), kind=kind, customer=customer, unassigned_queue=queue == "unassigned", q=q,
            per_page=limit))
    except ReleaseServerError as e:
        _fail(e)
    if as_json:
        import json

        click.echo(json.dumps([{"number": t.number, "status": t.status, "kind": t.kind, "priority": t.priority,
                                "customer": t.customer.name if t.customer else None, "subject": t.subject,
                                "created_at": t.created_at.isoformat(), "updated_at": t.updated_at.isoformat()}
                               for t in rows], indent=2))
        return
    for t in rows:
        who = t.customer.name if t.customer else "(unassigned)"
        click.echo(f"{t.number}  {t.status:<20} {t.kind:<11} {who:<24} {t.subject}")
    click.echo(f"{total} ticket(s)", err=True)


@tickets_group.command("show")
@click.argument("number")
@with_appcontext
def tickets_show(number: str) -> None:
    """Show a ticket and its timeline."""
    from ..db import db
    from . import services

    try:
        t = services.get_ticket(db.session, number)
    except ReleaseServerError as e:
        _fail(e)
    click.echo(f"{t.number} [{t.status}] {t.kind}/{t.priority}: {t.subject}")
    click.echo(f"customer: {t.customer.name if t.customer else '(unassigned)'}   requester: {t.requester_email or '-'}"
               f"   source: {t.source}")
    if t.description:
        click.echo(f"\n{t.description}\n")
    for e in services.timeline(db.session, t, _staff()):
        vis = "public" if e.public else "internal"
        click.echo(f"--- {e.at:%Y-%m-%d %H:%M} {e.kind} ({vis}) by {e.author}")
        if e.body:
            click.echo(e.body)
        elif e.data:
            click.echo(", ".join(f"{k}={v}" for k, v in e.data.items()))


def _ticket_action(number: str, action) -> None:  # noqa: ANN001
    from ..db import db
    from . import services

    try:
        ticket = services.get_ticket(db.session, number)
        action(db.session, ticket)
        db.commit()
    except ReleaseServerError as e:
        _fail(e)
    click.echo(f"{ticket.number}: {ticket.status}")


@tickets_group.command("reply")
@click.argument("number")
@click.option("--message", "-m", required=True, help="Public answer; mailed to the requester.")
@with_appcontext
def tickets_reply(number: str, message: str) -> None:
    """Answer the customer (mailed to the requester)."""
    from . import services

    _ticket_action(number, lambda s, t: services.staff_reply(s, t, _staff(), message))


@tickets_group.command("note")
@click.argument("number")
@click.option("--message", "-m", required=True, help="Internal note.")
@with_appcontext
def tickets_note(number: str, message: str) -> None:
    """Add an internal note (staff only)."""
    from . import services

    _ticket_action(number, lambda s, t: services.add_note(s, t, _staff(), message))


@tickets_group.command("request-info")
@click.argument("number")
@click.option("--message", "-m", required=True, help="What the customer should send.")
@with_appcontext
def tickets_request_info(number: str, message: str) -> None:
    """Ask the customer for information; the ticket waits for them."""
    from . import services

    _ticket_action(number, lambda s, t: services.request_information(s, t, _staff(), message))


@tickets_group.command("set")
@click.argument("number")
@click.option("--status", default=None, type=click.Choice(STATUSES), help="New status.")
@click.option("--kind", default=None, type=click.Choice(KINDS), help="New kind.")
@click.option("--priority", default=None, type=click.Choice(PRIORITIES), help="New priority.")
@click.option("--assignee", default=None, help="Staff username; '-' unassigns.")
@click.option("--customer", default=None)
@click.option("--comment", "-m", default=None, help="Public comment (e.g. with --status processed).")
@with_appcontext
def tickets_set(number: str, status: str | None, kind: str | None, priority: str | None, assignee: str | None,
                customer: str | None, comment: str | None) -> None:
    """Change a ticket's status, kind, priority, assignee or customer."""
    from . import services

    changes = {k: v for k, v in dict(status=status, kind=kind, priority=priority, customer=customer,
                                     comment=comment).items() if v is not None}
    if assignee is not None:
        changes["assignee"] = None if assignee == "-" else assignee
    _ticket_action(number, lambda s, t: services.update_ticket(s, t, _staff(), changes))


@tickets_group.command("department")
@click.argument("number")
@click.argument("department", type=click.Choice(DEPARTMENTS))
@click.option("--note", "-m", default="", help="Why (internal, on the timeline).")
@with_appcontext
def tickets_department(number: str, department: str, note: str) -> None:
    """Escalate a ticket to development, or hand it back to support."""
    from . import services

    _ticket_action(number, lambda s, t: services.set_department(s, t, _staff(), department, note))


@tickets_group.command("review")
@click.argument("number")
@click.argument("outcome", type=click.Choice(REVIEW_OUTCOMES))
@click.option("--reason", "-m", default="", help="Told to the customer; required when declined.")
@with_appcontext
def tickets_review(number: str, outcome: str, reason: str) -> None:
    """Record the review of a development request (the customer is told, in their language)."""
    from . import services

    _ticket_action(number, lambda s, t: services.review_request(s, t, _staff(), outcome, reason))


@tickets_group.command("phone")
@click.option("--customer", required=True, help="Customer id or name.")
@click.option("--contact", "contact", required=True, help="The caller's e-mail address (gets the number).")
@click.option("--name", "contact_name", default="", help="The caller's name.")
@click.option("--subject", required=True)
@click.option("--description", "-m", default="")
@click.option("--kind", default="incident", type=click.Choice(KINDS))
@click.option("--priority", default="normal", type=click.Choice(PRIORITIES))
@with_appcontext
def tickets_phone(customer: str, contact: str, contact_name: str, subject: str, description: str, kind: str,
                  priority: str) -> None:
    """Register a request received by phone on a contact's behalf (source "phone"); prints its number."""
    from ..db import db
    from ..fleet.services import get_customer
    from . import customers, services

    try:
        cust = get_customer(db.session, customer)
        ticket = services.create_ticket(db.session, _staff(), subject=subject, description=description, kind=kind,
                                        priority=priority, customer=cust,
                                        requester_email=customers.check_email(contact, "contact"),
                                        requester_name=contact_name, source="phone")
        db.commit()
    except ReleaseServerError as e:
        _fail(e)
    click.echo(ticket.number)


@tickets_group.command("merge")
@click.argument("number")
@click.option("--into", required=True, help="The ticket that stays.")
@with_appcontext
def tickets_merge(number: str, into: str) -> None:
    """Merge a ticket into another (its timeline moves there)."""
    from . import services

    _ticket_action(number, lambda s, t: services.merge(s, t, services.get_ticket(s, into), _staff()))


@tickets_group.command("auto-close")
@with_appcontext
def tickets_auto_close() -> None:
    """Close tickets processed more than AUTO_CLOSE_DAYS ago (the worker does this periodically)."""
    from ..db import db
    from .services import auto_close

    closed = auto_close(db.session)
    db.commit()
    click.echo(f"closed {len(closed)} ticket(s)")


# ---------------------------------------------------------------- customer users

@click.group("customer-users", help="Customer users (people at a customer who file requests).")
def customer_users_group() -> None:
    pass


@customer_users_group.command("create")
@click.argument("email")
@click.option("--customer", required=True, help="Customer id or name.")
@click.option("--name", default="")
@click.option("--password", default=None, help="For the portal (prompted when --password - is given).")
@with_appcontext
def customer_users_create(email: str, customer: str, name: str, password: str | None) -> None:
    """Create a customer user (portal login) for a customer."""
    from ..accounts.services import audit
    from ..db import db
    from ..fleet.services import get_customer
    from .customers import create_customer_user

    if password == "-":
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        user = create_customer_user(db.session, get_customer(db.session, customer), email, name, password)
        audit(db.session, ACTOR, "customer_user.create", f"customer-user:{user.email}", {"customer": customer})
        db.commit()
    except ReleaseServerError as e:
        _fail(e)
    click.echo(f"created customer user {user.id} {user.email}")


@customer_users_group.command("token")
@click.argument("email")
@click.option("--name", default="api", show_default=True)
@with_appcontext
def customer_users_token(email: str, name: str) -> None:
    """Issue an API token (rsc_...) to a customer user; printed once."""
    from ..accounts.services import audit
    from ..db import db
    from .customers import get_customer_user, issue_token

    try:
        user = get_customer_user(db.session, email)
        token, secret = issue_token(db.session, user, name)
        audit(db.session, ACTOR, "customer_token.create", f"customer-token:{token.prefix}",
              {"customer_user": user.email})
        db.commit()
    except ReleaseServerError as e:
        _fail(e)
    click.echo(secret)


@customer_users_group.command("set-password")
@click.argument("email")
@click.option("--password", default="-", show_default=True, help="The new portal password ('-': prompt).")
@with_appcontext
def customer_users_set_password(email: str, password: str) -> None:
    """A new portal password for a customer user; every portal session of the user ends."""
    from ..accounts.services import audit
    from ..db import db
    from .customers import get_customer_user, set_password

    if password == "-":
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        user = set_password(db.session, get_customer_user(db.session, email), password)
        audit(db.session, ACTOR, "customer_user.set_password", f"customer-user:{user.email}", {})
        db.commit()
    except ReleaseServerError as e:
        _fail(e)
    click.echo(f"new password set for {user.email}; every portal session of the user has ended")


@customer_users_group.command("disable")
@click.argument("email")
@with_appcontext
def customer_users_disable(email: str) -> None:
    """Disable a customer user: no more portal logins, and every portal session of the user ends."""
    from ..accounts.services import audit
    from ..db import db
    from .customers import get_customer_user, set_active

    try:
        user = set_active(db.session, get_customer_user(db.session, email), False)
        audit(db.session, ACTOR, "customer_user.disable", f"customer-user:{user.email}", {})
        db.commit()
    except ReleaseServerError as e:
        _fail(e)
    click.echo(f"disabled {user.email}")


COMMANDS = (mailgate, mail_group, tickets_group, customer_users_group)
