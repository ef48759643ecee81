"""The ticket desk in the console: sorting, paging, bulk changes, saved filters, composer, canned replies,
merging, CC, display names; and the rules behind them in ``support.desk`` and ``support.services``."""
from __future__ import annotations

import re
from typing import Any

import pytest

from factories import create_component, publish

PASSWORD = "correct horse battery"


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def person(app: Any, url: str, **fields: str) -> Any:
    c = app.test_client()
    page = c.get(url).text
    assert c.post(url, data={**fields, "csrf_token": csrf_of(page)}).status_code == 302
    return c


def post(client: Any, url: str, data: Any, page: str) -> Any:
    token = csrf_of(client.get(page).text)
    if isinstance(data, list):
        from werkzeug.datastructures import MultiDict

        return client.post(url, data=MultiDict([*data, ("csrf_token", token)]))
    return client.post(url, data={**data, "csrf_token": token})


def numbers_on(html: str) -> list[str]:
    return re.findall(r'<tr class="prio-[a-z]+" data-number="([^"]+)">', html)


@pytest.fixture
def desk_world(app: Any, client: Any, auth: Any) -> dict[str, Any]:
    from release_server.accounts import services as accounts
    from release_server.db import db
    from release_server.fleet import services as fleet
    from release_server.support import customers
    from release_server.support import services as support

    headers = auth.headers("admin")
    with app.app_context():
        accounts.create_user(db.session, "sue", PASSWORD, "support")
        accounts.create_user(db.session, "bob", PASSWORD, "support")
        accounts.create_user(db.session, "ivan", PASSWORD, "support").locale = "ru"
        acme = fleet.create_customer(db.session, "Acme", "it@acme.example", ["acme.example"])
        zeta = fleet.create_customer(db.session, "Zeta", "it@zeta.example", ["zeta.example"])
        customers.create_customer_user(db.session, acme, "ann@acme.example", "Ann", PASSWORD)
        customers.create_customer_user(db.session, acme, "carl@acme.example", "Carl", PASSWORD)
        customers.create_customer_user(db.session, zeta, "zoe@zeta.example", "Zoe", PASSWORD)
        numbers = []
        for i, (cust, prio, subject) in enumerate([(acme, "low", "Alpha printer"), (acme, "urgent", "Beta crash"),
                                                   (zeta, "normal", "Gamma question"),
                                                   (acme, "high", "Delta report")]):
            actor = support.Actor(cust.contact_email, "customer", customer_id=cust.id, email=cust.contact_email)
            t = support.create_ticket(db.session, actor, subject=subject, description="text", kind="incident",
                                      customer=cust, requester_email="ann@acme.example" if cust is acme
                                      else "zoe@zeta.example", source="portal")
            t.priority = prio
            numbers.append(t.number)
        db.commit()
    return {"headers": headers, "numbers": numbers}


def test_queue_sorts_by_each_column_both_ways(app: Any, desk_world: dict) -> None:
    n = desk_world["numbers"]
    sue = person(app, "/console/login", username="sue", password=PASSWORD)
    by_prio = numbers_on(sue.get("/console/tickets?sort=priority&dir=desc").text)
    assert by_prio == [n[1], n[3], n[2], n[0]]  # urgent, high, normal, low: by urgency, not by name
    assert numbers_on(sue.get("/console/tickets?sort=priority&dir=asc").text) == [n[0], n[2], n[3], n[1]]
    assert numbers_on(sue.get("/console/tickets?sort=subject&dir=asc").text) == [n[0], n[1], n[3], n[2]]
    assert numbers_on(sue.get("/console/tickets?sort=number&dir=desc").text) == n[::-1]
    page = sue.get("/console/tickets?sort=customer&dir=asc").text
    assert numbers_on(page)[-1] == n[2] and 'aria-sort="ascending"' in page
    # an unknown sort falls back to the default, never an error
    assert sue.get("/console/tickets?sort=drop+table&dir=sideways").status_code == 200


def test_bulk_assign_and_status_change_name_what_was_refused(app: Any, desk_world: dict) -> None:
    from release_server.db import db
    from release_server.support.models import Ticket

    n = desk_world["numbers"]
    sue = person(app, "/console/login", username="sue", password=PASSWORD)
    resp = post(sue, "/console/tickets/bulk", [("action", "assign"), ("assignee", "bob"), ("tickets", n[0]),
                                               ("tickets", n[1])], "/console/tickets")
    assert resp.status_code == 302
    with app.app_context():
        got = {t.number: t for t in db.session.query(Ticket)}
        from release_server.accounts.models import User

        bob = db.session.query(User).filter_by(username="bob").one()
        assert got[n[0]].assignee_id == bob.id and got[n[1]].assignee_id == bob.id and got[n[2]].assignee_id is None
    # close one, then ask to set "in progress" on two: the closed one may not go there directly? it may (reopen);
    # a ticket number that does not exist is named and the others change
    resp = post(sue, "/console/tickets/bulk", [("action", "status"), ("status", "in_progress"), ("tickets", n[2]),
                                               ("tickets", "ACME-999999")], "/console/tickets")
    assert resp.status_code == 302
    page = sue.get(resp.headers["Location"]).text
    assert "1 tickets changed." in page and "ACME-999999 unchanged" in page
    with app.app_context():
        assert db.session.query(Ticket).filter_by(number=n[2]).one().status == "in_progress"
    none = post(sue, "/console/tickets/bulk", {"action": "assign", "assignee": "bob"}, "/console/tickets")
    assert none.status_code == 400 and 'href="#select-all"' in none.text


def test_saved_filters_show_their_counts_and_belong_to_one_person(app: Any, desk_world: dict) -> None:
    sue = person(app, "/console/login", username="sue", password=PASSWORD)
    acme_id = re.search(r'<option value="(\d+)"\s*>Acme</option>', sue.get("/console/tickets").text).group(1)
    resp = post(sue, "/console/tickets/saved-filters", {"name": "Acme open", "customer": acme_id, "status": "open",
                                                        "evil": "x"}, "/console/tickets")
    assert resp.status_code == 302
    page = sue.get("/console/tickets").text
    assert re.search(r'>Acme open <span class="count">3</span></a>', page)
    bob = person(app, "/console/login", username="bob", password=PASSWORD)
    assert "Acme open" not in bob.get("/console/tickets").text
    fid = re.search(r'/console/tickets/saved-filters/(\d+)/delete', page).group(1)
    assert post(bob, f"/console/tickets/saved-filters/{fid}/delete", {}, "/console/tickets").status_code == 404
    assert post(sue, f"/console/tickets/saved-filters/{fid}/delete", {}, "/console/tickets").status_code == 302
    assert 'class="count"' not in sue.get("/console/tickets").text


def test_composer_modes_canned_replies_and_reply_assigns_the_replier(app: Any, desk_world: dict) -> None:
    from release_server.accounts.models import User
    from release_server.db import db
    from release_server.support.models import MailMessage, Ticket, TicketEvent

    number = desk_world["numbers"][0]
    url = f"/console/tickets/{number}"
    sue = person(app, "/console/login", username="sue", password=PASSWORD)
    assert post(sue, "/console/canned-replies", {"title": "Logs please", "body": "Please send the agent log."},
                "/console/canned-replies").status_code == 302
    dup = post(sue, "/console/canned-replies", {"title": "logs please", "body": "x"}, "/console/canned-replies")
    assert dup.status_code == 400 and 'id="canned-title-error"' in dup.text
    page = sue.get(url).text
    cid = re.search(r'<option value="(\d+)" data-body="Please send the agent log.">Logs please</option>', page).group(1)
    assert "Please send the agent log.</textarea>" in sue.get(f"{url}?canned={cid}").text  # without script too
    # an internal note through the composer: not public, no mail
    assert post(sue, f"{url}/compose", {"mode": "note", "body": "only for us"}, url).status_code == 302
    # a reply: public, mailed, and the unassigned ticket is now sue's
    assert post(sue, f"{url}/compose", {"mode": "reply", "body": "We are on it."}, url).status_code == 302
    empty = post(sue, f"{url}/compose", {"mode": "request_info", "body": ""}, url)
    assert empty.status_code == 400 and 'id="compose-body-error"' in empty.text
    with app.app_context():
        t = db.session.query(Ticket).filter_by(number=number).one()
        sue_id = db.session.query(User).filter_by(username="sue").one().id
        assert t.assignee_id == sue_id and t.status == "in_progress"
        events = {e.body: e.public for e in db.session.query(TicketEvent).filter_by(ticket_id=t.id) if e.body}
        assert events["only for us"] is False and events["We are on it."] is True
        mails = [m.body for m in db.session.query(MailMessage).filter_by(ticket_id=t.id, kind="reply")]
        assert len(mails) == 1 and "sue" not in mails[0]


def test_merge_in_the_console_follows_the_merge_rules(app: Any, desk_world: dict) -> None:
    from release_server.db import db
    from release_server.support.models import Ticket

    n = desk_world["numbers"]
    sue = person(app, "/console/login", username="sue", password=PASSWORD)
    other_customer = post(sue, f"/console/tickets/{n[0]}/merge", {"into": n[2]}, f"/console/tickets/{n[0]}")
    assert other_customer.status_code == 400 and 'id="merge-into-error"' in other_customer.text
    nowhere = post(sue, f"/console/tickets/{n[0]}/merge", {"into": "NOPE-1"}, f"/console/tickets/{n[0]}")
    assert nowhere.status_code == 400
    ok = post(sue, f"/console/tickets/{n[0]}/merge", {"into": n[1]}, f"/console/tickets/{n[0]}")
    assert ok.status_code == 302 and ok.headers["Location"].endswith(f"/console/tickets/{n[1]}")
    with app.app_context():
        src = db.session.query(Ticket).filter_by(number=n[0]).one()
        assert src.status == "closed" and src.merged_into_id is not None


def test_cc_copies_mails_to_the_customers_other_contacts_only(app: Any, desk_world: dict) -> None:
    from release_server.db import db
    from release_server.support.models import MailMessage, Ticket

    number = desk_world["numbers"][0]
    url = f"/console/tickets/{number}"
    sue = person(app, "/console/login", username="sue", password=PASSWORD)
    page = sue.get(url).text
    assert "<option>carl@acme.example</option>" in page and "zoe@zeta.example" not in page
    stranger = post(sue, f"{url}/cc", {"email": "zoe@zeta.example"}, url)
    assert stranger.status_code == 400 and 'id="cc-email-error"' in stranger.text
    assert post(sue, f"{url}/cc", {"contact": "carl@acme.example"}, url).status_code == 302
    assert post(sue, f"{url}/cc", {"email": "boss@acme.example"}, url).status_code == 302  # the customer's domain
    again = post(sue, f"{url}/cc", {"email": "carl@acme.example"}, url)
    assert again.status_code == 400
    assert post(sue, f"{url}/compose", {"mode": "reply", "body": "Fixed."}, url).status_code == 302
    with app.app_context():
        t = db.session.query(Ticket).filter_by(number=number).one()
        to = sorted(m.to_addr for m in db.session.query(MailMessage).filter_by(ticket_id=t.id, kind="reply"))
        assert to == ["ann@acme.example", "boss@acme.example", "carl@acme.example"]
    assert "Copies (CC): — → carl@acme.example" in sue.get(url).text  # the timeline names the field, translated
    assert post(sue, f"{url}/cc", {"remove": "boss@acme.example"}, url).status_code == 302
    assert "boss@acme.example" not in sue.get(url).text.split('id="cc-card"')[1].split("</section>")[0]


def test_customers_see_a_display_name_never_the_login_name(app: Any, desk_world: dict) -> None:
    from release_server.db import db
    from release_server.support.models import MailMessage

    number = desk_world["numbers"][0]
    url = f"/console/tickets/{number}"
    sue = person(app, "/console/login", username="sue", password=PASSWORD)
    assert post(sue, f"{url}/compose", {"mode": "reply", "body": "First answer."}, url).status_code == 302
    ann = person(app, "/portal/login", email="ann@acme.example", password=PASSWORD)
    portal = ann.get(f"/portal/tickets/{number}").text
    assert "Support team" in portal and "sue" not in portal
    long = post(sue, "/preferences", {"lang": "", "timezone": "", "display_name": "x" * 121}, "/preferences")
    assert long.status_code == 400 and 'id="pref-display-name-error"' in long.text
    assert post(sue, "/preferences", {"lang": "", "timezone": "", "display_name": "Susan from support"},
                "/preferences").status_code == 302
    assert post(sue, f"{url}/compose", {"mode": "reply", "body": "Second answer."}, url).status_code == 302
    portal = ann.get(f"/portal/tickets/{number}").text
    assert "Susan from support" in portal and ">sue<" not in portal and " sue " not in portal
    with app.app_context():
        last = db.session.query(MailMessage).filter_by(kind="reply").order_by(MailMessage.id.desc()).first()
        assert "Susan from support" in last.body and "sue" not in last.body.replace("Susan", "")


def test_releases_and_rollouts_lists_are_paged(app: Any, client: Any, auth: Any) -> None:
    from release_server.accounts import services as accounts
    from release_server.db import db

    headers = auth.headers("admin")
    create_component(client, headers, "server")
    for i in range(32):
        assert publish(client, headers, "server", f"1.{i}.0", channels=["stable"]).status_code == 201
    with app.app_context():
        accounts.create_user(db.session, "pub", PASSWORD, "publisher")
        db.commit()
    pub = person(app, "/console/login", username="pub", password=PASSWORD)
    first = pub.get("/console/releases?component=server").text
    assert "1.31.0" in first and ">1.0.0<" not in first and "Page 1 of 2" in first
    second = pub.get("/console/releases?component=server&page=2").text
    assert ">1.0.0<" in second and ">1.31.0<" not in second
    assert pub.get("/console/releases?component=server&page=x").status_code == 200
    for i in range(31):
        client.post("/api/v1/rollouts", json={"component": "server", "version": f"1.{i}.0"}, headers=headers)
    ro = pub.get("/console/rollouts").text
    assert "31 rollouts" in ro and "Page 1 of 2" in ro
    assert "server 1.0.0<" in pub.get("/console/rollouts?page=2").text


def test_bulk_update_refuses_per_ticket_and_keeps_the_rest(app: Any, desk_world: dict) -> None:
    from release_server.db import db
    from release_server.errors import ValidationError
    from release_server.support import services as support
    from release_server.support.models import Ticket

    n = desk_world["numbers"]
    with app.app_context():
        staff = support.Actor("sue", "staff")
        internal = support.create_ticket(db.session, staff, subject="halt", kind="problem", internal=True,
                                         source="api")
        result = support.bulk_update(db.session, staff, [n[0], internal.number, n[0]],
                                     {"status": "waiting_for_customer", "kind": "problem"})
        assert result.done == [n[0]] and [num for num, _e in result.refused] == [internal.number]
        db.commit()
        assert db.session.query(Ticket).filter_by(number=n[0]).one().kind == "incident"  # only assignee/status
        with pytest.raises(ValidationError):
            support.bulk_update(db.session, staff, [], {"status": "closed"})
        with pytest.raises(ValidationError):
            support.bulk_update(db.session, staff, [n[1]], {"kind": "problem"})


def test_customers_list_is_paged(app: Any, desk_world: dict) -> None:
    from release_server.db import db
    from release_server.fleet import services as fleet

    with app.app_context():
        for i in range(55):
            fleet.create_customer(db.session, f"Customer {i:02d}", None, [])
        db.commit()
    sue = person(app, "/console/login", username="sue", password=PASSWORD)
    first = sue.get("/console/customers").text
    assert "Page 1 of 2" in first
    second = sue.get("/console/customers?page=2").text
    assert second.count("/console/customers/") < first.count("/console/customers/")
