"""The ``release-server`` command line: a Flask CLI group bound to the app factory.

Server-side commands (``db``, ``users``, ``tokens``, ``components``, ``init``) run
inside the application. Client-side commands (``publish``) talk HTTP to a server and
do not load the application, so they work from a developer's machine or a CI job.
"""
from __future__ import annotations

import secrets
import sys
from datetime import datetime

import click
from flask import Flask, current_app
from flask.cli import FlaskGroup, with_appcontext

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
    """Print the database's migration revision."""
    from .db import db
    from .migrations import current_revision

    click.echo(current_revision(db.engine) or "(empty)")


@click.group("users", help="Staff users.")
def users_group() -> None:
    pass


@users_group.command("create")
@click.argument("username")
@click.option("--role", type=click.Choice(["admin", "publisher", "support"]), required=True)
@click.option("--email", default=None)
@click.option("--password", default=None, help="Default: generate one and print it once.")
@with_appcontext
def users_create(username: str, role: str, email: str | None, password: str | None) -> None:
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


@users_group.command("set-password")
@click.argument("username")
@click.option("--password", default=None, help="Default: generate one and print it once.")
@with_appcontext
def users_set_password(username: str, password: str | None) -> None:
    """Give a staff user a new password; every session of the user ends."""
    from .accounts import services
    from .db import db

    shown = password or secrets.token_urlsafe(12)
    try:
        user = services.set_password(db.session, services.get_user(db.session, username), shown)
        services.audit(db.session, _actor(), "user.set_password", f"user:{user.username}", {})
        db.commit()
    except ReleaseServerError as e:
        _fail(e)
    click.echo(f"new password set for {username}; every session of the user has ended")
    if not password:
        click.echo(f"password: {shown}")


@users_group.command("disable")
@click.argument("username")
@with_appcontext
def users_disable(username: str) -> None:
    """Disable a staff user: no more logins, and every session of the user ends."""
    from .accounts import services
    from .db import db

    try:
        user = services.set_active(db.session, services.get_user(db.session, username), False)
        services.audit(db.session, _actor(), "user.disable", f"user:{user.username}", {})
        db.commit()
    except ReleaseServerError as e:
        _fail(e)
    click.echo(f"disabled {username}")


@users_group.command("enable")
@click.argument("username")
@with_appcontext
def users_enable(username: str) -> None:
    from .accounts import services
    from .db import db

    try:
        user = services.set_active(db.session, services.get_user(db.session, username), True)
        services.audit(db.session, _actor(), "user.enable", f"user:{user.username}", {})
        db.commit()
    except ReleaseServerError as e:
        _fail(e)
    click.echo(f"enabled {username}")


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
@with_appcontext
def tokens_list() -> None:
    from .accounts import services
    from .db import db

    for t in services.list_tokens(db.session):
        state = "revoked" if t.revoked_at else "active"
        owner = t.user.username if t.user else "-"
        click.echo(f"{t.prefix}\t{t.role}\t{state}\t{owner}\t{t.name}")


@tokens_group.command("revoke")
@click.argument("prefix")
@with_appcontext
def tokens_revoke(prefix: str) -> None:
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


@click.group("customers", help="Customers (organisations).")
def customers_group() -> None:
    pass


@customers_group.command("create")
@click.argument("name")
@click.option("--email", "contact_email", default=None, help="Contact address for notifications.")
@click.option("--mail-domain", "mail_domains", multiple=True, help="Mail domain of the customer's users.")
@with_appcontext
def customers_create(name: str, contact_email: str | None, mail_domains: tuple[str, ...]) -> None:
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
    for cmd in (db_group, users_group, tokens_group, components_group, customers_group, enrollment_group,
                init_command):
        app.cli.add_command(cmd)


def _create_app() -> Flask:
    from . import create_app

    return create_app()


cli = FlaskGroup(create_app=_create_app, add_version_option=False,
                 help="Release server: publish signed releases, run the server, manage accounts.")


def _register_client_commands() -> None:
    from .client_cli import publish
    from .support.cli import mailgate

    cli.add_command(publish)
    cli.add_command(mailgate)


_register_client_commands()


def main() -> None:
    cli.main(prog_name="release-server")


if __name__ == "__main__":
    main()
