"""``release-server storage ...``: operator commands for blob storage."""
from __future__ import annotations

import json
import sys

import click
from flask import current_app
from flask.cli import with_appcontext

from ..errors import ReleaseServerError


@click.group("storage", help="Blob storage (local disk or S3).")
def storage_group() -> None:
    pass


@storage_group.command("sweep")
@click.option("--dry-run", is_flag=True, help="List what would be removed; remove nothing.")
@click.option("--grace", "grace_seconds", type=click.FloatRange(min=0), default=None,
              help="Only remove what is older than this many seconds (default: STORAGE_SWEEP_GRACE_SECONDS).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@with_appcontext
def sweep_command(dry_run: bool, grace_seconds: float | None, as_json: bool) -> None:
    """Remove partial uploads and blobs no record points at (left by crashed publishes)."""
    from ..db import db
    from . import get_storage
    from .sweep import sweep

    cfg = current_app.config
    grace = cfg["STORAGE_SWEEP_GRACE_SECONDS"] if grace_seconds is None else grace_seconds
    try:
        report = sweep(db.session, get_storage(), cfg.get("UPLOAD_TMP_DIR"), grace_seconds=grace, dry_run=dry_run)
    except ReleaseServerError as e:
        click.echo(f"error: {e.message}", err=True)
        sys.exit(1)
    finally:
        db.rollback()
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        for item in report.removed:
            click.echo(f"{'would remove' if dry_run else 'removed'}\t{item.kind}\t{item.size}\t{item.name}")
        click.echo(str(report))
        for err in report.errors:
            click.echo(f"error: {err}", err=True)
    sys.exit(1 if report.errors else 0)
