"""``release-server deltas generate|list``: the same services as the API."""
from __future__ import annotations

import json
import sys

import click
from flask.cli import with_appcontext

from ..errors import ReleaseServerError


@click.group("deltas", help="Delta patches between releases.")
def deltas_group() -> None:
    pass


@deltas_group.command("generate")
@click.option("--component", required=True)
@click.option("--version", "version", required=True, help="The release the patches lead to")
@click.option("--from", "from_versions", multiple=True,
              help="An earlier version to patch from (repeatable; default: the newest DELTA_FROM_RELEASES)")
@click.option("--force", is_flag=True, help="Try again pairs that were not kept or failed")
@with_appcontext
def deltas_generate(component: str, version: str, from_versions: tuple[str, ...], force: bool) -> None:
    """Make the missing patches to a release and sign them."""
    from ..accounts.services import audit
    from ..db import db
    from . import services

    try:
        results = services.generate(lambda write: db.new_session(write=write), component, version,
                                    from_versions=list(from_versions) or None, force=force)
        audit(db.session, "cli", "release.deltas", f"release:{component}/{version}",
              {"made": [r.from_version for r in results if r.status == "ready"]})
        db.commit()
    except ReleaseServerError as e:
        click.echo(f"error: {e.message}", err=True)
        sys.exit(1)
    if not results:
        click.echo("nothing to do: every patch to this release was already tried")
    for r in results:
        size = f"{r.length} of {r.full_length} bytes" if r.length is not None else "-"
        click.echo(f"{component} {r.from_version} -> {r.to_version}: {r.status} ({size})"
                   + (f": {r.reason}" if r.reason and r.status != "ready" else ""))


@deltas_group.command("list")
@click.option("--component", required=True)
@click.option("--version", "version", required=True)
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def deltas_list(component: str, version: str, as_json: bool) -> None:
    """Patches to a release, with their sizes."""
    from ..db import db
    from . import services

    try:
        release, rows = services.deltas_to(db.session, component, version)
    except ReleaseServerError as e:
        click.echo(f"error: {e.message}", err=True)
        sys.exit(1)
    items = [{"from_version": d.from_release.version, "status": d.status, "target_path": d.target_path,
              "length": d.length, "full_length": release.artifact_size} for d in rows]
    if as_json:
        click.echo(json.dumps(items, indent=2))
        return
    for i in items:
        click.echo(f"{i['from_version']} -> {version}: {i['status']} {i['length'] or '-'} of {i['full_length']}"
                   f" {i['target_path'] or ''}")
