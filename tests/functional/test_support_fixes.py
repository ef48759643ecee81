"""Fix releases: links at publish and afterwards, restriction to the affected, tickets that follow the
fleet, regressions by cause, halt tickets, figures. Reports go through the real endpoint, on SQLite and
PostgreSQL."""
from __future__ import annotations

import uuid

from factories import create_component, enroll, publish, timeline_in


def _fleet(client, auth):
    admin = auth.headers("admin")
    for name, mail in (("Acme", "it@acme.example"), ("Globex", "ops@globex.example")):
        assert client.post("/api/v1/customers", json={"name": name, "contact_email": mail},
                           headers=admin).status_code == 201
    insts = {
        "acme1": enroll(client, admin, "Acme", name="acme-1", installed={"server": "1.0"}),
        "acme2": enroll(client, admin, "Acme", name="acme-2", installed={"server": "1.0"}),
        "globex1": enroll(client, admin, "Globex", name="globex-1", installed={"server": "1.0"}),
        "other": enroll(client, admin, "Globex", name="globex-2", installed={"server": "1.0"}),
    }
    create_component(client, admin, "server")
    for v in ("1.0", "2.0"):
        assert publish(client, admin, "server", v, channels=["stable"]).status_code == 201
    return admin, insts


def report(outcome="rolled_back", version="2.0", from_version="1.0"):
    return {"id": str(uuid.uuid4()), "component": "server", "from_version": from_version, "to_version": version,
            "outcome": outcome, "stage": "migrate", "error_code": "E_MIGRATION",
            "error_message": "Migration 0042 failed: column state exists" if outcome != "success" else None,
            "log_tail": ""}


def send(client, inst, *reports):
    r = client.post("/api/v1/reports", json={"reports": list(reports)},
                    headers={"Authorization": f"Bearer {inst['token']}"})
    assert r.status_code == 200, r.json


def _failing(client, admin, insts):
    for key in ("acme1", "acme2", "globex1"):
        send(client, insts[key], report())
    (group,) = client.get("/api/v1/failure-groups", headers=admin).json["items"]
    tickets = client.get(f"/api/v1/tickets?failure_group={group['id']}", headers=admin).json["items"]
    return group["id"], {t["customer"]: t["number"] for t in tickets}


def _ticket(client, admin, number):
    return client.get(f"/api/v1/tickets/{number}", headers=admin).json


def test_publish_restricted_to_affected_links_and_resolves(client, auth):
    admin, insts = _fleet(client, auth)
    gid, tickets = _failing(client, admin, insts)
    resp = publish(client, admin, "server", "2.0.1", channels=["stable"], fixes_groups=[gid],
                   restrict_to_affected=True)
    assert resp.status_code == 201, resp.json
    assert resp.json["fixes_groups"] == [gid]
    restr = client.get("/api/v1/components/server/releases/2.0.1/restrictions", headers=admin).json
    assert sorted(restr["installations"]) == sorted(insts[k]["installation_id"] for k in ("acme1", "acme2",
                                                                                           "globex1"))
    group = client.get(f"/api/v1/failure-groups/{gid}", headers=admin).json
    assert (group["state"], group["resolved_in_version"]) == ("resolved", "2.0.1")
    t = _ticket(client, admin, tickets["Acme"])
    assert any(e["kind"] == "fix_linked" and "2.0.1" in e["body"] for e in t["timeline"])
    audit = client.get("/api/v1/audit?action=release.fixes.link", headers=admin)
    if audit.status_code == 200:
        assert any(r["action"] == "release.fixes.link" for r in audit.json["items"])


def test_bad_fix_references_are_refused_naming_the_field(client, auth):
    admin, insts = _fleet(client, auth)
    gid, _tickets = _failing(client, admin, insts)
    resp = publish(client, admin, "server", "2.0.1", fixes_groups=[gid + 100])
    assert resp.status_code == 404 and resp.json["error"]["field"] == "fixes_groups.0"
    resp = publish(client, admin, "server", "2.0.1", fixes=["OTK-999999"])
    assert resp.status_code == 404 and resp.json["error"]["field"] == "fixes.0"
    resp = publish(client, admin, "server", "2.0.1", restrict_to_affected=True)
    assert resp.status_code == 400 and resp.json["error"]["field"] == "restrict_to_affected"
    resp = publish(client, admin, "server", "2.0.1", fixes_groups=["x"])
    assert resp.status_code == 400
    create_component(client, admin, "web")
    resp = publish(client, admin, "web", "1.0", fixes_groups=[gid])
    assert resp.status_code == 400 and resp.json["error"]["field"] == "fixes_groups.0"
    resp = client.post("/api/v1/components/server/releases/2.0/fixes", json={"groups": []}, headers=admin)
    assert resp.status_code == 400


def test_ticket_follows_the_fleet_then_regresses_by_cause(client, app, auth):
    admin, insts = _fleet(client, auth)
    gid, tickets = _failing(client, admin, insts)
    assert publish(client, admin, "server", "2.0.1", channels=["stable"], fixes_groups=[gid],
                   restrict_to_affected=True).status_code == 201

    send(client, insts["acme1"], report("success", "2.0.1"))
    t = _ticket(client, admin, tickets["Acme"])
    assert t["status"] == "new"
    assert [e["data"]["installation_id"] for e in t["timeline"] if e["kind"] == "fix_installed"] == \
        [insts["acme1"]["installation_id"]]
    pending = [e for e in t["timeline"] if e["kind"] == "fix_pending"]
    assert pending and "acme-2" in pending[-1]["body"]
    # a Russian reader of the console sees the installation's state in Russian, not the raw state word
    en = [b for b in timeline_in(app, "en", tickets["Acme"]) if b.startswith("Still waiting")][-1]
    ru = [b for b in timeline_in(app, "ru", tickets["Acme"]) if b.startswith("Исправление ещё не")][-1]
    assert en == "Still waiting for the fix: acme-2 (1.0, Waiting for the fix)."
    assert ru == "Исправление ещё не установлено: acme-2 (1.0, Ждёт исправления)."

    send(client, insts["acme2"], report("rolled_back", "2.0"))  # still failing on the old release: no regression
    assert client.get(f"/api/v1/failure-groups/{gid}", headers=admin).json["state"] == "resolved"

    send(client, insts["acme2"], report("success", "2.1") | {"to_version": "2.0.1"})
    t = _ticket(client, admin, tickets["Acme"])
    assert t["status"] == "processed"
    assert _ticket(client, admin, tickets["Globex"])["status"] == "new"

    # a newer release than the fix counts too
    assert publish(client, admin, "server", "2.2", channels=["stable"]).status_code == 201
    send(client, insts["globex1"], report("success", "2.2"))
    assert _ticket(client, admin, tickets["Globex"])["status"] == "processed"

    # the same cause on 2.2 (at or above 2.0.1) joins the old group as a regression and reopens the ticket
    send(client, insts["globex1"], report("rolled_back", "2.2", "2.0.1"))
    groups = client.get("/api/v1/failure-groups", headers=admin).json["items"]
    assert [g["id"] for g in groups] == [gid]
    assert groups[0]["state"] == "unresolved" and groups[0]["regressions"] >= 1
    t = _ticket(client, admin, tickets["Globex"])
    assert t["status"] == "new" and t["regression"] is True
    status = client.get(f"/api/v1/failure-groups/{gid}/fix-status", headers=admin).json
    rows = {r["name"]: r["state"] for r in status["installations"]}
    assert rows["globex-1"] != "fixed" and rows["acme-1"] == "fixed"


def test_linking_afterwards_settles_from_inventory_and_unlink(client, auth):
    admin, insts = _fleet(client, auth)
    gid, tickets = _failing(client, admin, insts)
    assert publish(client, admin, "server", "2.1", channels=["stable"]).status_code == 201
    send(client, insts["acme1"], report("success", "2.1"))
    send(client, insts["acme2"], report("success", "2.1"))
    assert _ticket(client, admin, tickets["Acme"])["status"] == "new"  # nothing said 2.1 fixes it yet

    resp = client.post("/api/v1/components/server/releases/2.1/fixes", json={"groups": [gid]}, headers=admin)
    assert resp.status_code == 200, resp.json
    assert resp.json["groups"] == [gid]
    assert _ticket(client, admin, tickets["Acme"])["status"] == "processed"
    assert _ticket(client, admin, tickets["Globex"])["status"] == "new"

    # restricting an unrestricted release to the affected is refused: it is offered to everyone
    resp = client.post("/api/v1/components/server/releases/2.1/fixes",
                       json={"groups": [gid], "restrict_to_affected": True}, headers=admin)
    assert resp.status_code == 409 and resp.json["error"]["field"] == "restrict_to_affected"

    resp = client.post("/api/v1/components/server/releases/2.1/fixes/unlink", json={"groups": [gid]}, headers=admin)
    assert resp.status_code == 200 and resp.json["groups"] == []
    assert client.get(f"/api/v1/failure-groups/{gid}", headers=admin).json["state"] == "unresolved"


def test_a_ticket_fix_covers_only_that_customer(client, auth):
    admin, insts = _fleet(client, auth)
    gid, tickets = _failing(client, admin, insts)
    resp = publish(client, admin, "server", "2.0.1", channels=["stable"], fixes=[tickets["Acme"]],
                   restrict_to_affected=True)
    assert resp.status_code == 201, resp.json
    restr = client.get("/api/v1/components/server/releases/2.0.1/restrictions", headers=admin).json
    assert sorted(restr["installations"]) == sorted(insts[k]["installation_id"] for k in ("acme1", "acme2"))
    assert client.get(f"/api/v1/failure-groups/{gid}", headers=admin).json["state"] == "unresolved"
    for k in ("acme1", "acme2"):
        send(client, insts[k], report("success", "2.0.1"))
    assert _ticket(client, admin, tickets["Acme"])["status"] == "processed"


def test_customer_sees_only_their_own_fix_and_figures(client, app, auth):
    admin, insts = _fleet(client, auth)
    gid, tickets = _failing(client, admin, insts)
    publish(client, admin, "server", "2.0.1", channels=["stable"], fixes_groups=[gid], restrict_to_affected=True)
    for k in ("acme1", "acme2"):
        send(client, insts[k], report("success", "2.0.1"))
    # the installation (customer side) sees its own ticket's fix, never the other customer's
    inst_headers = {"Authorization": f"Bearer {insts['acme1']['token']}"}
    mine = client.get(f"/api/v1/tickets/{tickets['Acme']}", headers=inst_headers)
    assert mine.status_code == 200 and mine.json["fixed_by"] == [{"component": "server", "version": "2.0.1"}]
    assert mine.json["failure_groups"] == []
    assert client.get(f"/api/v1/tickets/{tickets['Globex']}", headers=inst_headers).status_code == 404
    assert client.get(f"/api/v1/failure-groups/{gid}/fix-status", headers=inst_headers).status_code in (401, 403)

    figures = client.get("/api/v1/customers/Acme/fix-figures", headers=admin).json
    (item,) = figures["items"]
    assert item["group_id"] == gid and item["to_processed_seconds"] is not None
    assert item["to_fix_installed_seconds"] is not None and item["to_fix_published_seconds"] is not None
    assert client.get("/api/v1/customers/Nobody/fix-figures", headers=admin).status_code == 404


def test_halted_rollout_ticket_is_closed_by_its_fix_and_offers_yank(app, client, auth):
    from functional.test_web_tickets import post

    pub, admin = auth.headers("publisher"), auth.headers("admin")
    assert client.post("/api/v1/customers", json={"name": "Acme", "contact_email": "it@acme.example"},
                       headers=admin).status_code == 201
    create_component(client, pub, "server")
    for v in ("1.0", "2.0"):
        assert publish(client, pub, "server", v, channels=["stable"]).status_code == 201
    rid = client.post("/api/v1/rollouts", json={"component": "server", "version": "2.0", "start": True,
                                                "failure_threshold": 0.1, "min_attempts": 5}, headers=pub).json["id"]
    client.post(f"/api/v1/rollouts/{rid}/percentage", json={"percent": 100}, headers=pub)
    insts = [enroll(client, admin, "Acme", name=f"h{k}", installed={"server": "1.0"}) for k in range(5)]
    for inst in insts[:4]:
        send(client, inst, report("success"))
    send(client, insts[4], report("failed"))
    assert client.get(f"/api/v1/rollouts/{rid}", headers=pub).json["state"] == "halted"
    (halt,) = [t for t in client.get("/api/v1/tickets?kind=problem", headers=admin).json["items"] if t["internal"]]

    # the fix names the halt ticket: it stands for the groups that halted the rollout
    resp = publish(client, pub, "server", "2.0.1", channels=["stable"], fixes=[halt["number"]],
                   restrict_to_affected=True)
    assert resp.status_code == 201, resp.json
    restr = client.get("/api/v1/components/server/releases/2.0.1/restrictions", headers=admin).json
    assert restr["installations"] == [insts[4]["installation_id"]]
    detail = client.get(f"/api/v1/tickets/{halt['number']}", headers=admin).json
    assert detail["fixed_by"] == [{"component": "server", "version": "2.0.1"}]
    send(client, insts[4], report("success", "2.0.1"))
    detail = client.get(f"/api/v1/tickets/{halt['number']}", headers=admin).json
    assert detail["status"] == "processed"

    # the console's halt ticket page offers the yank of the halted release
    from release_server.accounts import services as accounts
    from release_server.db import db

    with app.app_context():
        accounts.create_user(db.session, "sue", "correct horse battery staple", "support")
        db.commit()
    sue = app.test_client()
    from functional.test_web_tickets import login

    assert login(sue, "/console/login", username="sue", password="correct horse battery staple").status_code == 302
    page = sue.get(f"/console/tickets/{halt['number']}")
    assert 'id="ticket-yank-form"' in page.text and 'id="ticket-fix-form"' in page.text
    resp = post(sue, f"/console/tickets/{halt['number']}/yank", {"reason": " "}, f"/console/tickets/{halt['number']}")
    assert resp.status_code == 400
    resp = post(sue, f"/console/tickets/{halt['number']}/yank", {"reason": "migration breaks health checks"},
                f"/console/tickets/{halt['number']}")
    assert resp.status_code == 302, resp.text
    assert client.get("/api/v1/components/server/releases/2.0", headers=admin).json["yanked"] is True
    timeline = client.get(f"/api/v1/tickets/{halt['number']}", headers=admin).json["timeline"]
    assert any(e["kind"] == "yanked" for e in timeline)


def test_changelog_shows_a_customer_only_their_own_ticket_numbers(client, auth):
    admin, insts = _fleet(client, auth)
    gid, tickets = _failing(client, admin, insts)
    changelog = f"* Migration fixed ({tickets['Acme']}, {tickets['Globex']})"
    assert publish(client, admin, "server", "2.0.1", channels=["stable"], changelog=changelog,
                   fixes_groups=[gid]).status_code == 201

    def offered(key):
        r = client.post("/api/v1/updates/check", json={"installed": {"server": "1.0"}},
                        headers={"Authorization": f"Bearer {insts[key]['token']}"})
        assert r.status_code == 200, r.json
        return next(o["changelog"] for o in r.json["offers"] if o["component"] == "server")

    acme, globex = offered("acme1"), offered("globex1")
    assert tickets["Acme"] in acme and tickets["Globex"] not in acme and "OTK-…" in acme
    assert tickets["Globex"] in globex and tickets["Acme"] not in globex
    # staff read the changelog as written
    assert client.get("/api/v1/components/server/releases/2.0.1", headers=admin).json["changelog"] == changelog


def test_a_staged_fix_for_the_affected_is_never_offered_to_anyone_else(client, auth):
    admin, insts = _fleet(client, auth)
    gid, _tickets = _failing(client, admin, insts)
    resp = publish(client, admin, "server", "2.0.1", channels=["stable"], fixes_groups=[gid],
                   restrict_to_affected=True, rollout={"schedule": [{"percent": 100}], "min_attempts": 1})
    assert resp.status_code == 201, resp.json
    rollouts = client.get("/api/v1/rollouts?component=server", headers=admin).json["items"]
    assert any(r["version"] == "2.0.1" for r in rollouts)

    def offered(key):
        r = client.post("/api/v1/updates/check", json={"installed": {"server": "2.0"}},
                        headers={"Authorization": f"Bearer {insts[key]['token']}"})
        assert r.status_code == 200, r.json
        return {o["version"] for o in r.json.get("offers", [])}

    assert "2.0.1" in offered("acme1") and "2.0.1" in offered("globex1")
    assert "2.0.1" not in offered("other")


def test_cli_restrict_to_affected_needs_what_it_fixes(tmp_path):
    from click.testing import CliRunner

    from release_server.client_cli import publish as publish_cmd

    artifact = tmp_path / "a.tar.gz"
    artifact.write_bytes(b"x")
    result = CliRunner().invoke(publish_cmd, ["--server", "http://127.0.0.1:9", "--token", "t", "--component", "app",
                                              "--version", "1.1.1", "--restrict-to-affected", str(artifact)])
    assert result.exit_code == 2 and "--restrict-to-affected needs --fixes or --fixes-group" in result.output
    result = CliRunner().invoke(publish_cmd, ["--server", "http://127.0.0.1:9", "--token", "t", "--component", "app",
                                              "--version", "1.1.1", "--fixes-group", "0", str(artifact)])
    assert result.exit_code == 2
