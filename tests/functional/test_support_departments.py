"""The vendor's two departments: escalation support -> development and back, development-request reviews
told to the customer in their language, the version that implements a request, and requests taken by phone."""
from __future__ import annotations

from sqlalchemy import select

from factories import create_component, publish


def _setup(app, client, auth):
    admin = auth.headers("admin")
    assert client.post("/api/v1/customers", json={"name": "Ромашка", "contact_email": "it@romashka.example"},
                       headers=admin).status_code == 201
    from release_server.db import db
    from release_server.fleet.services import get_customer, set_customer_defaults

    with app.app_context():
        set_customer_defaults(db.session, get_customer(db.session, "Ромашка"), locale="ru", timezone=None)
        db.commit()
    return admin


def _mails(app, number):
    from release_server.db import db
    from release_server.support.models import MailMessage, Ticket

    with app.app_context():
        tid = db.session.scalar(select(Ticket.id).where(Ticket.number == number))
        return [(m.kind, m.to_addr, m.body) for m in db.session.scalars(
            select(MailMessage).where(MailMessage.ticket_id == tid).order_by(MailMessage.id))]


def test_phone_request_escalation_review_and_the_implementing_version(app, client, auth):
    admin = _setup(app, client, auth)
    support = auth.headers("support")
    resp = client.post("/api/v1/tickets", json={
        "subject": "Export invoices to CSV", "description": "Asked on the phone by the accountant", "kind":
        "development", "customer": "Ромашка", "requester_email": "anna@romashka.example", "source": "phone"},
        headers=support)
    assert resp.status_code == 201, resp.json
    t = resp.json
    number = t["number"]
    assert (t["source"], t["department"], t["requester_email"]) == ("phone", "support", "anna@romashka.example")
    assert [m[0] for m in _mails(app, number)] == ["registered"]  # the caller gets the number

    resp = client.post(f"/api/v1/tickets/{number}/department", json={"department": "development",
                                                                   "note": "needs a new export"}, headers=support)
    assert resp.status_code == 200 and resp.json["department"] == "development"
    entry = [e for e in resp.json["timeline"] if e["kind"] == "department"][-1]
    assert entry["data"] == {"field": "department", "from": "support", "to": "development"}
    assert "development department" in entry["body"] and entry["public"] is False
    queue = client.get("/api/v1/tickets?department=development", headers=support).json["items"]
    assert [q["number"] for q in queue] == [number]
    assert client.get("/api/v1/tickets?department=support", headers=support).json["items"] == []
    again = client.post(f"/api/v1/tickets/{number}/department", json={"department": "development"}, headers=support)
    assert again.status_code == 400 and again.json["error"]["field"] == "department"

    # declining needs a reason; accepting tells the customer in Russian
    bad = client.post(f"/api/v1/tickets/{number}/review", json={"outcome": "declined"}, headers=support)
    assert bad.status_code == 400 and bad.json["error"]["field"] == "reason"
    resp = client.post(f"/api/v1/tickets/{number}/review", json={"outcome": "accepted"}, headers=support)
    assert resp.status_code == 200 and resp.json["review"] == "accepted"
    kind, to, body = _mails(app, number)[-1]
    assert to == "anna@romashka.example" and "рассмотрен и принят" in body

    # a release that implements it: the customer learns the version, in Russian
    resp = client.post(f"/api/v1/tickets/{number}/department", json={"department": "support"}, headers=support)
    assert resp.json["department"] == "support"
    create_component(client, admin, "server")
    resp = publish(client, admin, "server", "3.1", channels=["stable"], fixes=[number])
    assert resp.status_code == 201 and resp.json["fixes"] == [number]
    detail = client.get(f"/api/v1/tickets/{number}", headers=support).json
    assert detail["fixed_by"] == [{"component": "server", "version": "3.1"}]
    assert any(e["kind"] == "fix_linked" and "Implemented in server 3.1" in e["body"] and e["public"]
               for e in detail["timeline"])
    kind, to, body = _mails(app, number)[-1]
    assert "реализован в server 3.1" in body


def test_declined_request_is_processed_with_the_reason(app, client, auth):
    _setup(app, client, auth)
    support = auth.headers("support")
    number = client.post("/api/v1/tickets", json={"subject": "Dark theme", "kind": "development",
                                                  "customer": "Ромашка"}, headers=support).json["number"]
    resp = client.post(f"/api/v1/tickets/{number}/review", json={"outcome": "declined",
                                                                "reason": "the new interface has one"},
                       headers=support)
    assert resp.status_code == 200 and resp.json["status"] == "processed"
    assert resp.json["review_reason"] == "the new interface has one"
    kind, to, body = _mails(app, number)[-1]
    assert kind == "processed" and to == "it@romashka.example"
    assert "отклонён: the new interface has one" in body
    # only development requests are reviewed
    other = client.post("/api/v1/tickets", json={"subject": "Slow", "customer": "Ромашка"}, headers=support).json
    bad = client.post(f"/api/v1/tickets/{other['number']}/review", json={"outcome": "accepted"}, headers=support)
    assert bad.status_code == 400 and bad.json["error"]["field"] == "kind"


def test_phone_source_is_for_staff_and_names_the_contact(app, client, auth):
    _setup(app, client, auth)
    support = auth.headers("support")
    bad = client.post("/api/v1/tickets", json={"subject": "Call", "source": "phone"}, headers=support)
    assert bad.status_code == 400 and bad.json["error"]["field"] == "requester_email"
    bad = client.post("/api/v1/tickets", json={"subject": "Call", "source": "fax"}, headers=support)
    assert bad.status_code == 400


def test_cli_phone_department_and_review(app, auth):
    _setup(app, app.test_client(), auth)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["tickets", "phone", "--customer", "Ромашка", "--contact", "anna@romashka.example",
                                 "--subject", "Export to CSV", "--kind", "development"])
    assert result.exit_code == 0, result.output
    number = result.output.strip()
    result = runner.invoke(args=["tickets", "department", number, "development", "-m", "new export"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(args=["tickets", "review", number, "declined"])
    assert result.exit_code == 1 and "why" in result.output
    result = runner.invoke(args=["tickets", "review", number, "accepted"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(args=["tickets", "phone", "--customer", "Ромашка", "--contact", "not-an-address",
                                 "--subject", "x"])
    assert result.exit_code == 1 and "not an e-mail address" in result.output


def test_console_registers_a_phone_request_in_the_callers_name(app, client, auth):
    import re

    from release_server.accounts import services as accounts
    from release_server.db import db
    from release_server.fleet.services import get_customer
    from release_server.support.models import Ticket

    _setup(app, client, auth)
    with app.app_context():
        accounts.create_user(db.session, "olga", "correct horse battery", "support")
        db.commit()
        customer_id = get_customer(db.session, "Ромашка").id

    def csrf(html):
        return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)

    client.set_cookie("lang", "ru")
    login = client.get("/console/login").text
    assert client.post("/console/login", data={"username": "olga", "password": "correct horse battery",
                                               "csrf_token": csrf(login)}).status_code == 302
    assert 'href="/console/tickets/phone"' in client.get("/console/tickets").text
    page = client.get("/console/tickets/phone").text
    assert "Зарегистрировать обращение по телефону" in page and "Register" not in page
    form = {"customer": str(customer_id), "contact": "not an address", "contact_name": "Анна",
            "kind": "incident", "priority": "high", "subject": "Не печатаются счета",
            "description": "Звонила бухгалтер", "csrf_token": csrf(page)}
    refused = client.post("/console/tickets/phone", data=form)
    assert refused.status_code == 400 and 'id="f-contact-error"' in refused.text
    with app.app_context():
        assert db.session.scalar(select(Ticket.id).where(Ticket.source == "phone")) is None  # nothing stored
    done = client.post("/console/tickets/phone", data={**form, "contact": "Anna@Romashka.example"})
    assert done.status_code == 302
    number = done.headers["Location"].rsplit("/", 1)[1]
    with app.app_context():
        t = db.session.scalar(select(Ticket).where(Ticket.number == number))
        assert (t.source, t.requester_email, t.requester_name, t.priority) == (
            "phone", "anna@romashka.example", "Анна", "high")
        assert t.customer.name == "Ромашка"
    (registered,) = [m for m in _mails(app, number) if m[0] == "registered"]
    assert registered[1] == "anna@romashka.example" and number in registered[2]
