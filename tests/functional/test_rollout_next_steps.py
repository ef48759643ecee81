"""A halted rollout has next steps (resume with a reason, yank, a new release), and the README tour runs on the demo."""
from __future__ import annotations

import re
from typing import Any

import pytest
from factories import create_component, enroll, publish


@pytest.fixture
def demo(app: Any, runner: Any) -> Any:
    result = runner.invoke(args=["demo", "--password", "demo password 1"])
    assert result.exit_code == 0, result.output
    return runner


def halted_id(app: Any) -> int:
    from sqlalchemy import select

    from release_server.db import db
    from release_server.rollouts.models import Rollout

    with app.app_context():
        return db.session.scalar(select(Rollout.id).where(Rollout.state == "halted"))


def test_readme_rollout_commands_work_on_the_demo_data(app: Any, demo: Any) -> None:
    r = demo.invoke(args=["rollouts", "create", "--component", "db-schema", "--version", "1.42.1", "--schedule",
                          "5:24,25:24,100:0", "--threshold", "0.05", "--min-attempts", "20", "--start"])
    assert r.exit_code == 0, r.output
    rid = re.search(r"rollout (\d+):", r.output).group(1)
    assert "running, 5%" in r.output
    for args, expect in ((["set", rid, "50"], "running, 50%"), (["pause", rid], "paused"),
                         (["resume", rid], "running"), (["complete", rid], "completed, 100%")):
        r = demo.invoke(args=["rollouts", *args])
        assert r.exit_code == 0 and expect in r.output, (args, r.output)
    listed = demo.invoke(args=["rollouts", "list", "--state", "halted"])
    assert listed.exit_code == 0 and "halted" in listed.output and "server 2.4.0" in listed.output


def test_a_halted_rollout_says_what_to_do_next_on_the_cli(app: Any, demo: Any) -> None:
    hid = str(halted_id(app))
    shown = demo.invoke(args=["rollouts", "show", hid])
    assert shown.exit_code == 0
    assert f"release-server rollouts resume {hid} --reason" in shown.output
    assert f"release-server rollouts yank {hid} --reason" in shown.output
    assert "publish a fixed server release" in shown.output
    for args in (["set", hid, "50"], ["complete", hid], ["pause", hid]):
        r = demo.invoke(args=["rollouts", *args])
        assert r.exit_code == 1
        assert "a rollout that is halted" in r.output and "Next:" in r.output and "--reason" in r.output
        assert f"/api/v1/rollouts/{hid}/resume" in r.output
    r = demo.invoke(args=["rollouts", "resume", hid])
    assert r.exit_code == 1 and "needs a reason" in r.output
    r = demo.invoke(args=["rollouts", "resume", hid, "--reason", "db-schema 1.42 is now a requirement"])
    assert r.exit_code == 0, r.output
    assert "running" in r.output and "attempts 0, failures 0" in r.output
    js = demo.invoke(args=["rollouts", "show", hid, "--json"])
    import json

    data = json.loads(js.output)
    assert data["state"] == "running" and data["next_steps"] == []
    assert data["halt_figures"]["resume_reason"] == "db-schema 1.42 is now a requirement"
    assert data["halt_figures"]["failures"] > 0  # the figures of the halt are kept


def test_halted_rollout_next_steps_over_the_api(app: Any, client: Any, auth: Any) -> None:
    admin, staff = auth.headers("admin"), auth.headers("publisher")
    assert client.post("/api/v1/customers", json={"name": "Acme"}, headers=admin).status_code == 201
    create_component(client, staff, "server")
    assert publish(client, staff, "server", "1.0", channels=["stable"]).status_code == 201
    assert publish(client, staff, "server", "1.1", channels=["stable"]).status_code == 201
    inst = enroll(client, admin, "Acme", installed={"server": "1.1"})
    ro = client.post("/api/v1/rollouts", json={"component": "server", "version": "1.1", "channel": "stable",
                                               "start": True}, headers=staff).json
    halted = client.post(f"/api/v1/rollouts/{ro['id']}/halt", json={"reason": "crash on start"}, headers=staff)
    assert halted.status_code == 200
    steps = {s["action"]: s for s in halted.json["next_steps"]}
    assert set(steps) == {"resume", "yank", "new_release"}
    assert steps["resume"]["path"] == f"/api/v1/rollouts/{ro['id']}/resume" and steps["resume"]["method"] == "POST"
    # the dead ends now say what to do
    r = client.post(f"/api/v1/rollouts/{ro['id']}/percentage", json={"percent": 50}, headers=staff)
    assert r.status_code == 409 and r.json["error"]["code"] == "rollout_state"
    assert "Next:" in r.json["error"]["message"] and "resume" in r.json["error"]["message"]
    assert "yank" in r.json["error"]["message"]
    r = client.post(f"/api/v1/rollouts/{ro['id']}/resume", headers=staff)
    assert r.status_code == 400 and r.json["error"]["field"] == "reason"
    assert client.get(f"/api/v1/rollouts/{ro['id']}", headers=staff).json["state"] == "halted"  # nothing changed
    # yank: the installation that took 1.1 is offered the newest good release (a downgrade)
    r = client.post(f"/api/v1/rollouts/{ro['id']}/yank", json={"reason": "crash on start"}, headers=staff)
    assert r.status_code == 200, r.json
    assert r.json["state"] == "halted" and {s["action"] for s in r.json["next_steps"]} == {"resume", "new_release"}
    rel = client.get("/api/v1/components/server/releases/1.1", headers=staff).json
    assert rel["yanked"] is True
    check = client.post("/api/v1/updates/check", json={"installed": {"server": "1.1"}},
                        headers={"Authorization": f"Bearer {inst['token']}"}).json
    assert [(o["version"], o["downgrade"]) for o in check["offers"]] == [("1.0", True)]
    # a yanked release cannot be resumed; unyanked, it can, with a reason
    r = client.post(f"/api/v1/rollouts/{ro['id']}/resume", json={"reason": "fixed"}, headers=staff)
    assert r.status_code == 409 and "unyank" in r.json["error"]["message"]
    assert client.post("/api/v1/components/server/releases/1.1/unyank", headers=staff).status_code == 200
    r = client.post(f"/api/v1/rollouts/{ro['id']}/resume", json={"reason": "config fixed on the fleet"},
                    headers=staff)
    assert r.status_code == 200 and r.json["state"] == "running" and r.json["attempts"] == 0
    audit = client.get("/api/v1/audit", headers=admin).json["items"]
    assert any(a["action"] == "rollout.resume" and a["details"].get("reason") == "config fixed on the fleet"
               for a in audit)


def _csrf(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, "no CSRF token in the page"
    return m.group(1)


@pytest.mark.parametrize("lang", ["en", "ru"])
def test_a_halted_rollout_offers_its_next_steps_in_the_console(app: Any, client: Any, demo: Any, lang: str) -> None:
    from release_server.accounts import services as accounts
    from release_server.db import db
    from release_server.rollouts.models import Rollout

    with app.app_context():
        accounts.create_user(db.session, "rm", "correct horse battery", "publisher")
        db.commit()
    client.set_cookie("lang", lang)
    login = client.get("/console/login")
    assert client.post("/console/login", data={"username": "rm", "password": "correct horse battery",
                                               "csrf_token": _csrf(login.text)}).status_code == 302
    hid = halted_id(app)
    detail = f"/console/rollouts/{hid}"
    page = client.get(detail).text
    steps = page.split('id="next-steps"', 1)[1].split("</ol>", 1)[0]
    assert steps.count("<li>") == 3
    assert "/console/releases/server/2.4.0#yank" in steps and "release-server publish --component server" in steps
    assert f'href="{detail}/restart"' in page
    if lang == "ru":
        assert "Что дальше" in page and "Возобновить после исправления" in page and "Next steps" not in page
    else:
        assert "Resume after a fix" in page
    # resuming a halted rollout needs a reason; with one it runs again and counts afresh
    refused = client.post(f"{detail}/restart", data={"reason": " ", "csrf_token": _csrf(page)})
    assert refused.status_code == 400 and 'id="f-reason-error"' in refused.text
    with app.app_context():
        assert db.session.get(Rollout, hid).state == "halted"
    done = client.post(f"{detail}/restart", data={"reason": "db-schema 1.42 now required", "csrf_token": _csrf(page)})
    assert done.status_code == 302
    with app.app_context():
        ro = db.session.get(Rollout, hid)
        assert ro.state == "running" and ro.attempts == 0
        assert ro.halt_figures["resume_reason"] == "db-schema 1.42 now required"
    assert 'id="next-steps"' not in client.get(detail).text
