"""Health: ``/healthz`` (the process answers) and ``/readyz`` (it can do its work).

``/readyz`` runs :func:`readiness_checks`: the database answers, blob storage answers,
the online signing keys the TUF root names can be loaded, no TUF role is within
``READY_TUF_MARGIN`` (a fraction of its lifetime, default 0.1) of expiring, and the
database schema has every migration this version ships. It answers 200 with each check
when all pass, 503 naming the failing ones otherwise, so a load balancer or systemd
takes a node out until it is fixed. Each check is a small function returning a
:class:`Check`, shared with ``release-server doctor``.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from flask import Flask, Response, current_app, jsonify

from . import __version__


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def check_database() -> Check:
    from sqlalchemy import text

    from .db import db

    try:
        with db.engine.connect() as conn:
            conn.execute(text("select 1"))
    except Exception as e:  # noqa: BLE001 - any failure means "not ready"
        return Check("database", False, f"the database does not answer ({e.__class__.__name__})",
                     "check DATABASE_URL and that the database server is running")
    return Check("database", True, "answers")


def check_migrations() -> Check:
    from .db import db
    from .migrations import pending

    try:
        behind = pending(db.engine)
    except Exception as e:  # noqa: BLE001
        return Check("migrations", False, f"cannot read the schema version ({e.__class__.__name__})",
                     "check the database")
    if behind:
        return Check("migrations", False, f"{len(behind)} migration(s) not applied: {', '.join(behind)}",
                     "run `release-server db upgrade`")
    return Check("migrations", True, "current")


def check_storage() -> Check:
    from .storage import get_storage

    try:
        storage = get_storage()
        storage.exists("health/probe")
    except Exception as e:  # noqa: BLE001
        return Check("storage", False, f"blob storage does not answer ({e.__class__.__name__}: {e})"[:300],
                     "check STORAGE_BACKEND and its settings (STORAGE_PATH, or the S3_* settings)")
    return Check("storage", True, "answers")


def check_storage_writable() -> Check:
    """Write, read back and delete a small blob (doctor only: readiness stays read-only)."""
    from .storage import get_storage

    key = f"health/write-probe-{time.time_ns()}"
    try:
        storage = get_storage()
        storage.write(key, b"probe")
        if storage.read(key) != b"probe":
            raise OSError("read back different bytes")
        storage.delete(key)
    except Exception as e:  # noqa: BLE001
        return Check("storage writable", False, f"cannot write to blob storage ({e.__class__.__name__}: {e})"[:300],
                     "check the permissions of STORAGE_PATH, or the bucket's credentials and policy")
    return Check("storage writable", True, "a blob was written, read back and deleted")


_KEYS_CACHE_SECONDS = 30.0


def check_signing_keys() -> Check:
    from .db import db
    from .signing import services as signing

    cache = current_app.extensions.setdefault("health_keys_cache", {})
    if cache.get("ok_until", 0.0) > time.monotonic():
        return Check("signing keys", True, cache["detail"])
    session = db.new_session(write=False)
    try:
        if not signing.repository_ready(session):
            return Check("signing keys", False, "no TUF root is loaded",
                         "run the key ceremony and `release-server tuf bootstrap 1.root.json`")
        signing.load_server_signers(session)
    except Exception as e:  # noqa: BLE001
        message = getattr(e, "message", None) or f"{e.__class__.__name__}: {e}"
        return Check("signing keys", False, f"an online key cannot be loaded: {message}"[:400],
                     "copy the key folder (TUF_KEY_DIR) to this node or set TUF_<ROLE>_KEY_URI")
    finally:
        session.close()
    detail = "targets, snapshot and timestamp keys loaded"
    cache.update(ok_until=time.monotonic() + _KEYS_CACHE_SECONDS, detail=detail)
    return Check("signing keys", True, detail)


def tuf_expiry_problems(session: Any, margin: float, now: Any = None) -> list[str]:
    """Roles that expire within ``margin`` of their lifetime (or have expired): "name (in N h)"."""
    from sqlalchemy import select

    from .models_common import utcnow
    from .signing import metadata as md
    from .signing import services as signing
    from .signing.models import TufRole

    now = now or utcnow()
    cfg = signing.settings()
    problems = []
    for row in session.scalars(select(TufRole)):
        if row.version == 0:
            continue
        role = "targets" if row.name.startswith(md.BINS_PREFIX + "-") else row.name
        left = (row.expires - now).total_seconds()
        if left <= cfg.lifetime(role) * margin:
            problems.append(f"{row.name} ({'expired' if left <= 0 else f'expires in {left / 3600:.1f} h'})")
    return problems


def check_tuf_expiry(margin: float | None = None) -> Check:
    from .db import db

    margin = float(current_app.config.get("READY_TUF_MARGIN", 0.1) if margin is None else margin)
    session = db.new_session(write=False)
    try:
        problems = tuf_expiry_problems(session, margin)
    except Exception as e:  # noqa: BLE001
        return Check("tuf expiry", False, f"cannot read the TUF roles ({e.__class__.__name__})", "check the database")
    finally:
        session.close()
    if problems:
        fix = "run `release-server tuf refresh` and keep a `release-server worker` running"
        if any(p.startswith("root ") for p in problems):
            fix = "sign a new root with `release-server keys rotate-root` (root cannot be re-signed online)"
        shown = ", ".join(problems[:5]) + (f" and {len(problems) - 5} more" if len(problems) > 5 else "")
        return Check("tuf expiry", False, f"TUF role(s) near expiry: {shown}", fix)
    return Check("tuf expiry", True, f"no role within {margin:.0%} of its lifetime of expiring")


def readiness_checks() -> list[Check]:
    database = check_database()
    if not database.ok:
        return [database, check_storage()]
    return [database, check_migrations(), check_storage(), check_signing_keys(), check_tuf_expiry()]


def init_app(app: Flask) -> None:
    @app.get("/healthz")
    def healthz() -> Any:
        return {"status": "ok", "version": __version__}

    @app.get("/readyz")
    def readyz() -> Response:
        checks = readiness_checks()
        ready = all(c.ok for c in checks)
        resp = jsonify({"status": "ready" if ready else "not ready", "version": __version__,
                        "checks": [asdict(c) for c in checks]})
        resp.status_code = 200 if ready else 503
        resp.headers["Cache-Control"] = "no-store"
        return resp
