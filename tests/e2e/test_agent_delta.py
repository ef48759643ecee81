"""Delta updates end to end: real server, real agent, patches signed as TUF targets."""
from __future__ import annotations

import random
from typing import Any

from e2e.agent_harness import app_artifact

# a "library" that does not change between releases: random, so gzip cannot shrink it
LIBRARY = random.Random(16).randbytes(300_000)


def release(version: str, **extra: Any) -> bytes:
    return app_artifact(version, extra={"lib/engine.so": LIBRARY, "app/main.py": f"VERSION = {version!r}\n", **extra})


def generate(e2e, version: str, *from_versions: str) -> list[Any]:
    from release_server.db import db
    from release_server.deltas import services

    with e2e.app.app_context():
        return services.generate(lambda write: db.new_session(write=write), "app", version,
                                 from_versions=list(from_versions) or None)


def stored_report(e2e, version: str) -> Any:
    from sqlalchemy import select

    from release_server.db import db
    from release_server.fleet.models import UpdateReport

    with e2e.app.app_context():
        row = db.session.scalars(select(UpdateReport).where(UpdateReport.to_version == version,
                                                            UpdateReport.outcome == "success")).one()
        return {"bytes_downloaded": row.bytes_downloaded, "bytes_full": row.bytes_full, "details": dict(row.details)}


def delta_row(e2e, from_version: str, to_version: str) -> Any:
    from sqlalchemy import select

    from release_server.db import db
    from release_server.deltas.models import ReleaseDelta
    from release_server.releases.models import Release

    with e2e.app.app_context():
        frm = db.session.scalar(select(Release.id).where(Release.version == from_version))
        to = db.session.scalar(select(Release.id).where(Release.version == to_version))
        row = db.session.scalars(select(ReleaseDelta).where(ReleaseDelta.from_release_id == frm,
                                                            ReleaseDelta.to_release_id == to)).one()
        return {"target_path": row.target_path, "sha256": row.sha256, "length": row.length}


def install_first(e2e) -> None:
    e2e.publish("app", "1.0", release("1.0"))
    e2e.enroll()
    e2e.agent("update", "--yes", check=0)
    assert e2e.running_version() == "1.0"


def test_update_by_patch_reports_the_bytes_it_saved(e2e):
    install_first(e2e)
    full = e2e.publish("app", "1.1", release("1.1"))
    results = generate(e2e, "1.1")
    assert [(r.from_version, r.status) for r in results] == [("1.0", "ready")]
    patch_len = results[0].length
    assert patch_len < full["artifact"]["size"] * 0.1

    out = e2e.agent("update", "--yes", check=0).stdout
    assert "app: updated 1.0 -> 1.1" in out
    assert e2e.running_version() == "1.1"
    assert (e2e.install_dir / "app" / "current" / "app" / "main.py").read_text() == "VERSION = '1.1'\n"
    assert (e2e.install_dir / "app" / "current" / "lib" / "engine.so").read_bytes() == LIBRARY
    assert "patch app/deltas/1.0-1.1.rsdpatch applied" in e2e.agent_log()

    report = next(r for r in e2e.reports() if r["to_version"] == "1.1")
    assert report["outcome"] == "success"
    assert report["bytes_full"] == full["artifact"]["size"]
    assert report["bytes_downloaded"] == patch_len
    assert stored_report(e2e, "1.1")["details"]["transfer"] == "delta"

    # the figures: per release and across the fleet
    resp = e2e.client.get("/api/v1/fleet/transfer", headers=e2e.headers)
    assert resp.status_code == 200
    per_release = {(i["component"], i["version"]): i for i in resp.json["items"]}
    assert per_release[("app", "1.1")]["bytes_saved"] == full["artifact"]["size"] - patch_len
    assert resp.json["total"]["bytes_saved"] == full["artifact"]["size"] - patch_len
    assert per_release[("app", "1.0")]["bytes_saved"] == 0  # the first install was a full download

    # the next patch applies on top of the rebuilt release (the agent kept its tar stream)
    e2e.publish("app", "1.2", release("1.2"))
    assert [r.status for r in generate(e2e, "1.2", "1.1")] == ["ready"]
    e2e.agent("update", "--yes", check=0)
    assert e2e.running_version() == "1.2"
    assert stored_report(e2e, "1.2")["details"]["transfer"] == "delta"


def test_no_patch_from_the_installed_release_means_a_full_download(e2e):
    install_first(e2e)
    e2e.publish("app", "1.1", release("1.1"))
    full = e2e.publish("app", "1.2", release("1.2"))
    assert [r.status for r in generate(e2e, "1.2", "1.1")] == ["ready"]  # only 1.1 -> 1.2 exists

    e2e.agent("update", "--yes", check=0)
    assert e2e.running_version() == "1.2"
    report = stored_report(e2e, "1.2")
    assert report["details"]["transfer"] == "full"
    assert "delta_fallback" not in report["details"]
    assert report["bytes_downloaded"] == report["bytes_full"] == full["artifact"]["size"]
    assert "full download (no patch from 1.0)" in e2e.agent_log()


def test_a_tampered_patch_is_refused_by_tuf_and_the_full_artifact_is_used(e2e):
    from release_server.storage.base import blob_key_for

    install_first(e2e)
    full = e2e.publish("app", "1.1", release("1.1"))
    generate(e2e, "1.1")
    delta = delta_row(e2e, "1.0", "1.1")
    e2e.replace_blob(blob_key_for(delta["sha256"]), b"\0" * delta["length"])  # same length, other bytes

    e2e.agent("update", "--yes", check=0)
    assert e2e.running_version() == "1.1"
    report = stored_report(e2e, "1.1")
    assert report["details"]["transfer"] == "full"
    assert report["details"]["delta_fallback"].startswith("patch refused")
    assert report["bytes_downloaded"] == delta["length"] + full["artifact"]["size"]
    assert "downloading the full artifact instead" in e2e.agent_log()


def test_a_patch_whose_output_does_not_match_the_signed_hash_is_not_installed(e2e):
    from sqlalchemy import select

    from release_server.db import db
    from release_server.deltas.models import ReleaseDelta
    from release_server.signing import services as signing
    from release_server.signing.models import TufTarget

    install_first(e2e)
    e2e.publish("app", "1.1", release("1.1"))
    generate(e2e, "1.1")
    path = delta_row(e2e, "1.0", "1.1")["target_path"]
    with e2e.app.app_context():  # a correctly signed patch entry that promises another output
        db.session.scalars(select(ReleaseDelta).where(ReleaseDelta.target_path == path)).one().tar_sha256 = "ab" * 32
        change = signing._Change(db.session)
        change.resign_bins({db.session.get(TufTarget, path).role})
        change.finish()
        db.commit()

    e2e.agent("update", "--yes", check=0)
    assert e2e.running_version() == "1.1"
    assert (e2e.install_dir / "app" / "current" / "app" / "main.py").read_text() == "VERSION = '1.1'\n"
    report = stored_report(e2e, "1.1")
    assert report["details"]["transfer"] == "full"
    assert "does not match its signed hash" in report["details"]["delta_fallback"]


def test_a_patch_from_a_release_the_agent_does_not_have_is_not_chosen(e2e):
    import shutil

    install_first(e2e)
    full = e2e.publish("app", "1.1", release("1.1"))
    generate(e2e, "1.1")
    shutil.rmtree(e2e.state_dir / "artifacts")  # 1.0 runs, but its artifact is no longer here

    e2e.agent("update", "--yes", check=0)
    assert e2e.running_version() == "1.1"
    report = stored_report(e2e, "1.1")
    assert report["details"]["transfer"] == "full"
    assert "delta_fallback" not in report["details"]
    assert report["bytes_downloaded"] == full["artifact"]["size"]
    assert "the artifact of 1.0 is not kept here" in e2e.agent_log()


def test_an_interrupted_patch_download_is_resumed(e2e, backend):
    from release_server.storage import get_storage
    from release_server.storage.base import blob_key_for

    install_first(e2e)
    e2e.publish("app", "1.1", release("1.1"))
    generate(e2e, "1.1")
    delta = delta_row(e2e, "1.0", "1.1")
    with e2e.app.app_context():
        patch = get_storage().read(blob_key_for(delta["sha256"]))
    half = len(patch) // 2
    (e2e.state_dir / "downloads").mkdir(mode=0o700, exist_ok=True)
    (e2e.state_dir / "downloads" / f"{delta['sha256']}.1.0-1.1.rsdpatch.part").write_bytes(patch[:half])

    e2e.agent("update", "--yes", "-v", check=0)
    assert e2e.running_version() == "1.1"
    log = e2e.agent_log()
    assert f"at byte {half}" in log
    report = stored_report(e2e, "1.1")
    assert report["details"]["transfer"] == "delta"
    # HTTP Range is honoured on disk and on S3 alike: only the missing half travels
    assert report["bytes_downloaded"] == len(patch) - half
