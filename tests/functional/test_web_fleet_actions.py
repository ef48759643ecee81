"""Rollouts down to each installation (downloading state, each attempt's log), pins pages and installation actions."""
from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

from factories import create_component, enroll, publish

PASSWORD = "correct horse battery"


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def person(app: Any, username: str) -> Any:
    c = app.test_client()
    page = c.get("/console/login").text
    resp = c.post("/console/login", data={"username": username, "password": PASSWORD, "csrf_token": csrf_of(page)})
    assert resp.status_code == 302
    return c


def post(client: Any, url: str, data: dict, page: str) -> Any:
    return client.post(url, data={**data, "csrf_token": csrf_of(client.get(page).text)})


def check(client: Any, inst: dict, installed: dict) -> Any:
    return client.post("/api/v1/updates/check", json={"installed": installed},
                       headers={"Authorization": f"Bearer {inst['token']}"})


def report(client: Any, inst: dict, **over: Any) -> None:
    body = {"id": str(uuid.uuid4()), "component": "server", "from_version": "1.0.0", "to_version": "2.0.0",
            "outcome": "rolled_back", "stage": "post-install", "error_code": "migration_failed",
            "error_message": "the schema did not migrate", "log_tail": "ERROR: relation exists"}
    body.update(over)
    resp = client.post("/api/v1/reports", headers={"Authorization": f"Bearer {inst['token']}"},
                       json={"reports": [body]})
    assert resp.status_code == 200, resp.json


@pytest.fixture
def fleet_world(app: Any, client: Any, auth: Any) -> dict[str, Any]:
    from release_server.accounts import services as accounts
    from release_server.db import db

    headers = auth.headers("admin")
    create_component(client, headers, "server")
    assert publish(client, headers, "server", "1.0.0", channels=["stable"]).status_code == 201
    assert publish(client, headers, "server", "2.0.0", channels=["stable"]).status_code == 201
    client.post("/api/v1/channels", json={"name": "beta"}, headers=headers)
    client.post("/api/v1/customers", json={"name": "Acme"}, headers=headers)
    with app.app_context():
        accounts.create_user(db.session, "sue", PASSWORD, "support")
        accounts.create_user(db.session, "pub", PASSWORD, "publisher")
        accounts.create_user(db.session, "ivan", PASSWORD, "support").locale = "ru"
        db.commit()
    insts = [enroll(client, headers, "Acme", name=f"site-{n}", installed={"server": "1.0.0"}) for n in range(3)]
    rid = client.post("/api/v1/rollouts", json={"component": "server", "version": "2.0.0", "start": True,
                                                "schedule": [{"percent": 100, "min_hours": 1}]},
                      headers=headers).json["id"]
    return {"headers": headers, "insts": insts, "rollout": rid}


def flush(app: Any) -> None:
    app.extensions["seen_buffer"].flush()


def states_on_page(html: str) -> dict[str, str]:
    """{installation id: state} of the rollout page's installations table."""
    rows = re.findall(r'<tr data-state="([a-z_]+)"><td><a href="/console/installations/([^"]+)"', html)
    return {inst: state for state, inst in rows}


def test_next_state_rule() -> None:
    from release_server.fleet.lastseen import next_state

    assert next_state("up_to_date", "updating") == "updating"
    assert next_state("failing", "updating") == "failing"  # a failure stays until a report says otherwise
    assert next_state("updating", "idle") == "up_to_date"
    assert next_state("failing", "idle") == "failing"
    assert next_state("up_to_date", None) == "up_to_date"


def test_member_state_rule() -> None:
    from release_server.rollouts.members import member_state

    kw = {"runs_release": False, "latest_outcome": None, "in_share": True, "installation_state": "up_to_date"}
    assert member_state(**kw) == "offered"
    assert member_state(**{**kw, "installation_state": "updating"}) == "downloading"
    assert member_state(**{**kw, "in_share": False, "installation_state": "updating"}) == "not_in_share"
    assert member_state(**{**kw, "latest_outcome": "rolled_back"}) == "rolled_back"
    assert member_state(**{**kw, "latest_outcome": "rolled_back", "runs_release": True}) == "installed"
    assert member_state(**{**kw, "latest_outcome": "success"}) == "installed"


def test_rollout_page_shows_downloading_from_the_check_and_each_attempts_log(app: Any, client: Any,
                                                                           fleet_world: dict) -> None:
    from release_server.db import db
    from release_server.fleet.models import Installation

    a, b, c = fleet_world["insts"]
    rid = fleet_world["rollout"]
    sue = person(app, "sue")
    flush(app)
    html = sue.get(f"/console/rollouts/{rid}").text
    assert states_on_page(html) == {i["installation_id"]: "offered" for i in (a, b, c)}
    # a's check is answered with the offer: it is fetching it (noted in memory, written by the batched flush)
    assert [o["version"] for o in check(client, a, {"server": "1.0.0"}).json["offers"]] == ["2.0.0"]
    html = sue.get(f"/console/rollouts/{rid}").text
    assert states_on_page(html)[a["installation_id"]] == "offered"  # nothing written by the check itself
    flush(app)
    html = sue.get(f"/console/rollouts/{rid}").text
    assert states_on_page(html)[a["installation_id"]] == "downloading"
    assert "Downloading or waiting for its window" in html
    # b tried twice: both attempts are listed with their logs, newest first
    report(client, b, error_message="first try failed", log_tail="LOG ONE")
    report(client, b, error_message="second try failed", log_tail="LOG TWO")
    html = sue.get(f"/console/rollouts/{rid}").text
    assert states_on_page(html)[b["installation_id"]] == "rolled_back"
    assert "Attempts and their log (2)" in html
    assert html.index("second try failed") < html.index("first try failed") and "LOG ONE" in html
    # the filter
    only = sue.get(f"/console/rollouts/{rid}?inst_state=downloading").text
    assert set(states_on_page(only)) == {a["installation_id"]}
    # a installs it: installed; its next check has nothing new and its state returns to up to date
    report(client, a, outcome="success", stage=None, error_code=None, error_message=None, log_tail="")
    assert check(client, a, {"server": "2.0.0"}).json["offers"] == []
    flush(app)
    html = sue.get(f"/console/rollouts/{rid}").text
    assert states_on_page(html)[a["installation_id"]] == "installed"
    with app.app_context():
        assert db.session.get(Installation, a["installation_id"]).state == "up_to_date"
    ivan = person(app, "ivan")
    ru = ivan.get(f"/console/rollouts/{rid}?inst_state=rolled_back").text
    assert "Попытки и их журнал (2)" in ru


def test_pins_page_adds_and_removes_pins_and_rejects_bad_input(app: Any, client: Any, fleet_world: dict) -> None:
    from release_server.db import db
    from release_server.rollouts.models import Pin

    pub = person(app, "pub")
    page = pub.get("/console/pins")
    assert page.status_code == 200 and 'id="pins-list"' in page.text and "No pins." in page.text
    bad = post(pub, "/console/pins", {"scope": "tag", "value": "pilot", "component": "server", "exact": "prefix",
                                      "pin": "2.x"}, "/console/pins")
    assert bad.status_code == 400 and 'class="form-errors"' in bad.text and 'aria-invalid="true"' in bad.text
    bad_tag = post(pub, "/console/pins", {"scope": "tag", "value": "Not A Tag!", "component": "server",
                                          "exact": "prefix", "pin": "1"}, "/console/pins")
    assert bad_tag.status_code == 400
    ok = post(pub, "/console/pins", {"scope": "tag", "value": "pilot", "component": "server", "exact": "prefix",
                                     "pin": "1.", "note": "hold the pilots"}, "/console/pins")
    assert ok.status_code == 302 and ok.headers["Location"].endswith("/console/pins")
    with app.app_context():
        pin = db.session.query(Pin).one()
        assert (pin.scope, pin.scope_value, pin.value, pin.exact, pin.created_by) == ("tag", "pilot", "1", False, "pub")
        pin_id = pin.id
    listing = pub.get("/console/pins").text
    assert f'data-pin="{pin_id}"' in listing and "hold the pilots" in listing
    gone = post(pub, f"/console/pins/{pin_id}/remove", {}, "/console/pins")
    assert gone.status_code == 302
    with app.app_context():
        assert db.session.query(Pin).count() == 0
    # an outside address in "next" is not followed
    again = post(pub, "/console/pins", {"scope": "customer", "value": "Acme", "component": "server", "exact": "exact",
                                        "pin": "1.0.0", "next": "https://evil.example/"}, "/console/pins")
    assert again.status_code == 302 and again.headers["Location"].endswith("/console/pins")


def test_installation_actions_channel_tags_window_pins_and_revoke(app: Any, client: Any, fleet_world: dict) -> None:
    from release_server.db import db
    from release_server.fleet.models import Installation
    from release_server.rollouts.models import Pin

    a = fleet_world["insts"][0]
    iid = a["installation_id"]
    url = f"/console/installations/{iid}"
    sue = person(app, "sue")
    page = sue.get(url).text
    assert 'id="installation-settings"' in page and 'id="installation-pins"' in page and 'id="revoke-link"' in page
    bad = post(sue, f"{url}/settings", {"channel": "stable", "tags": "pilot", "maintenance_window": "whenever"}, url)
    assert bad.status_code == 400 and 'id="set-window-error"' in bad.text
    nochan = post(sue, f"{url}/settings", {"channel": "nope", "tags": "", "maintenance_window": ""}, url)
    assert nochan.status_code == 400 and 'id="set-channel-error"' in nochan.text
    ok = post(sue, f"{url}/settings", {"channel": "beta", "tags": "pilot, Moscow", "maintenance_window": "sat-sun 02:00-06:00"},
              url)
    assert ok.status_code == 302
    with app.app_context():
        inst = db.session.get(Installation, iid)
        assert (inst.channel, inst.tags, inst.maintenance_window) == ("beta", ["moscow", "pilot"], "sat-sun 02:00-06:00")
    # the next check answers from the new settings
    resp = check(client, a, {"server": "1.0.0"})
    assert resp.json["maintenance_window"] == "sat-sun 02:00-06:00"
    flush(app)
    # a pin from the installation page comes back to it
    pinned = post(sue, "/console/pins", {"scope": "installation", "value": iid, "component": "server",
                                         "exact": "exact", "pin": "1.0.0", "next": url}, url)
    assert pinned.status_code == 302 and pinned.headers["Location"].endswith(url)
    badpin = post(sue, "/console/pins", {"scope": "installation", "value": iid, "component": "server",
                                         "exact": "exact", "pin": "", "next": url}, url)
    assert badpin.status_code == 400 and 'id="ipin-pin-error"' in badpin.text
    page = sue.get(url).text
    assert "<code>1.0.0</code>" in page
    with app.app_context():
        assert db.session.query(Pin).filter_by(scope="installation", scope_value=iid).count() == 1
    # revoke: a confirmation, then the token no longer works
    confirm = sue.get(f"{url}/revoke")
    assert confirm.status_code == 200 and "Yes, revoke" in confirm.text
    done = post(sue, f"{url}/revoke", {}, f"{url}/revoke")
    assert done.status_code == 302
    assert check(client, a, {"server": "1.0.0"}).status_code == 401
    assert 'id="revoked-badge"' in sue.get(url).text
    # publishers change settings but do not revoke
    pub = person(app, "pub")
    assert pub.get(f"{url}/revoke").status_code == 403


def test_a_failing_installation_stays_failing_when_offered_again(app: Any, client: Any, fleet_world: dict) -> None:
    from release_server.db import db
    from release_server.fleet.models import Installation

    a = fleet_world["insts"][0]
    report(client, a, outcome="failed", stage="install")
    with app.app_context():
        assert db.session.get(Installation, a["installation_id"]).state == "failing"
    assert check(client, a, {"server": "1.0.0"}).json["offers"]  # offered again: a check writes nothing
    flush(app)
    with app.app_context():
        assert db.session.get(Installation, a["installation_id"]).state == "failing"
    sue = person(app, "sue")
    html = sue.get(f"/console/rollouts/{fleet_world['rollout']}").text
    assert states_on_page(html)[a["installation_id"]] == "failed"


def test_the_api_patch_and_the_console_share_the_installation_rules(app: Any, client: Any, fleet_world: dict) -> None:
    iid = fleet_world["insts"][1]["installation_id"]
    h = fleet_world["headers"]
    assert client.patch(f"/api/v1/installations/{iid}", json={"tags": ["b", "a", "a"]}, headers=h).json["tags"] == \
        ["a", "b"]
    bad = client.patch(f"/api/v1/installations/{iid}", json={"channel": "nope"}, headers=h)
    assert bad.status_code == 404 and bad.json["error"]["field"] == "channels"
    assert client.patch(f"/api/v1/installations/{iid}", json={"maintenance_window": "01:00-05:00"},
                        headers=h).json["maintenance_window"] == "01:00-05:00"
    assert client.patch(f"/api/v1/installations/{iid}", json={"maintenance_window": None},
                        headers=h).json["maintenance_window"] is None
