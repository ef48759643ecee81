"""System texts are stored as codes and rendered in the reader's language: pages, mails, audit, errors, times."""
from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

from factories import create_component, enroll, publish

PASSWORD = "correct horse battery"


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def login(client: Any, url: str, **fields: str) -> Any:
    return client.post(url, data={**fields, "csrf_token": csrf_of(client.get(url).text)})


def post(client: Any, url: str, data: dict, page: str, **kw: Any) -> Any:
    return client.post(url, data={**data, "csrf_token": csrf_of(client.get(page).text)}, **kw)


def report(client: Any, inst: dict, **over: Any) -> None:
    body = {"id": str(uuid.uuid4()), "component": "server", "from_version": "1.0.0", "to_version": "2.0.0",
            "outcome": "rolled_back", "stage": "post-install", "error_code": "migration_failed",
            "error_message": "web did not answer on :8080 within 30 s", "log_tail": "ERROR: timeout"}
    body.update(over)
    resp = client.post("/api/v1/reports", headers={"Authorization": f"Bearer {inst['token']}"},
                       json={"reports": [body]})
    assert resp.status_code == 200, resp.json


@pytest.fixture
def world(app: Any, client: Any, auth: Any) -> dict[str, Any]:
    """A Russian customer (default language ru) with a Russian portal user, an English one, and a failure."""
    from release_server.accounts import services as accounts
    from release_server.db import db
    from release_server.fleet import services as fleet
    from release_server.support import customers

    headers = auth.headers("admin")
    create_component(client, headers, "server")
    assert publish(client, headers, "server", "2.0.0", channels=["stable"]).status_code == 201
    with app.app_context():
        accounts.create_user(db.session, "sue", PASSWORD, "support")
        accounts.create_user(db.session, "ivan", PASSWORD, "support").locale = "ru"
        ru = fleet.create_customer(db.session, "Ромашка", "it@romashka.example", ["romashka.example"])
        fleet.set_customer_defaults(db.session, ru, locale="ru", timezone="Europe/Moscow")
        en = fleet.create_customer(db.session, "Acme", "it@acme.example", ["acme.example"])
        customers.create_customer_user(db.session, ru, "it@romashka.example", "Ирина", PASSWORD)
        customers.create_customer_user(db.session, en, "it@acme.example", "Ann", PASSWORD)
        db.commit()
    ru_inst = enroll(client, headers, "Ромашка", name="moscow", installed={"server": "1.0.0"})
    en_inst = enroll(client, headers, "Acme", name="london", installed={"server": "1.0.0"})
    report(client, ru_inst)
    report(client, en_inst)
    tickets = {c: client.get(f"/api/v1/tickets?customer={c}", headers=headers).json["items"][0]["number"]
               for c in ("Ромашка", "Acme")}
    return {"headers": headers, "tickets": tickets, "ru_inst": ru_inst, "en_inst": en_inst}


def person(app: Any, url: str, **fields: str) -> Any:
    c = app.test_client()
    assert login(c, url, **fields).status_code == 302
    return c


def test_the_same_event_renders_in_each_readers_language(app: Any, world: dict) -> None:
    from release_server.db import db
    from release_server.messages import render
    from release_server.support.models import Ticket, TicketEvent

    number = world["tickets"]["Ромашка"]
    with app.app_context():
        t = db.session.query(Ticket).filter_by(number=number).one()
        assert t.subject_code == "failure.subject.stage_code" and t.subject_params["component"] == "server"
        assert t.subject == "Update of server to 2.0.0 failed at post-install (migration_failed)"  # English kept
        first = db.session.query(TicketEvent).filter_by(ticket_id=t.id, kind="created").one()
        assert first.body_code == "failure.description"
        assert "Сообщение: web did not answer on :8080 within 30 s" in render(
            {"code": first.body_code, "params": first.body_params}, "ru")
    english = person(app, "/console/login", username="sue", password=PASSWORD).get(f"/console/tickets/{number}").text
    russian = person(app, "/console/login", username="ivan", password=PASSWORD).get(f"/console/tickets/{number}").text
    assert "Update of server to 2.0.0 failed at post-install" in english
    assert "Не удалось обновить server до 2.0.0 на этапе post-install" in russian
    assert "Update of server" not in russian and "rolled back to the previous release" not in russian
    assert "возвращена предыдущая версия" in russian  # the failure report line of the timeline
    # the first event shows the real message, not the grouping key with placeholders
    assert "web did not answer on :8080 within 30 s" in english and "&lt;n&gt;" not in english
    assert "Отчёт о сбое" in russian and "Failure report" not in russian  # the source, as a word
    portal = person(app, "/portal/login", email="it@romashka.example", password=PASSWORD)
    page = portal.get(f"/portal/tickets/{number}").text
    assert "Не удалось обновить server" in page and "Этап: post-install" in page


def test_mail_to_a_russian_contact_is_russian_and_to_an_english_one_english(app: Any, world: dict) -> None:
    from release_server.db import db
    from release_server.support.models import MailMessage

    with app.app_context():
        mails = {m.to_addr: m for m in db.session.query(MailMessage).filter_by(direction="out",
                                                                               kind="failure_opened")}
        ru, en = mails["it@romashka.example"], mails["it@acme.example"]
        assert "Не удалось обновить server до 2.0.0" in ru.subject and world["tickets"]["Ромашка"] in ru.subject
        assert "Обновление на одной из ваших установок не завершилось" in ru.body
        assert "Компонент: server" in ru.body and "Служба поддержки" in ru.body
        assert not re.search(r"[A-Za-z]{4,} (the|your|of) ", ru.body)  # no English sentence in it
        assert en.subject.endswith("Update of server to 2.0.0 failed at post-install (migration_failed)")
        assert "An update on one of your installations did not complete" in en.body


def test_a_contacts_own_language_beats_the_customers(app: Any, world: dict) -> None:
    from release_server.db import db
    from release_server.support import customers

    with app.app_context():
        user = customers.get_customer_user(db.session, "it@romashka.example")
        assert customers.contact_locale(db.session, "it@romashka.example", user.customer_id) == "ru"
        user.locale = "en"
        db.commit()
        assert customers.contact_locale(db.session, "it@romashka.example", user.customer_id) == "en"
        assert customers.contact_locale(db.session, "someone@else.example", user.customer_id) == "ru"
        assert customers.contact_locale(db.session, "someone@else.example", None) == "en"


def test_old_rows_with_english_text_still_display(app: Any, world: dict) -> None:
    from release_server.db import db
    from release_server.support.models import Ticket, TicketEvent

    number = world["tickets"]["Acme"]
    with app.app_context():
        t = db.session.query(Ticket).filter_by(number=number).one()
        t.subject, t.subject_code, t.subject_params = "Written before codes existed", None, None
        ev = db.session.query(TicketEvent).filter_by(ticket_id=t.id, kind="created").one()
        ev.body, ev.body_code, ev.body_params = "An old plain body", None, None
        db.commit()
    page = person(app, "/console/login", username="ivan", password=PASSWORD).get(f"/console/tickets/{number}").text
    assert "Written before codes existed" in page and "An old plain body" in page


def test_halt_ticket_and_reason_in_russian(app: Any, client: Any, world: dict) -> None:
    from release_server.db import db
    from release_server.rollouts import services as rollouts
    from release_server.rollouts.models import Rollout

    rid = client.post("/api/v1/rollouts", json={"component": "server", "version": "2.0.0", "start": True},
                      headers=world["headers"]).json["id"]
    with app.app_context():
        ro = db.session.get(Rollout, rid)
        ro.attempts, ro.failures, ro.min_attempts = 10, 5, 5
        rollouts.halt(db.session, ro, "failure rate 50.0% above 20.0% after 10 attempts", automatic=True)
        db.commit()
    ivan = person(app, "/console/login", username="ivan", password=PASSWORD)
    page = ivan.get(f"/console/rollouts/{rid}").text
    assert "доля сбоев 50 % выше порога" in page and "after 10 attempts" not in page
    assert "автоматически, по правилу доли сбоев" in page and "Кем остановлена" not in page
    number = re.search(r'/console/tickets/([A-Z]+-\d+)">', page).group(1)
    ticket = ivan.get(f"/console/tickets/{number}").text
    assert "Раскатка остановлена: server 2.0.0 в канале stable" in ticket
    assert "automatic: True" not in ticket and "failure_rate" not in ticket and "Попыток: 10" in ticket
    english = person(app, "/console/login", username="sue", password=PASSWORD).get(f"/console/tickets/{number}").text
    assert "Rollout halted: server 2.0.0 on stable" in english and "Attempts: 10, of them failed: 5 (50 %)" in english


def test_audit_actions_and_details_in_words(app: Any, world: dict) -> None:
    from release_server.accounts import services as accounts
    from release_server.db import db

    with app.app_context():
        accounts.create_user(db.session, "root", PASSWORD, "admin").locale = "ru"
        accounts.audit(db.session, "maria", "rollout.start", "rollout:1",
                       {"percent": 0.1, "automatic": True, "channels": ["stable", "beta"]})
        db.commit()
    page = person(app, "/console/login", username="root", password=PASSWORD).get("/console/audit").text
    assert "Раскатка запущена" in page and "rollout.start" not in re.sub(r'(data-action|value)="[^"]*"', "", page)
    assert "10 %" in page and "stable, beta" in page and "True" not in page and "['stable'" not in page


def test_times_show_their_zone_and_follow_the_persons_setting(app: Any, world: dict) -> None:
    ivan = person(app, "/console/login", username="ivan", password=PASSWORD)
    number = world["tickets"]["Acme"]
    assert "UTC</time>" in ivan.get(f"/console/tickets/{number}").text
    resp = post(ivan, "/preferences", {"lang": "ru", "timezone": "Asia/Yekaterinburg"}, "/preferences")
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/preferences")  # redirect after post
    page = ivan.get(f"/console/tickets/{number}").text
    assert "UTC+5</time>" in page
    assert post(ivan, "/preferences", {"lang": "ru", "timezone": "Mars/Olympus"}, "/preferences").status_code == 400
    # a customer's user reads in the customer's zone unless they chose one
    portal = person(app, "/portal/login", email="it@romashka.example", password=PASSWORD)
    assert "UTC+3" in portal.get(f"/portal/tickets/{world['tickets']['Ромашка']}").text
    # "2 days ago" carries the exact time on hover
    listing = ivan.get("/console/tickets").text
    assert re.search(r'<time datetime="[^"]+" title="\d+ [^"]+ \d{4}, \d\d:\d\d UTC\+5">', listing)


def test_service_errors_are_in_the_readers_language(app: Any, world: dict) -> None:
    ivan = person(app, "/console/login", username="ivan", password=PASSWORD)
    number = world["tickets"]["Acme"]
    resp = post(ivan, f"/console/tickets/{number}/assign", {"assignee": "nobody-here"}, f"/console/tickets/{number}")
    assert resp.status_code == 400
    assert "Нет активного сотрудника поддержки с таким именем" in resp.text
    assert "nobody-here" not in re.sub(r'<(select|option)[^>]*>[^<]*', "", resp.text.split('id="assign-user"')[0])


def test_file_sizes_in_the_readers_units(app: Any) -> None:
    from flask_babel import force_locale

    from release_server.messages import format_size

    with app.app_context():
        with force_locale("ru"):
            assert format_size(1536) == "1,5 кБ" and format_size(12) == "12 Б"
        with force_locale("en"):
            assert format_size(1536) == "1.5 kB" and format_size(3 * 1024 ** 3) == "3 GB"


def test_failure_group_pages_states_and_regression(app: Any, world: dict) -> None:
    sue = person(app, "/console/login", username="sue", password=PASSWORD)
    listing = sue.get("/console/failure-groups").text
    gid = int(re.search(r'/console/failure-groups/(\d+)"', listing).group(1))
    page = sue.get(f"/console/failure-groups/{gid}").text
    assert "web did not answer on :8080 within 30 s" in page and "ERROR: timeout" in page
    assert "Acme" in page and "Ромашка" in page and 'id="group-chart"' in page and "<svg" in page
    assert world["tickets"]["Acme"] in page
    resp = post(sue, f"/console/failure-groups/{gid}/state", {"state": "resolved", "in_version": "2.0.1"},
                f"/console/failure-groups/{gid}")
    assert resp.status_code == 302 and resp.headers["Location"].endswith(f"/console/failure-groups/{gid}")
    assert "Resolved in version 2.0.1." in sue.get(f"/console/failure-groups/{gid}").text
    assert f"/console/failure-groups/{gid}\"" not in sue.get("/console/failure-groups").text  # unresolved only
    assert f"/console/failure-groups/{gid}\"" in sue.get("/console/failure-groups?state=resolved").text
    report(app.test_client(), world["en_inst"])  # the same cause on 2.0, older than the fix: still waiting
    page = sue.get(f"/console/failure-groups/{gid}").text
    assert 'id="group-regression"' not in page and 'id="group-state">Resolved' in page
    resp = post(sue, f"/console/failure-groups/{gid}/state", {"state": "resolved", "in_version": ""},
                f"/console/failure-groups/{gid}")
    assert resp.status_code == 302 and "A new report will mark a regression." in sue.get(
        f"/console/failure-groups/{gid}").text
    report(app.test_client(), world["en_inst"])  # resolved without a version: any new report is a regression
    page = sue.get(f"/console/failure-groups/{gid}").text
    assert 'id="group-regression"' in page and 'id="group-state">Unresolved' in page
    assert f"/console/failure-groups/{gid}\"" in sue.get("/console/failure-groups?sort=count&version=2.0").text
    assert f"/console/failure-groups/{gid}\"" not in sue.get("/console/failure-groups?version=2.1").text
    bad = post(sue, f"/console/failure-groups/{gid}/state", {"state": "gone"}, f"/console/failure-groups/{gid}")
    assert bad.status_code == 400 and 'id="f-state-error"' in bad.text
    assert sue.get("/console/failure-groups?sort=nonsense&page=x&customer=abc").status_code == 200
    assert sue.get("/console/failure-groups/999999").status_code == 404


def test_failure_group_ignored_until_n_more_reports(app: Any, world: dict) -> None:
    sue = person(app, "/console/login", username="sue", password=PASSWORD)
    gid = int(re.search(r'/console/failure-groups/(\d+)"', sue.get("/console/failure-groups").text).group(1))
    assert post(sue, f"/console/failure-groups/{gid}/state", {"state": "ignored", "ignore_reports": "2"},
                f"/console/failure-groups/{gid}").status_code == 302
    report(app.test_client(), world["en_inst"])
    assert 'id="group-state">Ignored' in sue.get(f"/console/failure-groups/{gid}").text
    report(app.test_client(), world["ru_inst"])
    assert 'id="group-state">Unresolved' in sue.get(f"/console/failure-groups/{gid}").text


def test_group_references_in_the_timeline_link_to_the_group_for_staff_only(app: Any, client: Any,
                                                                           world: dict) -> None:
    from release_server.db import db
    from release_server.support import services
    from release_server.support.models import FailureGroup, Ticket

    number = world["tickets"]["Acme"]
    with app.app_context():
        t = db.session.query(Ticket).filter_by(number=number).one()
        gid = db.session.query(FailureGroup.id).scalar()
        services.add_note(db.session, t, services.SYSTEM, f"see #{gid} and <b>#x</b>")
        db.commit()
    page = person(app, "/console/login", username="sue", password=PASSWORD).get(f"/console/tickets/{number}").text
    assert f'<a href="/console/failure-groups/{gid}">#{gid}</a>' in page and "&lt;b&gt;#x&lt;/b&gt;" in page


@pytest.mark.parametrize("role, allowed", [("publisher", True), ("support", True)])
def test_failure_group_routes_by_role(app: Any, world: dict, role: str, allowed: bool) -> None:
    from release_server.accounts import services as accounts
    from release_server.db import db

    with app.app_context():
        accounts.create_user(db.session, f"{role}-x", PASSWORD, role)
        db.commit()
    c = person(app, "/console/login", username=f"{role}-x", password=PASSWORD)
    anon = app.test_client()
    for url in ("/console/failure-groups", "/console/failure-groups/1"):
        assert c.get(url).status_code == 200
        assert anon.get(url).status_code == 302  # to the login page
    assert post(c, "/console/failure-groups/1/state", {"state": "ignored"}, "/console/failure-groups/1") \
        .status_code == 302
    assert anon.post("/console/failure-groups/1/state", data={"state": "ignored"}).status_code in (302, 400, 403)


def test_replying_assigns_an_unassigned_ticket_and_customers_close_their_own(app: Any, world: dict) -> None:
    number = world["tickets"]["Acme"]
    sue = person(app, "/console/login", username="sue", password=PASSWORD)
    assert post(sue, f"/console/tickets/{number}/reply", {"body": "We are on it."},
                f"/console/tickets/{number}").status_code == 302
    assert re.search(r'<option selected>sue</option>', sue.get(f"/console/tickets/{number}").text)
    ann = person(app, "/portal/login", email="it@acme.example", password=PASSWORD)
    other = world["tickets"]["Ромашка"]
    assert post(ann, f"/portal/tickets/{other}/close", {}, f"/portal/tickets/{number}").status_code == 404
    resp = post(ann, f"/portal/tickets/{number}/close", {}, f"/portal/tickets/{number}")
    assert resp.status_code == 302 and resp.headers["Location"].endswith(f"/portal/tickets/{number}")
    assert 'id="ticket-status">Closed' in ann.get(f"/portal/tickets/{number}").text
    assert "closed by the customer" in sue.get(f"/console/tickets/{number}").text


def test_internal_ticket_refuses_customer_facing_actions(app: Any, client: Any, world: dict) -> None:
    from release_server.db import db
    from release_server.rollouts import services as rollouts
    from release_server.rollouts.models import Rollout
    from release_server.support.models import Ticket, TicketEvent

    rid = client.post("/api/v1/rollouts", json={"component": "server", "version": "2.0.0", "start": True},
                      headers=world["headers"]).json["id"]
    with app.app_context():
        ro = db.session.get(Rollout, rid)
        ro.attempts, ro.failures = 10, 6
        rollouts.halt(db.session, ro, "too many", automatic=True)
        db.commit()
        number = db.session.query(Ticket).filter_by(rollout_id=rid).one().number
    sue = person(app, "/console/login", username="sue", password=PASSWORD)
    page = sue.get(f"/console/tickets/{number}").text
    assert "Send reply" not in page and "Ask the customer" not in page and "Mark processed" not in page
    assert "Add note" in page
    for action in ("reply", "request-info", "process"):
        resp = post(sue, f"/console/tickets/{number}/{action}", {"body": "hello"}, f"/console/tickets/{number}")
        assert resp.status_code == 400 and "no customer to write to" in resp.text
    with app.app_context():
        t = db.session.query(Ticket).filter_by(number=number).one()
        assert not db.session.query(TicketEvent).filter_by(ticket_id=t.id, public=True).count()


def test_unknown_addresses_get_styled_translated_error_pages(app: Any, world: dict) -> None:
    anon = app.test_client()
    resp = anon.get("/console/no/such/page", headers={"Accept-Language": "ru"})
    assert resp.status_code == 404 and 'id="error-page"' in resp.text and "Не найдено" in resp.text
    assert 'href="/static/web/style.css"' in resp.text
    resp = anon.get("/nothing-here")
    assert resp.status_code == 404 and 'id="error-page"' in resp.text
    assert anon.get("/api/v1/nothing").json["error"]["code"] == "not_found"  # the API stays JSON
    ivan = person(app, "/console/login", username="ivan", password=PASSWORD)
    resp = ivan.get("/console/audit")
    assert resp.status_code == 403 and 'id="error-page"' in resp.text and "main-nav" in resp.text
    assert "Your role" not in resp.text and "Not allowed" not in resp.text  # in Russian


def test_enrollment_token_is_created_once_and_shown_after_the_redirect(app: Any, world: dict) -> None:
    from release_server.db import db
    from release_server.fleet.models import EnrollmentToken

    sue = person(app, "/console/login", username="sue", password=PASSWORD)
    with app.app_context():
        before = db.session.query(EnrollmentToken).count()
    resp = post(sue, "/console/customers/1/enrollment-tokens", {"max_uses": "", "expires_days": "30"},
                "/console/customers/1")
    assert resp.status_code == 302
    page = sue.get(resp.headers["Location"]).text
    assert re.search(r'<code class="secret">rse_[a-z0-9]{8}_', page)
    again = sue.get(resp.headers["Location"]).text  # a reload shows it no more and makes no new token
    assert 'class="secret"' not in again
    with app.app_context():
        assert db.session.query(EnrollmentToken).count() == before + 1


def test_rollout_page_lists_its_installations_and_widening_estimates(app: Any, client: Any, world: dict) -> None:
    from release_server.db import db
    from release_server.rollouts.models import Rollout

    rid = client.post("/api/v1/rollouts", json={"component": "server", "version": "2.0.0", "start": True,
                                                "schedule": [{"percent": 0.01, "min_hours": 1}]},
                      headers=world["headers"]).json["id"]
    ivan = person(app, "/console/login", username="ivan", password=PASSWORD)
    page = ivan.get(f"/console/rollouts/{rid}").text
    # both installations reported a rolled-back attempt at 2.0.0
    assert page.count('data-state="rolled_back"') == 2 and "Откат" in page
    assert "web did not answer on :8080 within 30 s" in page  # the attempt's message and log
    assert ivan.get(f"/console/rollouts/{rid}?inst_state=installed").text.count("data-state=") == 0
    with app.app_context():
        assert db.session.get(Rollout, rid).share == 1
    from release_server.accounts import services as accounts

    with app.app_context():
        accounts.create_user(db.session, "pub", PASSWORD, "publisher")
        db.commit()
    pub = person(app, "/console/login", username="pub", password=PASSWORD)
    confirm = pub.get(f"/console/rollouts/{rid}/widen").text
    assert re.search(r'id="widen-more">At [\d.]+%: ≈ \d more installations', confirm)
    full = post(pub, f"/console/rollouts/{rid}/widen", {"percent": "oops"}, f"/console/rollouts/{rid}/widen")
    assert full.status_code == 400


def test_installation_filters_take_a_version_prefix_and_a_component_list(app: Any, client: Any,
                                                                         world: dict) -> None:
    from release_server.db import db
    from release_server.fleet import services as fleet

    with app.app_context():
        fleet.apply_inventory(db.session, fleet.get_installation(db.session, world["en_inst"]["installation_id"]),
                              {"server": "2.4.1"})
        fleet.apply_inventory(db.session, fleet.get_installation(db.session, world["ru_inst"]["installation_id"]),
                              {"server": "2.40.0"})
        db.commit()
    sue = person(app, "/console/login", username="sue", password=PASSWORD)
    page = sue.get("/console/installations?component=server&version=2.4").text
    assert ">london</a>" in page and ">moscow</a>" not in page  # 2.4 matches 2.4.1, not 2.40.0
    assert sue.get("/console/installations?component=server&version=2.4%25").text.count("</a><div") == 0
    assert '<select id="f-component" name="component">' in page and "<option selected>server</option>" in page
