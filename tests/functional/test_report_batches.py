"""Report ingestion in batches: a constant number of statements per batch, the same outcome as one by one."""
from __future__ import annotations

import threading
import uuid

import pytest
from factories import create_component, enroll, publish
from sqlalchemy import event


@pytest.fixture
def fleet(client, auth):
    admin = auth.headers("admin")
    assert client.post("/api/v1/customers", json={"name": "Acme", "contact_email": "it@acme.example"},
                       headers=admin).status_code == 201
    return {"admin": admin, "staff": auth.headers("support"),
            "a": enroll(client, admin, "Acme", name="a", installed={"server": "1.0"}),
            "b": enroll(client, admin, "Acme", name="b", installed={"server": "1.0"})}


CAUSES = [("migrate", "E_MIGRATION", "rolled_back"), ("health_check", "E_HEALTH", "failed"),
          ("download", "E_DIGEST", "rolled_back")]


def failure(n: int, cause: int = 0) -> dict:
    stage, code, outcome = CAUSES[cause]
    return {"id": str(uuid.uuid4()), "component": "server", "from_version": "1.0", "to_version": "2.0",
            "outcome": outcome, "stage": stage, "error_code": code,
            "error_message": f"{code} number {n} at /var/lib/crm/{uuid.uuid4()}", "log_tail": "..."}


def send(client, inst, reports):  # noqa: ANN001
    r = client.post("/api/v1/reports", json={"reports": reports}, headers={"Authorization": f"Bearer {inst['token']}"})
    assert r.status_code == 200, r.json
    return r.json


def statements_of(app, fn):  # noqa: ANN001
    """The SQL statements run by this thread while ``fn`` runs (SQLAlchemy's cursor events)."""
    engine = app.extensions["db_engine"]
    me, seen = threading.get_ident(), []

    def on(conn, cursor, statement, *args) -> None:  # noqa: ANN001, ANN002
        if threading.get_ident() == me:
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", on)
    try:
        result = fn()
    finally:
        event.remove(engine, "before_cursor_execute", on)
    return result, seen


def test_statements_per_batch_do_not_grow_with_the_batch(app, client, fleet):
    send(client, fleet["a"], [failure(0, c) for c in range(3)])  # the groups and the ticket exist now
    _, small = statements_of(app, lambda: send(client, fleet["a"], [failure(n, n % 3) for n in range(6)]))
    ack, big = statements_of(app, lambda: send(client, fleet["a"], [failure(n, n % 3) for n in range(50)]))
    assert len(ack["accepted"]) == 50
    assert len(big) == len(small), "\n".join(s[:90].replace("\n", " ") for s in big)
    assert len(big) <= 4 * 50 / 10, big  # a handful for the whole batch, far under 4 per report
    # a new installation of the customer and duplicates in the batch cost no more
    again = [failure(n, n % 3) for n in range(49)]
    ack, mixed = statements_of(app, lambda: send(client, fleet["b"], again + [again[0]]))
    assert len(ack["accepted"]) == 49 and ack["duplicates"] == [again[0]["id"]]
    assert len(mixed) <= len(big) + 2, mixed


def test_a_batch_counts_exactly_like_single_reports(app, client, fleet):
    reports = [failure(n, n % 3) for n in range(30)]
    first = send(client, fleet["a"], reports[:20] + reports[:5])  # duplicates within the batch
    assert len(first["accepted"]) == 20 and first["duplicates"] == [r["id"] for r in reports[:5]]
    second = send(client, fleet["a"], reports[15:])  # overlaps the first
    assert second["accepted"] == [r["id"] for r in reports[20:]]
    assert second["duplicates"] == [r["id"] for r in reports[15:20]]
    for r in reports[25:]:  # the old agents' form: one report per request
        assert send(client, fleet["b"], [r])["duplicates"] == [r["id"]]
    items = client.get("/api/v1/failure-groups", headers=fleet["staff"]).json["items"]
    by_code = {g["error_code"]: g for g in items}
    assert {c: g["reports"] for c, g in by_code.items()} == {"E_MIGRATION": 10, "E_HEALTH": 10, "E_DIGEST": 10}
    assert all(g["installations"] == 1 and g["customers"] == 1 for g in items)
    tickets = client.get("/api/v1/tickets?source=failure_report", headers=fleet["staff"]).json["items"]
    assert len(tickets) == 3
    for t in tickets:
        detail = client.get(f"/api/v1/tickets/{t['number']}", headers=fleet["staff"]).json
        assert [e["kind"] for e in detail["timeline"]].count("failure_report") == 10


def test_reopen_and_escalation_in_a_batch_happen_once_at_the_report_that_causes_them(app, client, fleet):
    send(client, fleet["a"], [failure(0, 0)])  # an incident (rolled back)
    (t,) = client.get("/api/v1/tickets?source=failure_report", headers=fleet["staff"]).json["items"]
    assert client.patch(f"/api/v1/tickets/{t['number']}", json={"status": "processed", "comment": "fixed"},
                        headers=fleet["staff"]).status_code == 200
    problem = {**failure(2, 0), "outcome": "failed"}  # same cause, left not working
    send(client, fleet["b"], [failure(1, 0), problem, failure(3, 0)])
    detail = client.get(f"/api/v1/tickets/{t['number']}", headers=fleet["staff"]).json
    assert detail["status"] == "new" and detail["regression"] is True and detail["kind"] == "problem"
    kinds = [(e["kind"], e["data"].get("report_id")) for e in detail["timeline"]
             if e["kind"] in ("failure_report", "status", "changed")]
    # the first report, the staff's "processed", then in the batch: report 1 reopens (status),
    # report 2 escalates (changed), report 3 just joins
    assert [k for k, _ in kinds] == ["failure_report", "status", "failure_report", "status", "failure_report",
                                     "changed", "failure_report"]
    batch_ids = [rid for k, rid in kinds if k == "failure_report"][1:]
    assert len(batch_ids) == 3 and batch_ids[1] == problem["id"]
    (g,) = client.get("/api/v1/failure-groups", headers=fleet["staff"]).json["items"]
    assert g["regressions"] == 1 and g["reports"] == 4


def test_a_rollout_halts_inside_a_batch_with_exact_counts(app, client, fleet, auth):
    pub = auth.headers("publisher")
    create_component(client, pub, "server")
    assert publish(client, pub, "server", "1.0", channels=["stable"]).status_code == 201
    assert publish(client, pub, "server", "2.0", channels=["stable"]).status_code == 201
    rid = client.post("/api/v1/rollouts", json={"component": "server", "version": "2.0", "start": True,
                                                "failure_threshold": 0.2, "min_attempts": 4},
                      headers=pub).json["id"]
    client.post(f"/api/v1/rollouts/{rid}/percentage", json={"percent": 100}, headers=pub)
    ok = [{**failure(n), "outcome": "success", "stage": None, "error_code": None, "error_message": None}
          for n in range(3)]
    # one by one, the failure at the 4th attempt makes it 25 % > 20 %; the successes after it come too late
    send(client, fleet["a"], ok[:2] + [failure(9, 1)] + ok[2:] + [
        {**failure(n), "outcome": "success", "stage": None, "error_code": None, "error_message": None}
        for n in range(10, 14)])
    ro = client.get(f"/api/v1/rollouts/{rid}", headers=pub).json
    assert ro["state"] == "halted" and (ro["attempts"], ro["failures"], ro["successes"]) == (8, 1, 7)
    assert "after 4 attempts" in ro["halt_reason"]
