"""The staff console: login, CSRF, rate limiting, roles, and the release and rollout pages."""
from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import select

from factories import create_component, publish

PASSWORD = "correct horse battery"


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, "no CSRF token in the page"
    return m.group(1)


def console_login(client: Any, username: str, password: str = PASSWORD) -> Any:
    page = client.get("/console/login")
    return client.post("/console/login", data={"username": username, "password": password,
                                               "csrf_token": csrf_of(page.text)})


def post(client: Any, url: str, data: dict | None = None, page: str | None = None) -> Any:
    token = csrf_of(client.get(page or "/console/").text)
    return client.post(url, data={**(data or {}), "csrf_token": token})


def make_staff(app: Any, username: str, role: str) -> None:
    from release_server.accounts import services
    from release_server.db import db

    with app.app_context():
        services.create_user(db.session, username, PASSWORD, role)
        db.commit()


def audit_actions(app: Any, prefix: str = "") -> list[tuple[str, str, str]]:
    from release_server.accounts.models import AuditEvent
    from release_server.db import db

    with app.app_context():
        return [(e.actor, e.action, e.target) for e in db.session.scalars(select(AuditEvent).order_by(AuditEvent.id))
                if e.action.startswith(prefix)]


@pytest.fixture
def admin(app: Any, client: Any) -> Any:
    make_staff(app, "alice", "admin")
    assert console_login(client, "alice").status_code == 302
    return client


def test_pages_need_a_login(client: Any) -> None:
    resp = client.get("/console/rollouts")
    assert resp.status_code == 302 and "/console/login" in resp.headers["Location"]
    assert client.get("/").status_code == 200


def test_login_sets_a_hardened_session_cookie_and_logout_ends_it(app: Any, client: Any) -> None:
    make_staff(app, "alice", "admin")
    resp = console_login(client, "alice")
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/console/")
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    page = client.get("/console/")
    assert page.status_code == 200 and "alice" in page.text
    assert "Content-Security-Policy" in page.headers and page.headers["X-Frame-Options"] == "DENY"
    resp = post(client, "/console/logout")
    assert resp.status_code == 302
    assert client.get("/console/").status_code == 302
    assert ("alice", "auth.login", "staff-login:alice") in audit_actions(app, "auth.")


def test_wrong_password_is_shown_next_to_the_field(app: Any, client: Any) -> None:
    make_staff(app, "alice", "admin")
    resp = console_login(client, "alice", "not the password")
    assert resp.status_code == 401
    assert 'id="f-password-error"' in resp.text and 'aria-invalid="true"' in resp.text
    resp = console_login(client, "", "")
    assert resp.status_code == 200 and resp.text.count("field-error") == 2


def test_posts_without_the_csrf_token_are_refused(app: Any, admin: Any) -> None:
    resp = admin.post("/console/login", data={"username": "alice", "password": PASSWORD})
    assert resp.status_code == 400
    resp = admin.post("/console/customers", data={"name": "Evil Corp"})
    assert resp.status_code == 400
    resp = admin.post("/console/customers", data={"name": "Evil Corp", "csrf_token": "forged"})
    assert resp.status_code == 400
    assert "Evil Corp" not in admin.get("/console/customers").text
    # the API is not behind the cookie session and not affected
    assert admin.get("/api/v1/customers").status_code == 401


def test_login_is_rate_limited_per_account(app: Any, client: Any) -> None:
    make_staff(app, "alice", "admin")
    for _ in range(app.config["LOGIN_MAX_FAILURES"]):
        assert console_login(client, "alice", "guess").status_code == 401
    resp = console_login(client, "alice")  # even the right password waits now
    assert resp.status_code == 429 and "Too many failed attempts" in resp.text
    assert client.get("/console/").status_code == 302
    assert len([a for a in audit_actions(app, "auth.login_failed")]) == app.config["LOGIN_MAX_FAILURES"]
    make_staff(app, "bob", "support")  # another account is not locked by alice's failures
    assert console_login(client, "bob").status_code == 302


@pytest.mark.parametrize("role, visible, hidden, forbidden", [
    ("publisher", ["Releases", "Rollouts"], ["Tickets", "Audit log"], ["/console/tickets", "/console/audit"]),
    ("support", ["Tickets", "Customers"], ["Audit log"], ["/console/audit", "/console/rollouts/new"]),
    ("admin", ["Tickets", "Audit log", "Rollouts"], [], []),
])
def test_navigation_follows_the_role(app: Any, client: Any, role: str, visible: list, hidden: list,
                                     forbidden: list) -> None:
    make_staff(app, f"{role}-person", role)
    assert console_login(client, f"{role}-person").status_code == 302
    page = client.get("/console/")
    nav = page.text.split('class="main-nav"', 1)[1].split("</nav>", 1)[0]
    for label in visible:
        assert f">{label}</a>" in nav
    for label in hidden:
        assert f">{label}</a>" not in nav
    for url in forbidden:
        assert client.get(url).status_code == 403


def _release(client: Any, auth: Any, changelog: str = "- fixed things") -> None:
    headers = auth.headers("admin")
    create_component(client, headers, "server")
    assert publish(client, headers, "server", "1.0.0", channels=["beta"], changelog=changelog).status_code == 201


def test_release_detail_promote_and_yank(app: Any, client: Any, auth: Any, admin: Any) -> None:
    _release(client, auth, changelog="## Fixed\n- <script>alert(1)</script> **bold** [x](javascript:alert(2))")
    page = admin.get("/console/releases/server/1.0.0")
    assert page.status_code == 200
    assert "<strong>bold</strong>" in page.text and "<script>alert(1)" not in page.text
    assert "javascript:alert" not in page.text
    assert "server-1.0.0.tar.gz" in page.text
    # promote to stable
    resp = post(admin, "/console/releases/server/1.0.0/promote", {"channel": "stable"}, "/console/releases")
    assert resp.status_code == 302
    assert "stable" in admin.get("/api/v1/components/server/releases/1.0.0", headers=auth.headers("admin")).json[
        "channels"]
    # an unknown channel is reported next to the field
    resp = post(admin, "/console/releases/server/1.0.0/promote", {"channel": "nightly"}, "/console/releases")
    assert resp.status_code == 400 and 'id="f-channel-error"' in resp.text
    # yank needs a reason
    resp = post(admin, "/console/releases/server/1.0.0/yank", {"reason": "  "}, "/console/releases")
    assert resp.status_code == 400 and 'id="f-reason-error"' in resp.text
    resp = post(admin, "/console/releases/server/1.0.0/yank", {"reason": "corrupts <b>data</b>"}, "/console/releases")
    assert resp.status_code == 302
    page = admin.get("/console/releases/server/1.0.0")
    assert "corrupts &lt;b&gt;data&lt;/b&gt;" in page.text
    actions = audit_actions(app, "release.")
    assert ("alice", "release.promote", "release:server/1.0.0") in actions
    assert ("alice", "release.yank", "release:server/1.0.0") in actions


def test_publisher_cannot_yank_as_support(app: Any, client: Any, auth: Any) -> None:
    _release(client, auth)
    make_staff(app, "sam", "support")
    assert console_login(client, "sam").status_code == 302
    resp = post(client, "/console/releases/server/1.0.0/yank", {"reason": "no"})
    assert resp.status_code == 403


def test_rollout_lifecycle_through_the_console(app: Any, client: Any, auth: Any, admin: Any) -> None:
    _release(client, auth)
    page = admin.get("/console/rollouts/new?component=server&version=1.0.0&channel=beta")
    assert page.status_code == 200
    # errors next to the fields
    resp = post(admin, "/console/rollouts/new", {"component": "server", "version": "1.0.0", "channel": "beta",
                                                 "steps": "50, 10", "step_hours": "1", "threshold": "150",
                                                 "min_attempts": "x"}, "/console/rollouts/new")
    assert resp.status_code == 400
    for field in ("threshold", "min_attempts"):
        assert f'id="f-{field}-error"' in resp.text
    resp = post(admin, "/console/rollouts/new", {"component": "server", "version": "1.0.0", "channel": "beta",
                                                 "steps": "50, 10", "step_hours": "1", "threshold": "5",
                                                 "min_attempts": "20"}, "/console/rollouts/new")
    assert resp.status_code == 400 and 'id="f-steps-error"' in resp.text
    resp = post(admin, "/console/rollouts/new", {"component": "server", "version": "1.0.0", "channel": "stable",
                                                 "steps": "", "threshold": "5", "min_attempts": "20"},
                "/console/rollouts/new")
    assert resp.status_code == 400 and 'id="f-channel-error"' in resp.text  # not on that channel
    resp = post(admin, "/console/rollouts/new", {"component": "server", "version": "1.0.0", "channel": "beta",
                                                 "steps": "10, 50, 100", "step_hours": "24", "threshold": "5",
                                                 "min_attempts": "20"}, "/console/rollouts/new")
    assert resp.status_code == 302
    rid = int(resp.headers["Location"].rstrip("/").rsplit("/", 1)[1])
    detail = f"/console/rollouts/{rid}"
    # each action has a confirmation page, then the POST
    confirm = admin.get(f"{detail}/start")
    assert confirm.status_code == 200 and "Start this rollout?" in confirm.text
    assert post(admin, f"{detail}/start", {}, f"{detail}/start").status_code == 302
    assert ">10%<" in admin.get(detail).text.replace(" ", "")
    # widening cannot go down, and says so next to the field
    resp = post(admin, f"{detail}/widen", {"percent": "5"}, f"{detail}/widen")
    assert resp.status_code == 400 and 'id="f-percent-error"' in resp.text
    assert post(admin, f"{detail}/widen", {"percent": "40"}, f"{detail}/widen").status_code == 302
    assert post(admin, f"{detail}/pause", {}, f"{detail}/pause").status_code == 302
    resp = post(admin, f"{detail}/pause", {}, f"{detail}/resume")  # not running any more
    assert resp.status_code == 400
    assert post(admin, f"{detail}/resume", {}, f"{detail}/resume").status_code == 302
    resp = post(admin, f"{detail}/halt", {"reason": ""}, f"{detail}/halt")
    assert resp.status_code == 400 and 'id="f-reason-error"' in resp.text
    assert post(admin, f"{detail}/halt", {"reason": "bad <i>smell</i>"}, f"{detail}/halt").status_code == 302
    page = admin.get(detail)
    assert 'id="halt-box"' in page.text and "bad &lt;i&gt;smell&lt;/i&gt;" in page.text
    assert "<svg" in page.text
    listing = admin.get("/console/rollouts")
    assert 'class="row-halted"' in listing.text
    assert [a for _, a, _t in audit_actions(app, "rollout.")] == [
        "rollout.create", "rollout.start", "rollout.widen", "rollout.pause", "rollout.resume", "rollout.halt"]
    assert admin.get(f"{detail}/explode").status_code == 404


def test_customers_users_and_enrollment_tokens(app: Any, admin: Any) -> None:
    resp = post(admin, "/console/customers", {"name": "<img src=x onerror=alert(1)>", "contact_email": "nope"},
                "/console/customers")
    assert resp.status_code == 400 and 'id="f-contact_email-error"' in resp.text
    resp = post(admin, "/console/customers", {"name": "<img src=x onerror=alert(1)>", "contact_email": "a@b.example",
                                              "mail_domains": "b.example"}, "/console/customers")
    assert resp.status_code == 302
    page = admin.get(resp.headers["Location"])
    assert "&lt;img src=x onerror=alert(1)&gt;" in page.text and "<img src=x" not in page.text
    cid = resp.headers["Location"].rsplit("/", 1)[1]
    resp = post(admin, f"/console/customers/{cid}/users", {"email": "u@b.example", "password": "short"},
                f"/console/customers/{cid}")
    assert resp.status_code == 400 and 'id="u-password-error"' in resp.text
    resp = post(admin, f"/console/customers/{cid}/users", {"email": "u@b.example", "password": "long enough pw"},
                f"/console/customers/{cid}")
    assert resp.status_code == 302
    resp = post(admin, f"/console/customers/{cid}/enrollment-tokens", {"max_uses": "3", "expires_days": "7"},
                f"/console/customers/{cid}")
    assert resp.status_code == 302  # redirect after post: a reload makes no second token
    shown = admin.get(resp.headers["Location"])
    secret = re.search(r'<code class="secret">(rse_[^<]+)</code>', shown.text).group(1)
    assert secret not in admin.get(f"/console/customers/{cid}").text  # shown once
    prefix = secret.split("_")[1]
    assert post(admin, f"/console/enrollment-tokens/{prefix}/revoke", {}, f"/console/customers/{cid}").status_code == 302
    assert "revoked" in admin.get(f"/console/customers/{cid}").text
    actions = [a for _, a, _t in audit_actions(app)]
    for action in ("customer.create", "customer_user.create", "enrollment.create", "enrollment.revoke"):
        assert action in actions
    audit_page = admin.get("/console/audit?action=enrollment.create")
    assert audit_page.status_code == 200 and "enrollment.create" in audit_page.text


def test_installations_list_filters_and_detail(app: Any, client: Any, auth: Any, admin: Any) -> None:
    from factories import enroll

    headers = auth.headers("admin")
    client.post("/api/v1/customers", json={"name": "Acme"}, headers=headers)
    client.post("/api/v1/customers", json={"name": "Globex"}, headers=headers)
    a = enroll(client, headers, "Acme", name="acme-1", installed={"server": "1.0.0"})
    enroll(client, headers, "Globex", name="globex-1", installed={"server": "2.0.0"})
    page = admin.get("/console/installations")
    assert "acme-1" in page.text and "globex-1" in page.text
    page = admin.get("/console/installations?component=server&version=2.0.0")
    assert "globex-1" in page.text and "acme-1" not in page.text
    page = admin.get("/console/installations?health=stale")
    assert "acme-1" not in page.text
    page = admin.get("/console/installations?customer=nobody")
    assert page.status_code == 200 and "alert bad" in page.text
    detail = admin.get(f"/console/installations/{a['installation_id']}")
    assert detail.status_code == 200 and "acme-1" in detail.text
    assert admin.get("/console/installations/not-there").status_code == 404


def test_dashboard_renders_charts(app: Any, client: Any, auth: Any, admin: Any) -> None:
    _release(client, auth)
    page = admin.get("/console/")
    assert page.status_code == 200
    assert page.text.count("<svg") == 2 and 'id="tickets-chart"' in page.text
