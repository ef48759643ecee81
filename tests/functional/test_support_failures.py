"""Failed updates become tickets: fingerprint groups, one ticket per (group, customer), regressions,
rollout halts. Reports go through the real reports endpoint, on SQLite and PostgreSQL."""
from __future__ import annotations

import uuid

import pytest
from factories import create_component, enroll, publish


@pytest.fixture
def fleet(client, auth):
    admin = auth.headers("admin")
    for name, mail in (("Acme", "it@acme.example"), ("Globex", "ops@globex.example")):
        assert client.post("/api/v1/customers", json={"name": name, "contact_email": mail},
                           headers=admin).status_code == 201
    insts = {
        "acme1": enroll(client, admin, "Acme", name="acme-1", installed={"server": "1.0"}),
        "acme2": enroll(client, admin, "Acme", name="acme-2", installed={"server": "1.0"}),
        "globex1": enroll(client, admin, "Globex", name="globex-1", installed={"server": "1.0"}),
    }
    return {"admin": admin, "staff": auth.headers("support"), "insts": insts}


def failure(outcome="rolled_back", *, message="Migration 0042 failed: timeout after 30s on /var/lib/crm/db.sqlite",
            stage="migrate", code="E_MIGRATION", version="2.0", rid=None):
    return {"id": rid or str(uuid.uuid4()), "component": "server", "from_version": "1.0", "to_version": version,
            "outcome": outcome, "stage": stage, "error_code": code, "error_message": message,
            "log_tail": "...\nERROR migration failed\n"}


def send(client, inst, *reports):
    r = client.post("/api/v1/reports", json={"reports": list(reports)},
                    headers={"Authorization": f"Bearer {inst['token']}"})
    assert r.status_code == 200, r.json
    return r.json


def groups(client, fleet):
    r = client.get("/api/v1/failure-groups", headers=fleet["staff"])
    assert r.status_code == 200, r.json
    return r.json["items"]


def tickets(client, fleet, **query):
    q = "&".join(f"{k}={v}" for k, v in {"source": "failure_report", **query}.items())
    return client.get(f"/api/v1/tickets?{q}", headers=fleet["staff"]).json["items"]


def test_same_cause_joins_one_group_and_one_ticket_per_customer(client, app, fleet):
    i = fleet["insts"]
    # the same failure with different numbers, paths, ids and times in the message
    send(client, i["acme1"], failure(message="Migration 0042 failed: timeout after 30s on /var/lib/crm/db.sqlite "
                                             "at 2025-03-01T10:00:00Z (txid 9f8e7d6c5b4a)"))
    send(client, i["acme2"], failure(message="Migration 0043 failed: timeout after 31s on /srv/crm/data.sqlite "
                                             "at 2025-03-02T11:12:13Z (txid 0a1b2c3d4e5f)"))
    send(client, i["globex1"], failure(message="Migration 7 failed: timeout after 120s on C:\\crm\\db.sqlite "
                                               "at 2025-03-04 08:00:01 (txid deadbeef0042)"))
    send(client, i["acme1"], failure(message="Migration 0042 failed: timeout after 30s on /x/y "
                                             "at 2025-03-05T00:00:00+01:00 "
                                             "(txid abcdef123456)"))
    [g] = groups(client, fleet)
    assert (g["reports"], g["installations"], g["customers"], g["tickets"]) == (4, 3, 2, 2)
    assert (g["rolled_back"], g["failed"]) == (4, 0)
    assert g["first_seen_at"] <= g["last_seen_at"]
    assert "<n>" in g["message_pattern"] and "<path>" in g["message_pattern"]
    ts = tickets(client, fleet)
    assert sorted(t["customer"] for t in ts) == ["Acme", "Globex"]
    assert all(t["kind"] == "incident" and t["failure_group_id"] == g["id"] for t in ts)
    acme = next(t for t in ts if t["customer"] == "Acme")
    detail = client.get(f"/api/v1/tickets/{acme['number']}", headers=fleet["staff"]).json
    assert [e["kind"] for e in detail["timeline"]].count("failure_report") == 3
    assert detail["requester_email"] == "it@acme.example"
    # the customer was told once, automatically, with the number
    from sqlalchemy import select

    from release_server.db import db
    from release_server.support.models import MailMessage

    with app.app_context():
        mails = list(db.session.scalars(select(MailMessage).where(MailMessage.kind == "failure_opened")))
        assert sorted(m.to_addr for m in mails) == ["it@acme.example", "ops@globex.example"]
        assert all(m.auto_generated and m.subject.startswith("[OTK-") for m in mails)
    # the customer user sees the failure report entries? No: they are internal; the ticket itself is public
    user = client.post("/api/v1/customer-users", json={"email": "ann@acme.example", "customer": "Acme"},
                       headers=fleet["staff"]).json
    tok = client.post(f"/api/v1/customer-users/{user['id']}/tokens", json={}, headers=fleet["staff"]).json["token"]
    cust = client.get(f"/api/v1/tickets/{acme['number']}", headers={"Authorization": f"Bearer {tok}"}).json
    assert cust["number"] == acme["number"]
    assert all(e["public"] for e in cust["timeline"]) and cust["failure_groups"] == []


def test_different_causes_give_different_groups_and_kinds(client, fleet):
    i = fleet["insts"]
    send(client, i["acme1"], failure("rolled_back"),
         failure("failed", stage="health_check", code="E_HEALTH", message="HTTP 503 from http://127.0.0.1:8080/health"),
         failure("rolled_back", version="2.1"),
         {**failure("success"), "stage": None, "error_code": None, "error_message": None})
    gs = groups(client, fleet)
    assert len(gs) == 3
    ts = {(t["failure_group_id"], t["kind"]) for t in tickets(client, fleet)}
    health = next(g for g in gs if g["error_code"] == "E_HEALTH")
    assert (health["id"], "problem") in ts
    assert sum(1 for _, kind in ts if kind == "incident") == 2
    problem = next(t for t in tickets(client, fleet) if t["failure_group_id"] == health["id"])
    assert problem["priority"] == "high"


def test_duplicate_reports_are_counted_once_and_left_to_the_group(client, fleet):
    i = fleet["insts"]
    rid = str(uuid.uuid4())
    assert send(client, i["acme1"], failure(rid=rid))["accepted"] == [rid]
    assert send(client, i["acme1"], failure(rid=rid))["duplicates"] == [rid]
    [g] = groups(client, fleet)
    assert g["reports"] == 1 and len(tickets(client, fleet)) == 1


def test_failed_report_escalates_an_incident_to_a_problem(client, fleet):
    i = fleet["insts"]
    send(client, i["acme1"], failure("rolled_back"))
    send(client, i["acme2"], failure("failed"))
    [t] = tickets(client, fleet)
    assert t["kind"] == "problem" and t["priority"] == "high"
    [g] = groups(client, fleet)
    assert (g["rolled_back"], g["failed"]) == (1, 1)


def test_report_after_processing_reopens_as_regression(client, app, fleet):
    i = fleet["insts"]
    send(client, i["acme1"], failure())
    [t] = tickets(client, fleet)
    n = t["number"]
    r = client.patch(f"/api/v1/tickets/{n}", json={"status": "processed", "comment": "Fixed in 2.0.1"},
                     headers=fleet["staff"])
    assert r.status_code == 200
    send(client, i["acme2"], failure(), failure())  # two more in one batch: reopened once
    t = client.get(f"/api/v1/tickets/{n}", headers=fleet["staff"]).json
    assert t["status"] == "new" and t["regression"] is True
    regressions = [e for e in t["timeline"] if e["kind"] == "status" and e["data"].get("regression")]
    assert len(regressions) == 1
    [g] = groups(client, fleet)
    assert g["regressions"] == 1 and g["reports"] == 3
    assert len(tickets(client, fleet)) == 1  # no new ticket
    # closed tickets reopen too
    client.patch(f"/api/v1/tickets/{n}", json={"status": "closed"}, headers=fleet["staff"])
    send(client, i["acme1"], failure())
    assert client.get(f"/api/v1/tickets/{n}", headers=fleet["staff"]).json["status"] == "new"


def test_merged_failure_ticket_keeps_receiving_reports(client, fleet):
    i = fleet["insts"]
    send(client, i["acme1"], failure())
    send(client, i["acme1"], failure(stage="download", code="E_NET", message="connection reset"))
    a, b = sorted(tickets(client, fleet), key=lambda t: t["number"])
    assert client.post(f"/api/v1/tickets/{b['number']}/merge", json={"into": a["number"]},
                       headers=fleet["staff"]).status_code == 200
    send(client, i["acme2"], failure(stage="download", code="E_NET", message="connection reset"))
    detail = client.get(f"/api/v1/tickets/{a['number']}", headers=fleet["staff"]).json
    assert [e["kind"] for e in detail["timeline"]].count("failure_report") == 3
    assert sorted(detail["failure_groups"]) == sorted({a["failure_group_id"], b["failure_group_id"]})
    assert len(groups(client, fleet)) == 2


def test_automatic_rollout_halt_opens_internal_problem_ticket_linked_to_groups(client, app, fleet, auth):
    pub = auth.headers("publisher")
    admin = fleet["admin"]
    create_component(client, pub, "server")
    assert publish(client, pub, "server", "1.0", channels=["stable"]).status_code == 201
    assert publish(client, pub, "server", "2.0", channels=["stable"]).status_code == 201
    rid = client.post("/api/v1/rollouts", json={"component": "server", "version": "2.0", "start": True,
                                                "failure_threshold": 0.1, "min_attempts": 5},
                      headers=pub).json["id"]
    client.post(f"/api/v1/rollouts/{rid}/percentage", json={"percent": 100}, headers=pub)
    insts = [enroll(client, admin, "Acme", name=f"h{k}", installed={"server": "1.0"}) for k in range(5)]
    for inst in insts[:4]:
        send(client, inst, {**failure("success"), "stage": None, "error_code": None, "error_message": None})
    send(client, insts[4], failure("failed", stage="health_check", code="E_HEALTH", message="no answer on :8080"))
    assert client.get(f"/api/v1/rollouts/{rid}", headers=pub).json["state"] == "halted"
    internal = [t for t in client.get("/api/v1/tickets?kind=problem", headers=fleet["staff"]).json["items"]
                if t["internal"]]
    assert len(internal) == 1
    halt = client.get(f"/api/v1/tickets/{internal[0]['number']}", headers=fleet["staff"]).json
    assert halt["customer"] is None and halt["priority"] == "high" and "halted" in halt["subject"].lower()
    [g] = groups(client, fleet)
    assert halt["failure_groups"] == [g["id"]]
    # a group first seen after the halt is linked to the open halt ticket as well
    send(client, insts[0], failure("rolled_back", stage="migrate", code="E_LATE", message="late cause"))
    halt = client.get(f"/api/v1/tickets/{internal[0]['number']}", headers=fleet["staff"]).json
    assert len(halt["failure_groups"]) == 2
    # internal tickets never reach customers: no mail, and customer users do not see them
    from sqlalchemy import select

    from release_server.db import db
    from release_server.support.models import MailMessage, Ticket

    with app.app_context():
        t = db.session.scalar(select(Ticket).where(Ticket.number == halt["number"]))
        assert not list(db.session.scalars(select(MailMessage).where(MailMessage.ticket_id == t.id)))


def test_open_halt_ticket_service_is_idempotent_per_rollout(client, app, fleet, auth):
    from release_server.db import db
    from release_server.rollouts.models import Rollout
    from release_server.support.services import open_halt_ticket

    pub = auth.headers("publisher")
    create_component(client, pub, "server")
    publish(client, pub, "server", "2.0", channels=["stable"])
    rid = client.post("/api/v1/rollouts", json={"component": "server", "version": "2.0", "start": True},
                      headers=pub).json["id"]
    send(client, fleet["insts"]["acme1"], failure())
    [g] = groups(client, fleet)
    with app.app_context():
        ro = db.session.get(Rollout, rid)
        ro.halt_reason = "3 of 21 attempts failed"
        first = open_halt_ticket(db.session, ro, [g["id"]])
        again = open_halt_ticket(db.session, ro, [g["id"]])
        db.commit()
        assert first.id == again.id and first.internal and first.kind == "problem"
        number = first.number
    detail = client.get(f"/api/v1/tickets/{number}", headers=fleet["staff"]).json
    assert detail["failure_groups"] == [g["id"]]
    assert any(e["kind"] == "note" and "Halted again" in e["body"] for e in detail["timeline"])
    assert client.get(f"/api/v1/failure-groups/{g['id']}", headers=fleet["staff"]).json["tickets"] == 1
    assert client.get("/api/v1/failure-groups/999999", headers=fleet["staff"]).status_code == 404
