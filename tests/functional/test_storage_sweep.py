"""The storage sweep: partial uploads and unreferenced blobs go after their grace period, on disk and on S3."""
from __future__ import annotations

import io
import json
import os
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from factories import create_component, publish


@pytest.fixture
def pub(auth):
    return auth.headers("publisher")


def _leave_crash_debris(app) -> dict[str, object]:
    """What kill -9 during publishes leaves: a spool file in incoming/ and a blob no release points at."""
    from release_server.storage import get_storage

    incoming = Path(app.config["UPLOAD_TMP_DIR"])
    incoming.mkdir(parents=True, exist_ok=True)
    spool = incoming / "upload-crashed"
    spool.write_bytes(b"p" * 3000)
    with app.app_context():
        orphan = get_storage().put_stream(io.BytesIO(b"o" * 5000))
    return {"spool": spool, "orphan": orphan.key}


def _blobs(app) -> set[str]:
    from release_server.storage import get_storage

    with app.app_context():
        return set(get_storage().list("sha256/"))


def test_sweep_removes_debris_after_the_grace_and_keeps_what_releases_use(app, client, pub):
    from release_server.db import db
    from release_server.storage import get_storage
    from release_server.storage.sweep import sweep

    assert create_component(client, pub, "server").status_code == 201
    assert publish(client, pub, "server", "1.0.0").status_code == 201
    released = _blobs(app)
    debris = _leave_crash_debris(app)
    with app.app_context():
        young = sweep(db.session, get_storage(), app.config["UPLOAD_TMP_DIR"], grace_seconds=3600)
    assert young.removed == [] and debris["spool"].exists() and debris["orphan"] in _blobs(app)

    later = datetime.now(timezone.utc) + timedelta(hours=2)
    with app.app_context():
        dry = sweep(db.session, get_storage(), app.config["UPLOAD_TMP_DIR"], grace_seconds=3600, now=later,
                    dry_run=True)
    assert {(i.kind, i.name) for i in dry.removed} == {("upload", str(debris["spool"])), ("blob", debris["orphan"])}
    assert debris["spool"].exists() and debris["orphan"] in _blobs(app)  # a dry run removes nothing

    with app.app_context():
        report = sweep(db.session, get_storage(), app.config["UPLOAD_TMP_DIR"], grace_seconds=3600, now=later)
    assert report.count("upload") == 1 and report.count("blob") == 1 and report.bytes_removed == 8000
    assert not debris["spool"].exists()
    assert _blobs(app) == released  # the release's artifact stays


def test_every_table_keeping_a_blob_counts_as_a_reference(app, client, pub):
    from release_server.db import Base, db
    from release_server.storage.sweep import referenced_blob_keys

    holders = {t.name for t in Base.metadata.sorted_tables if "blob_key" in t.columns}
    assert {"releases", "ticket_attachments", "mail_messages"} <= holders
    assert create_component(client, pub, "server").status_code == 201
    assert publish(client, pub, "server", "1.0.0").status_code == 201
    with app.app_context():
        assert referenced_blob_keys(db.session) == _blobs(app)


def test_worker_job_and_cli_report_what_they_removed(app, runner, caplog):
    from release_server.worker import jobs, run_job

    debris = _leave_crash_debris(app)
    old = time.time() - 3 * 86400
    os.utime(debris["spool"], (old, old))
    with app.app_context():
        job = next(j for j in jobs() if j.name == "storage-sweep")
        result = job.run()
    assert result.count("upload") == 1 and not debris["spool"].exists()
    assert debris["orphan"] in _blobs(app)  # younger than the default grace of a day

    out = runner.invoke(args=["storage", "sweep", "--dry-run", "--grace", "0", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["dry_run"] is True and [i["name"] for i in data["removed"]] == [debris["orphan"]]
    assert debris["orphan"] in _blobs(app)

    out = runner.invoke(args=["storage", "sweep", "--grace", "0"])
    assert out.exit_code == 0, out.output
    assert f"removed\tblob\t5000\t{debris['orphan']}" in out.output and "1 unreferenced blob(s)" in out.output
    assert debris["orphan"] not in _blobs(app)
    caplog.set_level("INFO", logger="release_server.worker")
    with app.app_context():
        assert run_job(job)
    assert any("storage-sweep: removed 0 partial upload(s)" in r.getMessage()
               for r in caplog.records)
