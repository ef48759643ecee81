"""Yanked releases: the agent goes down only because the yank is in signed metadata."""
from __future__ import annotations


def test_yank_in_signed_metadata_downgrades_to_the_newest_good_release(e2e):
    e2e.publish("app", "1.0")
    e2e.publish("app", "1.1")
    e2e.enroll()
    e2e.agent("update", "--yes", check=0)
    assert e2e.running_version() == "1.1"

    r = e2e.client.post("/api/v1/components/app/releases/1.1/yank", json={"reason": "corrupts invoices"},
                        headers=e2e.headers)
    assert r.status_code == 200
    out = e2e.agent("check", check=0).stdout
    assert "app: 1.1 -> 1.0" in out
    e2e.agent("update", "--yes", check=0)
    assert e2e.running_version() == "1.0" and e2e.current() == "1.0"
    reports = [(r["from_version"], r["to_version"], r["outcome"]) for r in e2e.reports()]
    assert ("1.1", "1.0", "success") in reports
    assert e2e.installation()["versions"]["app"] == "1.0"


def test_downgrade_offer_without_a_signed_yank_is_refused(e2e):
    """A check endpoint that claims a release is yanked cannot make the agent go back:
    the yank must be in the signed target's custom field."""
    from sqlalchemy import update

    from release_server.db import db
    from release_server.releases.models import Release
    from release_server.rollouts.catalog import bump_catalog

    e2e.publish("app", "1.0")
    e2e.publish("app", "1.1")
    e2e.enroll()
    e2e.agent("update", "--yes", check=0)
    assert e2e.running_version() == "1.1"
    with e2e.app.app_context():  # yanked in the database only: the signed metadata still says not yanked
        db.session.execute(update(Release).where(Release.version == "1.1").values(yanked=True))
        bump_catalog(db.session)
        db.commit()
    # the server now proposes the downgrade ...
    assert "app: 1.1 -> 1.0" in e2e.agent("check", check=0).stdout
    proc = e2e.agent("update", "--yes")  # ... and the agent refuses it
    assert proc.returncode == 5, proc.stdout + proc.stderr
    assert e2e.running_version() == "1.1" and e2e.current() == "1.1"
    refused = [r for r in e2e.reports() if r["outcome"] == "refused"]
    assert refused and refused[0]["to_version"] == "1.0" and refused[0]["stage"] == "verify"
