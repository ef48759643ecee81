"""The ``release-server`` command group: a Flask CLI group bound to the app factory.

Server-side commands (``db``, ``users``, ``tokens``, ``components``, ``init``) run
inside the application. Client-side commands (``publish``) talk HTTP to a server and
do not load the application, so they work from a developer's machine or a CI job;
named first on the command line, they start without this module (:mod:`.cli`).
"""
from __future__ import annotations

import os
import secrets
import sys
from datetime import datetime

import click
from flask import Flask, current_app
from flask.cli import FlaskGroup, ScriptInfo, with_appcontext

from . import instance_path_default
from .errors import ReleaseServerError


def _fail(e: ReleaseServerError) -> None:
    click.echo(f"error: {e.message}", err=True)
    sys.exit(1)


def _actor() -> str:
    return "cli"


@click.group("db", help="Database schema (Alembic migrations).")
def db_group() -> None:
    pass


@db_group.command("upgrade")
@click.argument("revision", default="heads")
@with_appcontext
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION (default: every head)."""
    from .db import db
    from .migrations import upgrade

    upgrade(db.engine, revision)
    click.echo(f"database at {revision}")


@db_group.command("downgrade")
@click.argument("revision")
@with_appcontext
def db_downgrade(revision: str) -> None:
    """Revert migrations down to REVISION."""
    from .db import db
    from .migrations import downgrade

    downgrade(db.engine, revision)
    click.echo(f"database at {revision}")


@db_group.command("current")
@with_appcontext
def db_current() -> None:
    """Print the revisions the database is at (one per line; several after merged branches)."""
    from .db import db
    from .migrations import current_heads, pending

    heads = current_heads(db.engine)
    for head in heads:
        click.echo(head)
    if not heads:
        click.echo("(empty: run `release-server db upgrade`)")
    behind = pending(db.engine)
    if behind:
        click.echo(f"{len(behind)} migration(s) not applied: {', '.join(behind)}; run `release-server db upgrade`",
                   err=True)


@db_group.command("history")
@with_appcontext
def db_history() -> None:
    """List every migration, newest first, marking what the database has applied."""
    from .db import db
    from .migrations import history

    for entry in history(db.engine):
        parents = ", ".join(entry.down_revisions) or "base"
        marks = []
        if entry.is_head:
            marks.append("head")
        if entry.current:
            marks.append("current")
        state = "applied" if entry.applied else "pending"
        suffix = f" ({', '.join(marks)})" if marks else ""
        click.echo(f"{parents} -> {entry.revision}{suffix} [{state}] {entry.message}")


@click.group("users", help="Staff users.")
def users_group() -> None:
    pass


@users_group.command("create")
@click.argument("username")
@click.option("--role", type=click.Choice(["admin", "publisher", "support"]), required=True)
@click.option("--email", default=None, help="Contact address.")
@click.option("--password", default=None, help="Default: generate one and print it once.")
@with_appcontext
def users_create(username: str, role: str, email: str | None, password: str | None) -> None:
    """Create a staff user."""
    from .accounts import services
    from .db import db

    shown = password or secrets.token_urlsafe(12)
    try:
        user = services.create_user(db.session, username, shown, role, email)
        services.audit(db.session, _actor(), "user.create", f"user:{user.username}", {"role": role})
        db.commit()
    except ReleaseServerError as e:
        _fail(e)
    click.echo(f"created {role} user {username}")
    if not password:
        click.echo(f"password: {shown}")


@users_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON (a list of users).")
@with_appcontext
def users_list(as_json: bool) -> None:
    """List staff users with their role and whether they are active."""
    import json

    from .accounts import services
    from .db import db

    rows = services.list_users(db.session)
    if as_json:
        click.echo(json.dumps([{"username": u.username, "role": u.role, "email": u.email, "active": u.active,
                                "created_at": u.created_at.isoformat()} for u in rows], indent=2))
        return
    for u in rows:
        click.echo(f"{u.username}\t{u.role}\t{'active' if u.active else 'disabled'}\t{u.email or '-'}")


def _user_change(username: str, action: str, change, details: dict | None = None) -> None:  # noqa: ANN001
    from .accounts import services
    from .db import db

    try:
        user = services.get_user(db.session, username)
        change(db.session, user)
        services.audit(db.session, _actor(), action, f"user:{user.username}", details or {})
        db.commit()
    except ReleaseServerError as e:
        _fail(e)


@users_group.command("disable")
@click.argument("username")
@with_appcontext
def users_disable(username: str) -> None:
    """Disable a user: no more logins, and their API tokens stop working."""
    from .accounts import services

    _user_change(username, "user.disable", lambda s, u: services.set_active(s, u, False))
    click.echo(f"disabled {username}")


@users_group.command("enable")
@click.argument("username")
@with_appcontext
def users_enable(username: str) -> None:
    """Enable a disabled user again."""
    from .accounts import services

    _user_change(username, "user.enable", lambda s, u: services.set_active(s, u, True))
    click.echo(f"enabled {username}")


@users_group.command("set-password")
@click.argument("username")
@click.option("--password", default=None, help="The new password (default: generate one and print it once).")
@click.option("--password-env", default=None, metavar="VAR", help="Read the new password from this variable.")
@with_appcontext
def users_set_password(username: str, password: str | None, password_env: str | None) -> None:
    """Set a new password, e.g. for a lost admin password (run on the server, against its instance)."""
    from .accounts import services

    if password_env:
        password = os.environ.get(password_env)
        if not password:
            click.echo(f"error: {password_env} is not set", err=True)
            sys.exit(1)
    shown = password or secrets.token_urlsafe(12)
    _user_change(username, "user.set_password", lambda s, u: services.set_password(s, u, shown))
    click.echo(f"new password for {username} set")
    if not password:
        click.echo(f"password: {shown}")


@click.group("tokens", help="API tokens.")
def tokens_group() -> None:
    pass


@tokens_group.command("create")
@click.option("--name", required=True)
@click.option("--role", type=click.Choice(["admin", "publisher", "support"]), required=True)
@click.option("--user", "username", default=None, help="Owner (a staff user).")
@click.option("--expires", type=click.DateTime(), default=None, help="Expiry (UTC), e.g. 2027-01-31.")
@with_appcontext
def tokens_create(name: str, role: str, username: str | None, expires: datetime | None) -> None:
    """Issue a token; its secret is printed once and cannot be shown again."""
    from datetime import timezone

    from .accounts import services
    from .db import db

    try:
        user = services.get_user(db.session, username) if username else None
        issued = services.issue_token(db.session, name=name, role=role, user=user,
                                      expires_at=expires.replace(tzinfo=timezone.utc) if expires else None)
        services.audit(db.session, _actor(), "token.create", f"token:{issued.token.prefix}", {"role": role})
        db.commit()
    except ReleaseServerError as e:
        _fail(e)
    click.echo(issued.secret)
    click.echo(f"(prefix {issued.token.prefix}; store the token now, it will not be shown again)", err=True)


@tokens_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON (a list of tokens; never their secrets).")
@with_appcontext
def tokens_list(as_json: bool) -> None:
    """List API tokens (prefix, role, state, owner, name)."""
    import json

    from .accounts import services
    from .db import db

    rows = services.list_tokens(db.session)
    if as_json:
        click.echo(json.dumps([{"prefix": t.prefix, "role": t.role, "name": t.name,
                                "state": "revoked" if t.revoked_at else "active",
                                "user": t.user.username if t.user else None,
                                "expires_at": t.expires_at.isoformat() if t.expires_at else None} for t in rows],
                              indent=2))
        return
    for t in rows:
        state = "revoked" if t.revoked_at else "active"
        owner = t.user.username if t.user else "-"
        click.echo(f"{t.prefix}\t{t.role}\t{state}\t{owner}\t{t.name}")


@tokens_group.command("revoke")
@click.argument("prefix")
@with_appcontext
def tokens_revoke(prefix: str) -> None:
    """Revoke a token by its prefix."""
    from .accounts import services
    from .db import db

    try:
        services.revoke_token(db.session, prefix)
        services.audit(db.session, _actor(), "token.revoke", f"token:{prefix}")
        db.commit()
    except ReleaseServerError as e:
        _fail(e)
    click.echo(f"revoked {prefix}")


@click.group("components", help="Components of the application.")
def components_group() -> None:
    pass


@components_group.command("create")
@click.argument("name")
@click.option("--description", default="")
@with_appcontext
def components_create(name: str, description: str) -> None:
    """Create a component."""
    from .accounts.services import audit
    from .db import db
    from .releases import services
    from .releases.schemas import check_name

    try:
        check_name(name)
    except ValueError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(1)
    try:
        services.create_component(db.session, name, description)
        audit(db.session, _actor(), "component.create", f"component:{name}")
        db.commit()
    except ReleaseServerError as e:
        _fail(e)
    click.echo(f"created component {name}")


@components_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON (a list of components).")
@with_appcontext
def components_list(as_json: bool) -> None:
    """List components with their newest release."""
    import json

    from .db import db
    from .releases import services

    rows = []
    for c in services.list_components(db.session):
        releases = services.releases_of(db.session, c, include_yanked=False)
        rows.append({"name": c.name, "description": c.description or "",
                     "latest": releases[0].version if releases else None,
                     "releases": len(services.releases_of(db.session, c))})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(f"{row['name']}\t{row['latest'] or '-'}\t{row['releases']} release(s)\t{row['description']}")


@click.group("customers", help="Customers (organisations).")
def customers_group() -> None:
    pass


@customers_group.command("create")
@click.argument("name")
@click.option("--email", "contact_email", default=None, help="Contact address for notifications.")
@click.option("--mail-domain", "mail_domains", multiple=True, help="Mail domain of the customer's users.")
@with_appcontext
def customers_create(name: str, contact_email: str | None, mail_domains: tuple[str, ...]) -> None:
    """Create a customer."""
    from .accounts.services import audit
    from .db import db
    from .fleet import services

    try:
        c = services.create_customer(db.session, name, contact_email, mail_domains)
        audit(db.session, _actor(), "customer.create", f"customer:{c.id}", {"name": name})
        db.commit()
    except ReleaseServerError as e:
        _fail(e)
    click.echo(f"created customer {c.id} {name}")


def _customer_json(c) -> dict:  # noqa: ANN001
    return {"id": c.id, "name": c.name, "contact_email": c.contact_email,
            "mail_domains": list(c.mail_domains or []), "created_at": c.created_at.isoformat()}


@customers_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON (a list of customers).")
@with_appcontext
def customers_list(as_json: bool) -> None:
    """List customers with their number of installations."""
    import json

    from sqlalchemy import func, select

    from .db import db
    from .fleet import services
    from .fleet.models import Installation

    counts = dict(db.session.execute(select(Installation.customer_id, func.count()).group_by(
        Installation.customer_id)).all())
    rows = [{**_customer_json(c), "installations": counts.get(c.id, 0)} for c in services.list_customers(db.session)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(f"{row['id']}\t{row['name']}\t{row['installations']} installation(s)\t{row['contact_email'] or '-'}")


@customers_group.command("show")
@click.argument("customer")
@click.option("--json", "as_json", is_flag=True, help="JSON: the customer with its installations.")
@with_appcontext
def customers_show(customer: str, as_json: bool) -> None:
    """Show a customer (by id or name) with its installations."""
    import json

    from .db import db
    from .fleet import services

    try:
        c = services.get_customer(db.session, customer)
        rows, _total = services.list_installations(db.session, customer=str(c.id), per_page=100_000)
    except ReleaseServerError as e:
        _fail(e)
    insts = [{"id": i.id, "name": i.name, "channel": i.channel, "health": services.health_of(i),
              "versions": {v.component: v.version for v in i.components},
              "last_seen_at": i.last_seen_at.isoformat() if i.last_seen_at else None} for i in rows]
    if as_json:
        click.echo(json.dumps({**_customer_json(c), "installations": insts}, indent=2))
        return
    click.echo(f"{c.id} {c.name}   contact: {c.contact_email or '-'}   mail domains: "
               f"{', '.join(c.mail_domains or []) or '-'}")
    for i in insts:
        click.echo(f"  {i['id']}  {i['name']}  {i['channel']}  {i['health']}  last seen {i['last_seen_at'] or 'never'}")


@click.group("enrollment", help="Enrollment tokens for installations.")
def enrollment_group() -> None:
    pass


@enrollment_group.command("create")
@click.option("--customer", required=True, help="Customer id or name.")
@click.option("--max-uses", type=click.IntRange(min=1), default=None)
@click.option("--expires", type=click.DateTime(), default=None, help="Expiry (UTC), e.g. 2027-01-31.")
@with_appcontext
def enrollment_create(customer: str, max_uses: int | None, expires: datetime | None) -> None:
    """Create a token; the agent enrolls with it (printed once)."""
    from datetime import timezone

    from .accounts.services import audit
    from .db import db
    from .fleet import services

    try:
        cust = services.get_customer(db.session, customer)
        token, secret = services.create_enrollment_token(
            db.session, cust, actor=_actor(), max_uses=max_uses,
            expires_at=expires.replace(tzinfo=timezone.utc) if expires else None)
        audit(db.session, _actor(), "enrollment.create", f"enrollment:{token.prefix}", {"customer": cust.name})
        db.commit()
    except ReleaseServerError as e:
        _fail(e)
    click.echo(secret)
    click.echo(f"(enrollment token {token.prefix} for {cust.name}; shown once)", err=True)


@click.command("init")
@click.option("--admin", "admin_name", default="admin", show_default=True)
@with_appcontext
def init_command(admin_name: str) -> None:
    """Prepare the instance: migrate, and on first run create an admin and print its credentials once."""
    from sqlalchemy import func, select

    from .accounts import services
    from .accounts.models import User
    from .db import db
    from .migrations import upgrade

    upgrade(db.engine)
    if db.session.scalar(select(func.count(User.id))) == 0:
        password = secrets.token_urlsafe(12)
        services.create_user(db.session, admin_name, password, "admin")
        issued = services.issue_token(db.session, name="initial admin token", role="admin",
                                      user=services.get_user(db.session, admin_name))
        services.audit(db.session, "init", "user.create", f"user:{admin_name}", {"role": "admin"})
        db.commit()
        click.echo("First run: created the admin account (shown once, keep it safe):")
        click.echo(f"  user:      {admin_name}")
        click.echo(f"  password:  {password}")
        click.echo(f"  API token: {issued.secret}")
    else:
        click.echo("Instance ready (accounts already exist).")
    click.echo(f"Instance folder: {current_app.instance_path}")


def init_app(app: Flask) -> None:
    from .releases.cli import releases_group

    for cmd in (db_group, users_group, tokens_group, components_group, customers_group, enrollment_group,
                init_command, releases_group):
        app.cli.add_command(cmd)


def _create_app() -> Flask:
    from . import create_app

    # commands serve no checks: the hot path's caches stay cold (release_server.warmup)
    return create_app({"WARM_CACHES": False})


#: Commands that work on a database whose schema is behind (they are how it catches up).
_SCHEMA_EXEMPT = {"db", "init", "doctor"}


def _set_instance(_ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value:
        os.environ["RELEASE_SERVER_INSTANCE_PATH"] = os.path.abspath(value)


class ReleaseServerGroup(FlaskGroup):
    """The top-level group: finds the instance, and turns operator mistakes into one line.

    The instance is ``--instance PATH``, else ``RELEASE_SERVER_INSTANCE_PATH``, else
    ``./instance``; only ``init`` creates it. A configuration error, an unreachable
    database or a schema that is behind ends the command with one line naming the
    setting and the fix, and exit status 1, never a traceback.
    """

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        rv = click.Group.get_command(self, ctx, name)
        if rv is not None:
            return rv
        if name == "init":
            os.makedirs(instance_path_default(), exist_ok=True)
        try:
            cmd = super().get_command(ctx, name)
        except ReleaseServerError as e:
            _fail(e)
        if cmd is not None and name not in _SCHEMA_EXEMPT:
            _require_current_schema()
        return cmd

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = set(click.Group.list_commands(self, ctx))
        try:
            names.update(ctx.ensure_object(ScriptInfo).load_app().cli.list_commands(ctx))
        except ReleaseServerError as e:
            click.echo(f"({e.message}; the commands that need an instance are not listed)", err=True)
        return sorted(names)

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except ReleaseServerError as e:
            _fail(e)
        except Exception as e:
            if not _is_database_error(e):
                raise
            click.echo(f"error: {database_error_message(e)}", err=True)
            sys.exit(1)
        return None


def _is_database_error(e: BaseException) -> bool:
    """An SQLAlchemy error; never one while SQLAlchemy is not loaded (client commands such as
    ``publish`` start without it)."""
    exc = sys.modules.get("sqlalchemy.exc")
    return exc is not None and isinstance(e, exc.SQLAlchemyError)


def database_error_message(e: BaseException) -> str:
    """One line for a database failure: which setting to look at, or which command to run."""
    from sqlalchemy.exc import OperationalError, ProgrammingError

    url = current_app.config.get("DATABASE_URL", "") if current_app else os.environ.get("DATABASE_URL", "")
    text = str(getattr(e, "orig", None) or e).strip().splitlines()[0] if str(e).strip() else e.__class__.__name__
    lowered = text.lower()
    if ("no such table" in lowered or "no such column" in lowered or "does not exist" in lowered
            and ("relation" in lowered or "column" in lowered)):
        return (f"the database schema is behind this version ({text}); "
                "run `release-server db upgrade`")
    if isinstance(e, (OperationalError,)) or not isinstance(e, ProgrammingError):
        return (f"cannot use the database at DATABASE_URL={_safe_url(url)} ({text}); "
                "check DATABASE_URL (environment or instance/config.toml) and that the database server is running")
    return f"database error ({text})"


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is shown without its credentials part
        return url.split("@")[-1]


def _require_current_schema() -> None:
    """Stop with one line when the database has migrations to apply (or cannot be reached)."""
    from sqlalchemy.exc import SQLAlchemyError

    from .db import db
    from .migrations import pending

    try:
        behind = pending(db.engine)
    except SQLAlchemyError as e:
        click.echo(f"error: {database_error_message(e)}", err=True)
        sys.exit(1)
    if behind:
        click.echo(f"error: the database schema is behind this version ({len(behind)} migration(s) not applied: "
                   f"{', '.join(behind)}); run `release-server db upgrade`", err=True)
        sys.exit(1)


cli = ReleaseServerGroup(create_app=_create_app, add_version_option=False,
                         help="Release server: publish signed releases, run the server, manage accounts.")


def _set_verbose(_ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    from .logs import quiet_libraries

    if value:
        os.environ["RELEASE_SERVER_LOG_LIBRARIES"] = "true"
    quiet_libraries(verbose=value)


cli.params.append(click.Option(
    ["--instance"], metavar="PATH", expose_value=False, is_eager=True, callback=_set_instance,
    help="The instance folder (default: $RELEASE_SERVER_INSTANCE_PATH, else ./instance)."))
cli.params.append(click.Option(
    ["-v", "--verbose"], is_flag=True, expose_value=False, is_eager=True, callback=_set_verbose,
    help="Show the libraries' log lines too (python-tuf, Alembic, ...); by default only their warnings."))


def _register_client_commands() -> None:
    from .cli import CLIENT_COMMANDS, client_command
    from .support.cli import mailgate

    for name in CLIENT_COMMANDS:
        cli.add_command(client_command(name))
    cli.add_command(mailgate)


_register_client_commands()


