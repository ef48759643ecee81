"""The loop closed end to end: a failing release, a fix for the affected, tickets that follow the fleet.

Real agents (one state folder per installation) against a real server process; the fix is
published with the real ``release-server publish`` command.
"""
from __future__ import annotations

import subprocess
import sys

from sqlalchemy import select

from e2e.agent_harness import ROOT, app_artifact

BROKEN = {"APP_MIGRATION_BROKEN": "1"}
FAILURE = 'echo "migration 0042_add_invoice_state failed: column invoice.state already exists" >&2; exit 3'
#: 1.1's migration fails where the installation's database has the old column (the variable says so)
MIGRATION = f'if [ -n "$APP_MIGRATION_BROKEN" ]; then {FAILURE}; fi'
#: 1.1.1 handles that case, but not a database that also lacks the index (a case the fix missed)
FIXED_MIGRATION = f'if [ -n "$APP_MIGRATION_BROKEN" ] && [ -n "$APP_NO_INDEX" ]; then {FAILURE}; fi'


def _customer(e2e, name: str, email: str, locale: str | None) -> None:
    resp = e2e.client.post("/api/v1/customers", json={"name": name, "contact_email": email}, headers=e2e.headers)
    assert resp.status_code == 201, resp.json
    if locale:
        from release_server.db import db
        from release_server.fleet.services import get_customer, set_customer_defaults

        with e2e.app.app_context():
            set_customer_defaults(db.session, get_customer(db.session, name), locale=locale, timezone=None)
            db.commit()


def _ticket(e2e, number: str) -> dict:
    resp = e2e.client.get(f"/api/v1/tickets/{number}", headers=e2e.headers)
    assert resp.status_code == 200, resp.json
    return resp.json


def _mails(e2e, number: str, kind: str) -> list:
    from release_server.db import db
    from release_server.support.models import MailMessage, Ticket

    with e2e.app.app_context():
        tid = db.session.scalar(select(Ticket.id).where(Ticket.number == number))
        return [(m.to_addr, m.body) for m in db.session.scalars(
            select(MailMessage).where(MailMessage.ticket_id == tid, MailMessage.kind == kind))]


def _publish_cli(e2e, *args: str) -> subprocess.CompletedProcess[str]:
    token = e2e.headers["Authorization"].split(" ", 1)[1]
    return subprocess.run([sys.executable, "-m", "release_server.cli", "publish", "--server", e2e.server.url,
                           "--token", token, "--quiet", *args], capture_output=True, text=True, timeout=120,
                          cwd=str(e2e.tmp), env=e2e.env(PYTHONPATH=str(ROOT)))


def test_fix_for_the_affected_follows_the_fleet_to_processed_and_a_regression_reopens(e2e):
    _customer(e2e, "Customer A", "ops@a.example", "ru")
    _customer(e2e, "Customer B", "it@b.example", None)
    a1, a2, a3 = (e2e.machine(n, "Customer A") for n in ("a1", "a2", "a3"))
    b1, b2 = (e2e.machine(n, "Customer B") for n in ("b1", "b2"))
    e2e.publish("app", "1.0")
    ids = {}
    for name, m in (("a1", a1), ("a2", a2), ("a3", a3), ("b1", b1), ("b2", b2)):
        ids[name] = m.enroll(name=f"{name}-server")
        m.agent("update", "--yes", check=0)
        assert m.running_version() == "1.0"

    # 1.1's migration fails on a1, a2 (customer A) and b1 (customer B); a3 takes it; b2 does not try yet
    e2e.publish("app", "1.1", app_artifact("1.1", hooks={"post_install": MIGRATION}))
    for m in (a1, a2, b1):
        proc = m.agent("update", "--yes", env=BROKEN, check=1)
        assert "rolled back, 1.0 is running" in proc.stdout
    a3.agent("update", "--yes", check=0)
    assert a3.running_version() == "1.1"

    groups = e2e.client.get("/api/v1/failure-groups", headers=e2e.headers).json["items"]
    (group,) = groups
    assert (group["installations"], group["customers"], group["tickets"]) == (3, 2, 2)
    tickets = e2e.client.get(f"/api/v1/tickets?failure_group={group['id']}", headers=e2e.headers).json["items"]
    by_customer = {t["customer"]: t["number"] for t in tickets}
    assert set(by_customer) == {"Customer A", "Customer B"}
    ticket_a, ticket_b = by_customer["Customer A"], by_customer["Customer B"]

    # 1.1.1 fixes the group and is restricted to the three affected installations, in one command
    artifact = e2e.tmp / "app-1.1.1.tar.gz"
    artifact.write_bytes(app_artifact("1.1.1", hooks={"post_install": FIXED_MIGRATION}))
    proc = _publish_cli(e2e, "--component", "app", "--version", "1.1.1", "--channel", "stable",
                        "--fixes-group", str(group["id"]), "--restrict-to-affected", str(artifact))
    assert proc.returncode == 0, proc.stderr
    assert f"fixes group #{group['id']}, offered only to the affected installations" in proc.stdout
    fixes = e2e.client.get("/api/v1/components/app/releases/1.1.1/fixes", headers=e2e.headers).json
    assert fixes["groups"] == [group["id"]]
    assert sorted(fixes["restricted_installations"]) == sorted([ids["a1"], ids["a2"], ids["b1"]])
    got = e2e.client.get(f"/api/v1/failure-groups/{group['id']}", headers=e2e.headers).json
    assert (got["state"], got["resolved_in_version"]) == ("resolved", "1.1.1")
    assert got["fixed_by"] == [{"component": "app", "version": "1.1.1"}]

    # only the affected are offered it: a3 (on 1.1) is up to date, b2 (on 1.0) is offered 1.1, not 1.1.1
    assert a3.agent("check", check=0).stdout.strip() == "Everything is up to date."
    b2_check = b2.agent("check", check=0).stdout
    assert "app: 1.0 -> 1.1" in b2_check and "1.1.1" not in b2_check
    assert "app: 1.0 -> 1.1.1" in a1.agent("check", check=0).stdout

    # a1 installs it: A's ticket stays open and says one installation is still waiting
    a1.agent("update", "--yes", env=BROKEN, check=0)
    assert a1.running_version() == "1.1.1"
    t = _ticket(e2e, ticket_a)
    assert t["status"] != "processed"
    assert t["fixed_by"] == [{"component": "app", "version": "1.1.1"}]
    installed = [e for e in t["timeline"] if e["kind"] == "fix_installed"]
    assert len(installed) == 1 and "a1-server" in installed[0]["body"] and "1.1.1" in installed[0]["body"]
    assert installed[0]["public"] is True

    # a2 installs it: every installation of A runs the fix -> processed, with the comment and a mail in Russian
    a2.agent("update", "--yes", env=BROKEN, check=0)
    t = _ticket(e2e, ticket_a)
    assert t["status"] == "processed" and t["processed_at"]
    comment = next(e for e in t["timeline"] if e["kind"] == "reply" and e["data"].get("with_status") == "processed")
    assert "1.1.1" in comment["body"] and "a1-server" in comment["body"] and "a2-server" in comment["body"]
    (mail,) = _mails(e2e, ticket_a, "processed")
    assert mail[0] == "ops@a.example"
    assert "обработан" in mail[1] and "1.1.1" in mail[1] and "a2-server" in mail[1]
    assert "исправлен" in mail[1].lower()

    # B's ticket stays open and lists B's installation as waiting
    t = _ticket(e2e, ticket_b)
    assert t["status"] in ("new", "in_progress")
    status = e2e.client.get(f"/api/v1/failure-groups/{group['id']}/fix-status", headers=e2e.headers).json
    rows = {r["name"]: r for r in status["installations"]}
    assert (rows["a1-server"]["state"], rows["a2-server"]["state"], rows["b1-server"]["state"]) == \
        ("fixed", "fixed", "waiting")
    assert rows["b1-server"]["running"] == "1.0"
    per_customer = {c["customer"]: c for c in status["customers"]}
    assert per_customer["Customer A"]["to_processed_seconds"] is not None
    assert per_customer["Customer B"]["to_processed_seconds"] is None
    assert status["figures"]["to_fix_published_seconds"] is not None
    assert status["figures"]["to_fix_installed_seconds"] is None

    # b1 installs it: B's ticket is processed too, its mail in English
    b1.agent("update", "--yes", env=BROKEN, check=0)
    assert _ticket(e2e, ticket_b)["status"] == "processed"
    (mail_b,) = _mails(e2e, ticket_b, "processed")
    assert mail_b[0] == "it@b.example" and "has been processed" in mail_b[1] and "1.1.1" in mail_b[1]
    status = e2e.client.get(f"/api/v1/failure-groups/{group['id']}/fix-status", headers=e2e.headers).json
    assert status["figures"]["to_fix_installed_seconds"] is not None
    assert status["figures"]["to_processed_seconds"] is not None
    figures = e2e.client.get("/api/v1/customers/Customer B/fix-figures", headers=e2e.headers).json
    assert [i["group_id"] for i in figures["items"]] == [group["id"]]

    # the same failure on 1.1.1: b2 is given the fix too, and its migration fails the same way
    resp = e2e.client.post("/api/v1/components/app/releases/1.1.1/restrictions",
                           json={"installations": [ids["b2"]]}, headers=e2e.headers)
    assert resp.status_code in (200, 201), resp.json
    proc = b2.agent("update", "--yes", env={**BROKEN, "APP_NO_INDEX": "1"}, check=1)
    assert "rolled back, 1.0 is running" in proc.stdout
    got = e2e.client.get(f"/api/v1/failure-groups/{group['id']}", headers=e2e.headers).json
    assert got["state"] == "unresolved" and got["regressions"] >= 1
    assert len(e2e.client.get("/api/v1/failure-groups", headers=e2e.headers).json["items"]) == 1
    t = _ticket(e2e, ticket_b)
    assert t["status"] in ("new", "in_progress") and t["regression"] is True
    assert _ticket(e2e, ticket_a)["status"] == "processed"  # A's installations did not fail again
