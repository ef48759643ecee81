"""``release-server doctor``: check an instance and say what is wrong and how to fix it.

It runs the readiness checks (database, migrations, blob storage, online keys, TUF
expiry) and more that only an operator needs: blob storage is writable, no root key
lies beside the server, no TUF role is due for re-signing (root: within three months
of expiry), the mail server and IMAP mailbox accept a connection, and a worker holds a
live lease. Each finding is ``ok``, ``warn`` or ``fail`` with the fix; the exit status
is 1 when something failed (warnings alone: 0).
"""
from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import click
from flask import current_app
from flask.cli import with_appcontext

from . import health

ROOT_EXPIRY_WARNING = timedelta(days=90)


@dataclass(frozen=True)
class Finding:
    name: str
    level: str  # ok | warn | fail
    detail: str
    fix: str = ""


def _from_check(check: health.Check, level_on_failure: str = "fail") -> Finding:
    return Finding(check.name, "ok" if check.ok else level_on_failure, check.detail, check.fix)


def root_keys_beside_the_server() -> Finding:
    """Root private keys must stay offline: look in the instance and key folders for them."""
    from .db import db
    from .signing import keys as keys_mod
    from .signing import services as signing

    instance = Path(current_app.instance_path)
    folders = {instance, keys_mod.key_dir(current_app.config, current_app.instance_path)}
    root_keyids: set[str] = set()
    try:
        if signing.repository_ready(db.session):
            root = signing.current_root(db.session).signed
            root_keyids = set(root.roles["root"].keyids)
    except Exception:  # noqa: BLE001 - no root yet: fall back to the file names
        pass
    found = []
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*.pem")):
            if path.name.startswith("root-key-"):
                found.append(path)
                continue
            if root_keyids and not keys_mod.is_encrypted(path):
                try:
                    signer = keys_mod.load_private_file(path)
                except Exception:  # noqa: BLE001 - not a key we can read: not ours to judge
                    continue
                if signer.public_key.keyid in root_keyids:
                    found.append(path)
    if found:
        shown = ", ".join(str(p) for p in found[:5]) + (" ..." if len(found) > 5 else "")
        return Finding("root keys", "fail", f"root private key(s) on the server: {shown}",
                       "move them to offline media held by the key holders and delete them here; "
                       "if they may have been copied, rotate root (`release-server keys rotate-root`)")
    return Finding("root keys", "ok", "no root private key in the instance or key folder")


def tuf_roles_due() -> Finding:
    from .db import db
    from .models_common import utcnow
    from .signing import services as signing
    from .signing.models import TufRole

    session = db.session
    if not signing.repository_ready(session):
        return Finding("tuf roles", "fail", "no TUF root is loaded",
                       "run the key ceremony and `release-server tuf bootstrap 1.root.json`")
    margin = signing.settings().refresh_margin
    due = health.tuf_expiry_problems(session, margin)
    due = [d for d in due if not d.startswith("root ")]
    root = session.get(TufRole, "root")
    now = utcnow()
    notes = []
    level = "ok"
    if due:
        level = "warn"
        notes.append(f"due for re-signing: {', '.join(due[:5])}" + (" ..." if len(due) > 5 else ""))
    if root.expires - now <= ROOT_EXPIRY_WARNING:
        level = "fail" if root.expires <= now else "warn"
        notes.append(f"root v{root.version} expires on {root.expires:%Y-%m-%d}")
    if level == "ok":
        return Finding("tuf roles", "ok", f"no role due; root v{root.version} valid until {root.expires:%Y-%m-%d}")
    fix = []
    if due:
        fix.append("run `release-server tuf refresh` and keep a worker running")
    if any(n.startswith("root") for n in notes):
        fix.append("sign a new root with `release-server keys rotate-root` (root is never re-signed online)")
    return Finding("tuf roles", level, "; ".join(notes), "; ".join(fix))


def worker_lease() -> Finding:
    from .db import db
    from .models_common import utcnow
    from .worker import WORKER_LEASE, WorkerLease

    lease = db.session.get(WorkerLease, WORKER_LEASE)
    now = utcnow()
    if lease is None or not lease.holder or lease.expires_at is None:
        return Finding("worker", "fail", "no worker holds the lease: mails wait in the outbox, rollouts do not "
                       "widen, TUF roles are re-signed only lazily",
                       "run `release-server worker` (scripts/run starts one; or a systemd unit)")
    if lease.expires_at < now:
        ago = int((now - lease.expires_at).total_seconds())
        return Finding("worker", "fail", f"the worker lease of {lease.holder} expired {ago} s ago (stale)",
                       "the worker stopped or hangs: restart `release-server worker`")
    return Finding("worker", "ok", f"lease held by {lease.holder} until {lease.expires_at:%H:%M:%S} UTC")


def mail_connection() -> list[Finding]:
    cfg = current_app.config
    out = []
    if cfg.get("MAIL_BACKEND") == "smtp":
        from .support.mailbackends import backend_from_config

        backend = backend_from_config({**cfg, "SMTP_TIMEOUT": min(float(cfg.get("SMTP_TIMEOUT") or 30), 10.0)})
        where = f"{cfg.get('SMTP_HOST')}:{cfg.get('SMTP_PORT')}"
        try:
            backend.check_connection()  # type: ignore[attr-defined]
        except Exception as e:  # noqa: BLE001
            out.append(Finding("smtp", "fail", f"cannot connect to the mail server {where}: "
                               f"{e.__class__.__name__}: {e}"[:300],
                               "check SMTP_HOST, SMTP_PORT, SMTP_STARTTLS/SMTP_TLS, SMTP_USER and SMTP_PASSWORD"))
        else:
            out.append(Finding("smtp", "ok", f"{where} accepts a connection"))
    else:
        out.append(Finding("smtp", "warn", "MAIL_BACKEND is console: mails are written to the log, not sent",
                           "set MAIL_BACKEND=smtp and the SMTP_* settings for a real deployment"))
    if cfg.get("IMAP_HOST"):
        from .support.imap import ImapFetcher

        try:
            with ImapFetcher.from_config(cfg):
                pass
        except Exception as e:  # noqa: BLE001
            out.append(Finding("imap", "fail", f"cannot log in to {cfg.get('IMAP_HOST')}:{cfg.get('IMAP_PORT')}: "
                               f"{e.__class__.__name__}: {e}"[:300],
                               "check IMAP_HOST, IMAP_PORT, IMAP_SSL/IMAP_STARTTLS, IMAP_USER and IMAP_PASSWORD"))
        else:
            out.append(Finding("imap", "ok", f"{cfg.get('IMAP_HOST')} accepts the login"))
    return out


def run_checks() -> list[Finding]:
    database = health.check_database()
    findings = [_from_check(database)]
    if not database.ok:
        return findings
    migrations = health.check_migrations()
    findings.append(_from_check(migrations))
    findings.append(_from_check(health.check_storage_writable()))
    if migrations.ok:  # the rest reads tables that may not exist yet
        findings.append(_from_check(health.check_signing_keys()))
        findings.append(tuf_roles_due())
        findings.append(root_keys_beside_the_server())
        findings.append(worker_lease())
    findings.extend(mail_connection())
    return findings


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="JSON: a list of findings.")
@with_appcontext
def doctor_command(as_json: bool) -> None:
    """Check this instance and print what is wrong and how to fix it."""
    findings = run_checks()
    failed = any(f.level == "fail" for f in findings)
    if as_json:
        click.echo(json.dumps([asdict(f) for f in findings], indent=2))
    else:
        click.echo(f"instance: {current_app.instance_path}")
        for f in findings:
            click.echo(f"{f.level.upper():<4}  {f.name}: {f.detail}")
            if f.fix and f.level != "ok":
                click.echo(f"      fix: {f.fix}")
        warned = sum(f.level == "warn" for f in findings)
        click.echo(f"{sum(f.level == 'fail' for f in findings)} problem(s), {warned} warning(s)")
    sys.exit(1 if failed else 0)


def init_app(app: Any) -> None:
    app.cli.add_command(doctor_command)
