"""``release-server releases ...``: list, show, yank, unyank and promote releases (the API's services)."""
from __future__ import annotations

import json
import sys
from collections.abc import Callable

import click
from flask.cli import with_appcontext

from ..errors import ReleaseServerError


def _fail(e: ReleaseServerError) -> None:
    click.echo(f"error: {e.message}", err=True)
    sys.exit(1)


def _line(r) -> str:  # noqa: ANN001
    flags = [f for f, on in (("critical", r.critical), (f"yanked: {r.yank_reason}", r.yanked)) if on]
    return (f"{r.component.name} {r.version}\t{','.join(r.channel_names) or '-'}\t{r.created_at:%Y-%m-%d}\t"
            f"{r.artifact_filename} ({r.artifact_size} bytes)" + (f"\t[{'; '.join(flags)}]" if flags else ""))


def _json(r) -> dict:  # noqa: ANN001
    from flask import current_app

    from .api import release_out

    # the API's shape, with its links built against the server's public URL
    with current_app.test_request_context(base_url=current_app.config["PUBLIC_URL"]):
        return release_out(r).model_dump(mode="json")


@click.group("releases", help="Releases: list, show, yank, unyank, promote.")
def releases_group() -> None:
    pass


@releases_group.command("list")
@click.option("--component", default=None, help="Only this component (default: every component).")
@click.option("--channel", default=None, help="Only releases on this channel.")
@click.option("--json", "as_json", is_flag=True, help="JSON (a list of releases, as the API shows them).")
@with_appcontext
def releases_list(component: str | None, channel: str | None, as_json: bool) -> None:
    """List releases, newest first within each component."""
    from ..db import db
    from . import services

    try:
        components = [services.get_component(db.session, component)] if component else \
            services.list_components(db.session)
        rows = [r for c in components for r in services.releases_of(db.session, c, channel)]
    except ReleaseServerError as e:
        _fail(e)
    if as_json:
        click.echo(json.dumps([_json(r) for r in rows], indent=2))
        return
    for r in rows:
        click.echo(_line(r))


@releases_group.command("show")
@click.argument("component")
@click.argument("version")
@click.option("--json", "as_json", is_flag=True, help="JSON, as the API shows it.")
@with_appcontext
def releases_show(component: str, version: str, as_json: bool) -> None:
    """Show one release with its changelog."""
    from ..db import db
    from . import services

    try:
        r = services.get_release(db.session, component, version)
    except ReleaseServerError as e:
        _fail(e)
    if as_json:
        click.echo(json.dumps(_json(r), indent=2))
        return
    click.echo(_line(r))
    click.echo(f"sha256 {r.artifact_sha256}   published by {r.created_by}")
    if r.requires:
        click.echo("requires: " + ", ".join(f"{k} {v}" for k, v in r.requires.items()))
    if r.min_from_version:
        click.echo(f"min_from_version: {r.min_from_version}")
    if r.changelog:
        click.echo("\n" + r.changelog.rstrip())


def _change(component: str, version: str, action: str, fn: Callable, details: dict | None = None) -> None:
    from ..accounts.services import audit
    from ..db import db
    from . import services

    try:
        release = fn(db.session, services.get_release(db.session, component, version))
        audit(db.session, "cli", action, f"release:{component}/{release.version}", details or {})
        db.commit()
    except ReleaseServerError as e:
        _fail(e)
    click.echo(_line(release))


@releases_group.command("yank")
@click.argument("component")
@click.argument("version")
@click.option("--reason", required=True, help="Why (kept with the release, shown to staff).")
@with_appcontext
def releases_yank(component: str, version: str, reason: str) -> None:
    """Yank a release: never offered again; installations on it go back to the newest good one."""
    from . import services

    _change(component, version, "release.yank", lambda s, r: services.yank(s, r, reason), {"reason": reason})


@releases_group.command("unyank")
@click.argument("component")
@click.argument("version")
@with_appcontext
def releases_unyank(component: str, version: str) -> None:
    """Undo a yank."""
    from . import services

    _change(component, version, "release.unyank", services.unyank)


@releases_group.command("promote")
@click.argument("component")
@click.argument("version")
@click.option("--channel", required=True, help="The channel to add the release to.")
@with_appcontext
def releases_promote(component: str, version: str, channel: str) -> None:
    """Add a release to a channel (e.g. from beta to stable)."""
    from . import services

    _change(component, version, "release.promote", lambda s, r: services.promote(s, r, channel),
            {"channel": channel})
