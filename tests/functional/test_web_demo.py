"""``release-server demo``: an empty instance filled through the services, and every main page renders it."""
from __future__ import annotations

import re
from typing import Any

from sqlalchemy import func, select


def test_demo_fills_an_empty_instance_once(app: Any, runner: Any) -> None:
    result = runner.invoke(args=["demo", "--password", "demo password 1"])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    assert "maria.release" in result.output and "anna.berg@nordwind.example" in result.output
    from release_server.db import db
    from release_server.fleet.models import Customer, Installation, UpdateReport
    from release_server.rollouts.models import Rollout
    from release_server.support.models import FailureGroup, Ticket

    with app.app_context():
        s = db.session
        assert s.scalar(select(func.count()).select_from(Customer)) == 5
        assert s.scalar(select(func.count()).select_from(Installation)) >= 20
        kinds = set(s.scalars(select(Ticket.kind).distinct()))
        assert kinds == {"incident", "problem", "service", "development"}
        statuses = set(s.scalars(select(Ticket.status).distinct()))
        assert {"new", "in_progress", "waiting_for_customer", "processed", "closed"} <= statuses
        halted = s.scalars(select(Rollout).where(Rollout.state == "halted")).all()
        assert len(halted) == 1 and halted[0].halt_figures["automatic"] is True
        assert s.scalar(select(func.count()).select_from(Ticket).where(Ticket.rollout_id == halted[0].id)) == 1
        assert s.scalar(select(func.count()).select_from(FailureGroup)) >= 1
        assert {r.state for r in s.scalars(select(Rollout))} == {"completed", "running", "halted", "paused", "draft"}
        # the history spreads over weeks (for the charts)
        days = {d.date() for d in s.scalars(select(UpdateReport.received_at))}
        assert len(days) > 10
    again = runner.invoke(args=["demo"])
    assert again.exit_code == 1 and "nothing done" in again.output


def test_every_main_page_renders_the_demo(app: Any, client: Any) -> None:
    from release_server import demo
    from release_server.accounts import services
    from release_server.db import db

    with app.app_context():
        services.create_user(db.session, "root", "correct horse battery", "admin")
        summary = demo.load(db.session, staff_password="demo password 1", customer_password="demo password 1")
        db.commit()
    page = client.get("/console/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    client.post("/console/login", data={"username": "root", "password": "correct horse battery", "csrf_token": token})
    pages = ["/console/", "/console/?component=web", "/console/releases", "/console/releases?component=server",
             "/console/releases/server/2.4.0", "/console/rollouts", f"/console/rollouts/{summary.halted_rollout_id}",
             f"/console/rollouts/{summary.running_rollout_id}", f"/console/rollouts/{summary.draft_rollout_id}/start",
             "/console/installations", "/console/installations?health=stale", "/console/tickets",
             "/console/tickets?status=all", f"/console/tickets/{summary.failure_ticket}",
             *[f"/console/tickets/{n}" for n in summary.tickets.values()], "/console/customers", "/console/audit"]
    for url in pages:
        resp = client.get(url)
        assert resp.status_code == 200, url
    for lang in ("ru", "en"):
        assert client.get("/console/", headers={"Accept-Language": lang}).status_code == 200
    # the demo's month of adoption is counted: the chart shows every day, none is waiting for the worker
    board = client.get("/console/?component=server").text
    assert 'id="adoption-chart"' in board and "adoption-uncounted" not in board
    portal = app.test_client()
    page = portal.get("/portal/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    email = summary.customers[0][0]
    assert portal.post("/portal/login", data={"email": email, "password": "demo password 1",
                                              "csrf_token": token}).status_code == 302
    for url in ["/portal/", "/portal/installations", "/portal/tickets/new", f"/portal/tickets/{summary.failure_ticket}",
                *[f"/portal/tickets/{n}" for n in summary.tickets.values()]]:
        assert portal.get(url).status_code == 200, url
    assert portal.get(f"/portal/tickets/{summary.other_customer_ticket}").status_code == 404
