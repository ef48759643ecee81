"""An operator's rollback: its own outcome (no ticket, not a failure of the rollout) and a hold on the version."""
from __future__ import annotations

from sqlalchemy import func, select


def _tickets_and_groups(e2e) -> tuple[int, int]:
    from release_server.db import db
    from release_server.support.models import FailureGroup, Ticket

    with e2e.app.app_context():
        return (db.session.scalar(select(func.count(Ticket.id))),
                db.session.scalar(select(func.count(FailureGroup.id))))


def test_operator_rollback_is_not_a_failure_and_holds_until_a_newer_release(e2e):
    e2e.publish("app", "1.0")
    e2e.enroll()
    e2e.agent("update", "--yes", check=0)
    e2e.publish("app", "1.1")
    ro = e2e.client.post("/api/v1/rollouts", headers=e2e.headers, json={
        "component": "app", "version": "1.1", "schedule": [{"percent": 100, "min_hours": 0}], "start": True,
        "min_attempts": 1, "failure_threshold": 0.5})
    assert ro.status_code == 201, ro.json
    e2e.agent("update", "--yes", check=0)
    assert e2e.running_version() == "1.1"

    out = e2e.agent("rollback", "--component", "app", check=0).stdout
    assert "rolled back from 1.1 to 1.0" in out and "release-hold app" in out
    (report,) = [r for r in e2e.reports() if r["from_version"] == "1.1"]
    assert (report["outcome"], report["to_version"]) == ("operator_rollback", "1.0")
    assert _tickets_and_groups(e2e) == (0, 0)  # no incident ticket, no failure group
    figures = e2e.client.get(f"/api/v1/rollouts/{ro.json['id']}", headers=e2e.headers).json
    assert (figures["state"], figures["attempts"], figures["failures"]) == ("running", 1, 0)
    assert e2e.installation()["versions"]["app"] == "1.0"

    # the daemon does not put 1.1 back; status says why
    e2e.agent("run", "--once", check=0)
    assert e2e.running_version() == "1.0"
    status = e2e.status()
    assert status["holds"]["app"]["version"] == "1.0" and status["holds"]["app"]["left"] == "1.1"
    assert "HELD on 1.0" in e2e.agent("status", check=0).stdout
    out = e2e.agent("update", "--yes", check=0).stdout
    assert "held on 1.0" in out and e2e.running_version() == "1.0"

    # a release newer than the one left goes through and ends the hold
    e2e.publish("app", "1.2")
    e2e.agent("run", "--once", check=0)
    assert e2e.running_version() == "1.2"
    assert e2e.status()["holds"] == {}


def test_release_hold_lets_updates_through_again(e2e):
    e2e.publish("app", "1.0")
    e2e.enroll()
    e2e.agent("update", "--yes", check=0)
    e2e.publish("app", "1.1")
    e2e.agent("update", "--yes", check=0)
    e2e.agent("rollback", "--component", "app", check=0)
    e2e.agent("run", "--once", check=0)
    assert e2e.running_version() == "1.0"
    out = e2e.agent("release-hold", "app", check=0).stdout
    assert "hold on 1.0 released" in out
    assert e2e.agent("release-hold", "app", check=0).stdout.strip() == "app is not held."
    e2e.agent("run", "--once", check=0)
    assert e2e.running_version() == "1.1"
