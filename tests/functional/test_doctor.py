"""``release-server doctor``: each problem found, named, with its fix; exit 1 when something failed."""
from __future__ import annotations

import json
import shutil
from datetime import timedelta
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from conftest import free_port


def doctor(runner: Any) -> tuple[int, dict[str, dict[str, str]]]:
    r = runner.invoke(args=["doctor", "--json"])
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    return r.exit_code, {f["name"]: f for f in json.loads(r.output)}


@pytest.fixture
def trial(app: Any, tmp_path: Any) -> Any:
    """A TUF repository whose root keys are kept outside the instance, and a live worker lease."""
    from release_server.db import db
    from release_server.signing import ceremony
    from release_server.worker import acquire_lease

    with app.app_context():
        result = ceremony.local_trial(db.session, tmp_path / "offline-media")
        db.commit()
        assert acquire_lease("node-1:99:abcd", 120)
    return result


class Sink:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        return "250 OK"


def test_a_healthy_instance(app: Any, runner: Any, trial: Any) -> None:
    port = free_port()
    ctl = Controller(Sink(), hostname="127.0.0.1", port=port)
    ctl.start()
    try:
        app.config.update(MAIL_BACKEND="smtp", SMTP_HOST="127.0.0.1", SMTP_PORT=port)
        code, found = doctor(runner)
        text = runner.invoke(args=["doctor"])
    finally:
        ctl.stop()
    assert code == 0, [f for f in found.values() if f["level"] != "ok"]
    assert {f["level"] for f in found.values()} == {"ok"}, found
    assert set(found) == {"database", "migrations", "storage writable", "signing keys", "tuf roles", "root keys",
                          "worker", "smtp"}
    assert text.exit_code == 0 and "0 problem(s), 0 warning(s)" in text.output


def test_root_keys_beside_the_server(app: Any, runner: Any, trial: Any, tmp_path: Any) -> None:
    from pathlib import Path

    key = sorted((tmp_path / "offline-media").glob("root-key-*.pem"))[0]
    shutil.copy(key, Path(app.instance_path) / "backup.pem")  # renamed: found by its key id
    code, found = doctor(runner)
    assert code == 1 and found["root keys"]["level"] == "fail"
    assert "backup.pem" in found["root keys"]["detail"] and "offline" in found["root keys"]["fix"]


def test_a_stale_or_missing_worker(app: Any, runner: Any, trial: Any) -> None:
    from release_server.db import db
    from release_server.models_common import utcnow
    from release_server.worker import WORKER_LEASE, WorkerLease, release_lease

    with app.app_context():
        db.session.get(WorkerLease, WORKER_LEASE).expires_at = utcnow() - timedelta(minutes=5)
        db.commit()
    code, found = doctor(runner)
    assert code == 1 and found["worker"]["level"] == "fail" and "stale" in found["worker"]["detail"]
    with app.app_context():
        release_lease("node-1:99:abcd")
    code, found = doctor(runner)
    assert found["worker"]["level"] == "fail" and "release-server worker" in found["worker"]["fix"]


def test_roles_near_expiry(app: Any, runner: Any, trial: Any) -> None:
    from release_server.db import db
    from release_server.models_common import utcnow
    from release_server.signing.models import TufRole

    with app.app_context():
        db.session.get(TufRole, "snapshot").expires = utcnow() + timedelta(hours=3)
        db.session.get(TufRole, "root").expires = utcnow() + timedelta(days=30)
        db.commit()
    code, found = doctor(runner)
    roles = found["tuf roles"]
    assert roles["level"] == "warn" and "snapshot" in roles["detail"] and "root v1 expires" in roles["detail"]
    assert "tuf refresh" in roles["fix"] and "rotate-root" in roles["fix"]


def test_mail_that_cannot_connect(app: Any, runner: Any, trial: Any) -> None:
    app.config.update(MAIL_BACKEND="smtp", SMTP_HOST="127.0.0.1", SMTP_PORT=free_port(),
                      IMAP_HOST="127.0.0.1", IMAP_PORT=free_port(), IMAP_USER="support", IMAP_SSL=False)
    code, found = doctor(runner)
    assert code == 1
    assert found["smtp"]["level"] == "fail" and "SMTP_HOST" in found["smtp"]["fix"]
    assert found["imap"]["level"] == "fail" and "IMAP_HOST" in found["imap"]["fix"]


def test_storage_not_writable_and_migrations_behind(app: Any, runner: Any, trial: Any) -> None:
    import sqlalchemy as sa

    from release_server.db import db
    from release_server.migrations import script_directory, script_heads
    from release_server.storage.s3 import S3Storage

    good = app.extensions["storage"]
    app.extensions["storage"] = S3Storage(bucket="gone", endpoint_url=f"http://127.0.0.1:{free_port()}",
                                          access_key_id="x", secret_access_key="x")
    try:
        code, found = doctor(runner)
    finally:
        app.extensions["storage"] = good
    assert code == 1 and found["storage writable"]["level"] == "fail"
    head = next(h for h in script_heads() if script_directory().get_revision(h).down_revision)
    parent = script_directory().get_revision(head).down_revision
    with app.app_context():
        with db.engine.begin() as conn:
            conn.execute(sa.text("update alembic_version set version_num = :p where version_num = :h"),
                         {"p": parent, "h": head})
        try:
            code, found = doctor(runner)
        finally:
            with db.engine.begin() as conn:
                conn.execute(sa.text("update alembic_version set version_num = :h where version_num = :p"),
                             {"p": parent, "h": head})
    assert code == 1 and found["migrations"]["level"] == "fail" and "db upgrade" in found["migrations"]["fix"]
