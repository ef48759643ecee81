"""The fix loop in the console and the portal: name the fix from a group, restrict it to the affected,
see the installations follow, the figures, and the customer's view of their own fix."""
from __future__ import annotations

from typing import Any

from factories import publish
from functional.test_web_tickets import customer, post, staff, world  # noqa: F401 - the fixture


def test_fix_for_the_affected_from_the_group_page(app: Any, client: Any, world: dict) -> None:  # noqa: F811
    headers, number = world["headers"], world["number"]
    gid = client.get(f"/api/v1/tickets/{number}", headers=headers).json["failure_group_id"]
    sue = staff(app)
    page = sue.get(f"/console/failure-groups/{gid}")
    assert page.status_code == 200 and 'id="fix-form"' in page.text and "No release is named as the fix yet." \
        in page.text

    # an unknown version is refused next to its field
    resp = post(sue, f"/console/failure-groups/{gid}/fix", {"version": "9.9", "restrict": "1"},
                f"/console/failure-groups/{gid}")
    assert resp.status_code == 400 and 'id="f-fix-version-error"' in resp.text

    # a restricted release (published for someone else) is picked and widened to the affected
    other = client.post("/api/v1/customers", json={"name": "Initech"}, headers=headers)
    assert other.status_code == 201
    assert publish(client, headers, "server", "2.0.1", channels=["stable"],
                   restricted_customers=["Initech"]).status_code == 201
    resp = post(sue, f"/console/failure-groups/{gid}/fix", {"version": "2.0.1", "restrict": "1"},
                f"/console/failure-groups/{gid}")
    assert resp.status_code == 302, resp.text
    restr = client.get("/api/v1/components/server/releases/2.0.1/restrictions", headers=headers).json
    assert world["installation"] in restr["installations"]
    page = sue.get(f"/console/failure-groups/{gid}")
    assert 'id="group-fixed-by"' in page.text and "2.0.1" in page.text and "Waiting for the fix" in page.text

    # the installation takes it (what the report hook does for a successful report): fixed, ticket processed
    with app.app_context():
        from release_server.db import db
        from release_server.fleet.models import Installation
        from release_server.support import fixes

        inst = db.session.get(Installation, world["installation"])
        assert fixes.record_fixes(db.session, inst, {"server": "2.0.1"}) == [gid]
        db.commit()
    page = sue.get(f"/console/failure-groups/{gid}")
    assert 'id="group-figures"' in page.text and "Fix installed" in page.text
    assert client.get(f"/api/v1/tickets/{number}", headers=headers).json["status"] == "processed"

    ticket_page = sue.get(f"/console/tickets/{number}")
    assert 'id="ticket-fixed-by"' in ticket_page.text and "server 2.0.1" in ticket_page.text
    release_page = sue.get("/console/releases/server/2.0.1")
    assert 'id="release-fixes"' in release_page.text and f"Failure group #{gid}" in release_page.text

    customer_id = client.get("/api/v1/customers", headers=headers).json
    cid = next(c["id"] for c in (customer_id["items"] if isinstance(customer_id, dict) else customer_id)
               if c["name"] == "Acme")
    cust_page = sue.get(f"/console/customers/{cid}")
    assert 'id="customer-fix-figures"' in cust_page.text and f"Failure group #{gid}" in cust_page.text

    ann = customer(app, "ann@acme.example")
    portal = ann.get(f"/portal/tickets/{number}")
    assert 'id="ticket-fixed-by"' in portal.text and "server 2.0.1" in portal.text
    ru = ann.get(f"/portal/tickets/{number}", headers={"Accept-Language": "ru"})
    assert ru.status_code == 200

    # named by mistake: taken back from the group page (audited); the group is unresolved again
    resp = post(sue, f"/console/failure-groups/{gid}/unfix", {"version": "2.0.1"}, f"/console/failure-groups/{gid}")
    assert resp.status_code == 302
    got = client.get(f"/api/v1/failure-groups/{gid}", headers=headers).json
    assert got["fixed_by"] == [] and got["state"] == "unresolved"


def test_department_and_review_forms(app: Any, client: Any, world: dict) -> None:  # noqa: F811
    headers, number = world["headers"], world["number"]
    sue = staff(app)
    page = sue.get(f"/console/tickets/{number}")
    assert 'id="department-form"' in page.text and 'id="review-form"' not in page.text  # not a development request
    resp = post(sue, f"/console/tickets/{number}/department", {"department": "development", "note": "bug"},
                f"/console/tickets/{number}")
    assert resp.status_code == 302
    assert client.get(f"/api/v1/tickets/{number}", headers=headers).json["department"] == "development"
    listing = sue.get("/console/tickets?department=development&status=")
    assert number in listing.text
    assert number not in sue.get("/console/tickets?department=support&status=").text

    dev = client.post("/api/v1/tickets", json={"subject": "CSV export", "kind": "development", "customer": "Acme",
                                               "requester_email": "ann@acme.example"}, headers=headers).json
    page = sue.get(f"/console/tickets/{dev['number']}")
    assert 'id="review-form"' in page.text
    resp = post(sue, f"/console/tickets/{dev['number']}/review", {"outcome": "declined", "reason": ""},
                f"/console/tickets/{dev['number']}")
    assert resp.status_code == 400 and 'id="review-reason-error"' in resp.text
    resp = post(sue, f"/console/tickets/{dev['number']}/review", {"outcome": "declined", "reason": "out of scope"},
                f"/console/tickets/{dev['number']}")
    assert resp.status_code == 302
    got = client.get(f"/api/v1/tickets/{dev['number']}", headers=headers).json
    assert (got["review"], got["status"]) == ("declined", "processed")
    ann = customer(app, "ann@acme.example")
    assert "out of scope" in ann.get(f"/portal/tickets/{dev['number']}").text
