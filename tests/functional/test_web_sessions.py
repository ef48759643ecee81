"""Cookie sessions end on the server, logins are throttled per (account, address), and a
hostile ``next=`` never breaks the login: console and portal, on every database."""
from __future__ import annotations

import re
from typing import Any

import pytest
from release_server import close_app

PASSWORD = "correct horse battery"
NEW_PASSWORD = "another horse battery"


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


FACES = {
    "console": {"login": "/console/login", "home": "/console/", "logout": "/console/logout", "user": "username",
                "name": "alice"},
    "portal": {"login": "/portal/login", "home": "/portal/", "logout": "/portal/logout", "user": "email",
               "name": "ann@acme.example"},
}


@pytest.fixture
def people(app: Any) -> None:
    from release_server.accounts import services as accounts
    from release_server.db import db
    from release_server.fleet import services as fleet
    from release_server.support import customers

    with app.app_context():
        accounts.create_user(db.session, "alice", PASSWORD, "admin")
        acme = fleet.create_customer(db.session, "Acme", "it@acme.example", ["acme.example"])
        customers.create_customer_user(db.session, acme, "ann@acme.example", "Ann", PASSWORD)
        db.commit()


def _client(app: Any, address: str = "127.0.0.1") -> Any:
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def login(client: Any, face: str, password: str = PASSWORD, name: str | None = None, **extra: str) -> Any:
    f = FACES[face]
    page = client.get(f["login"])
    return client.post(f["login"], data={f["user"]: name or f["name"], "password": password,
                                         "csrf_token": csrf_of(page.text), **extra})


def logged_in(client: Any, face: str) -> bool:
    resp = client.get(FACES[face]["home"])
    if resp.status_code == 302 and "/login" in resp.headers["Location"]:
        return False
    if face == "portal" and resp.status_code == 302:  # the portal's home sends a user on to the tickets
        resp = client.get(resp.headers["Location"])
    return resp.status_code == 200


def cookie(client: Any, app: Any) -> str:
    return client.get_cookie(app.config.get("SESSION_COOKIE_NAME", "session")).value


def replay(app: Any, value: str) -> Any:
    other = app.test_client()
    other.set_cookie(app.config.get("SESSION_COOKIE_NAME", "session"), value)
    return other


# ---------------------------------------------------------------- sessions end everywhere

@pytest.mark.parametrize("face", sorted(FACES))
def test_logout_ends_every_session_of_the_user_on_every_node(app: Any, app_config: dict, people: None,
                                                             face: str) -> None:
    from release_server import create_app

    laptop, phone = _client(app), _client(app)
    assert login(laptop, face).status_code == 302 and login(phone, face).status_code == 302
    stolen = cookie(laptop, app)
    node2 = create_app(dict(app_config))  # another server process on the same database
    try:
        assert logged_in(replay(node2, cookie(phone, app)), face)
        home = laptop.get(FACES[face]["home"], follow_redirects=True)
        assert laptop.post(FACES[face]["logout"], data={"csrf_token": csrf_of(home.text)}).status_code == 302
        assert not logged_in(laptop, face)
        assert not logged_in(phone, face)  # the user's other session has ended too
        assert not logged_in(replay(app, stolen), face)  # a copied cookie is worthless after logout
        assert not logged_in(replay(node2, stolen), face)  # on every node
        assert login(phone, face).status_code == 302 and logged_in(phone, face)  # a new login works
    finally:
        close_app(node2)


@pytest.mark.parametrize("face", sorted(FACES))
@pytest.mark.parametrize("change", ["password", "disable"])
def test_password_change_and_disabling_end_every_session(app: Any, people: None, face: str, change: str) -> None:
    from release_server.accounts import services as accounts
    from release_server.db import db
    from release_server.support import customers

    c = _client(app)
    assert login(c, face).status_code == 302 and logged_in(c, face)
    stolen = cookie(c, app)
    with app.app_context():
        if face == "console":
            user = accounts.get_user(db.session, "alice")
            (accounts.set_password(db.session, user, NEW_PASSWORD) if change == "password"
             else accounts.set_active(db.session, user, False))
        else:
            user = customers.get_customer_user(db.session, "ann@acme.example")
            (customers.set_password(db.session, user, NEW_PASSWORD) if change == "password"
             else customers.set_active(db.session, user, False))
        db.commit()
    assert not logged_in(c, face) and not logged_in(replay(app, stolen), face)
    if change == "password":
        assert login(_client(app), face).status_code == 401
        assert login(_client(app), face, password=NEW_PASSWORD).status_code == 302
    else:
        assert login(_client(app), face).status_code == 401


def test_cli_set_password_and_disable_end_sessions(app: Any, runner: Any, people: None) -> None:
    c = _client(app)
    assert login(c, "console").status_code == 302
    result = runner.invoke(args=["users", "set-password", "alice", "--password", NEW_PASSWORD])
    assert result.exit_code == 0, result.output
    assert not logged_in(c, "console")
    assert login(c, "console", password=NEW_PASSWORD).status_code == 302
    assert runner.invoke(args=["users", "disable", "alice"]).exit_code == 0
    assert not logged_in(c, "console")
    assert runner.invoke(args=["users", "set-password", "nobody", "--password", NEW_PASSWORD]).exit_code != 0
    p = _client(app)
    assert login(p, "portal").status_code == 302
    assert runner.invoke(args=["customer-users", "disable", "ann@acme.example"]).exit_code == 0
    assert not logged_in(p, "portal")


# ---------------------------------------------------------------- throttling, not locking

def _throttle_rows(app: Any) -> list[Any]:
    from sqlalchemy import select

    from release_server.accounts.models import LoginThrottle
    from release_server.db import db

    with app.app_context():
        return list(db.session.execute(select(LoginThrottle.account, LoginThrottle.address, LoginThrottle.failures,
                                              LoginThrottle.last_failure_at, LoginThrottle.blocked_until)))


def _pass_time(app: Any, seconds: float) -> None:
    """A fake clock: move every throttle's times into the past."""
    from datetime import timedelta

    from sqlalchemy import select

    from release_server.accounts.models import LoginThrottle
    from release_server.db import db

    with app.app_context():
        for row in db.session.scalars(select(LoginThrottle)):
            row.last_failure_at -= timedelta(seconds=seconds)
            row.blocked_until -= timedelta(seconds=seconds)
        db.commit()


@pytest.mark.parametrize("face", sorted(FACES))
def test_wrong_passwords_from_one_address_never_lock_the_owner_out(app: Any, app_config: dict, people: None,
                                                                  face: str) -> None:
    from release_server import create_app

    attacker, owner = _client(app, "203.0.113.9"), _client(app, "198.51.100.7")
    for _ in range(app.config["LOGIN_MAX_FAILURES"]):
        assert login(attacker, face, password="guess").status_code == 401
    refused = login(attacker, face)  # the attacker's address waits, even with the right password
    assert refused.status_code == 429
    wait = int(re.search(r"Try again in (\d+) s\.", refused.text).group(1))
    assert 0 < wait <= app.config["LOGIN_DELAY_SECONDS"]
    attacker.set_cookie("lang", "ru")
    assert "Повторите через" in login(attacker, face).text
    node2 = create_app(dict(app_config))  # and waits on every node
    try:
        c2 = node2.test_client()
        c2.environ_base["REMOTE_ADDR"] = "203.0.113.9"
        assert login(c2, face).status_code == 429
    finally:
        close_app(node2)
    # the owner, from their own address, logs in at once
    assert login(owner, face).status_code == 302 and logged_in(owner, face)


def test_delays_grow_with_each_failure_and_a_success_clears_them(app: Any, people: None) -> None:
    base, free = float(app.config["LOGIN_DELAY_SECONDS"]), int(app.config["LOGIN_MAX_FAILURES"])
    c = _client(app, "203.0.113.9")
    for _ in range(free):
        login(c, "console", password="guess")
    waits = []
    for _ in range(3):
        [row] = [r for r in _throttle_rows(app) if r.account == "alice"]
        waits.append(round((row.blocked_until - row.last_failure_at).total_seconds()))
        assert login(c, "console", password="guess").status_code == 429  # refused unchecked: not counted
        _pass_time(app, waits[-1] + 1)
        assert login(c, "console", password="guess").status_code == 401
    assert waits == [base, 2 * base, 4 * base]
    _pass_time(app, 8 * base + 1)
    assert login(c, "console").status_code == 302
    assert [r for r in _throttle_rows(app) if r.account == "alice"] == []


def test_one_address_is_throttled_across_accounts(app: Any, people: None) -> None:
    app.config["LOGIN_MAX_FAILURES_PER_ADDRESS"] = 4
    sprayer = _client(app, "203.0.113.9")
    for k in range(4):
        assert login(sprayer, "console", name=f"user{k}", password="guess").status_code == 401
    assert login(sprayer, "console").status_code == 429  # alice has no failures of her own
    assert login(_client(app, "198.51.100.7"), "console").status_code == 302


@pytest.mark.parametrize("proxies", [0, 1])
def test_behind_a_trusted_proxy_the_forwarded_address_is_throttled(app_config: dict, proxies: int) -> None:
    """TRUSTED_PROXIES=1 (nginx in front): each client by the address nginx saw; 0: the peer, forged headers ignored."""
    from release_server import create_app
    from release_server.accounts import services as accounts
    from release_server.db import db

    application = create_app(dict(app_config, TRUSTED_PROXIES=proxies, LOGIN_MAX_FAILURES_PER_ADDRESS=3))
    try:
        with application.app_context():
            accounts.create_user(db.session, "alice", PASSWORD, "admin")
            db.commit()
        proxy = _client(application, "127.0.0.1")  # every request comes from nginx
        one = {"HTTP_X_FORWARDED_FOR": "203.0.113.9"}
        for k in range(3):
            proxy.environ_base.update(one)
            assert login(proxy, "console", name=f"user{k}", password="guess").status_code == 401
        other = _client(application, "127.0.0.1")
        other.environ_base["HTTP_X_FORWARDED_FOR"] = "198.51.100.7"
        # a client's own forged entry before the one nginx appended changes nothing
        forged = _client(application, "127.0.0.1")
        forged.environ_base["HTTP_X_FORWARDED_FOR"] = "192.0.2.1, 203.0.113.9"
        if proxies:
            assert login(proxy, "console").status_code == 429
            assert login(forged, "console").status_code == 429
            assert login(other, "console").status_code == 302  # another client behind the same proxy
        else:  # the header is not trusted: all three are the proxy's own address
            assert login(other, "console").status_code == 429
    finally:
        application.extensions["seen_buffer"].stop()
        application.extensions["db_engine"].dispose()


def test_the_delay_rule() -> None:
    from release_server.accounts.throttle import delay_after

    assert [delay_after(n, 5, 30, 900) for n in range(4, 12)] == [0, 30, 60, 120, 240, 480, 900, 900]
    assert delay_after(10 ** 6, 5, 30, 900) == 900


# ---------------------------------------------------------------- next= after login

@pytest.mark.parametrize("face", sorted(FACES))
@pytest.mark.parametrize("bad", ["/x\r\nSet-Cookie: a=b", "/x\nLocation: https://evil.example/", "/x\r",
                                 "/x\x00", "/x\u2028y", "/x\u0085", "https://evil.example/", "//evil.example/"])
def test_a_hostile_next_after_login_redirects_home(app: Any, people: None, face: str, bad: str) -> None:
    resp = login(_client(app), face, next=bad)
    assert resp.status_code == 302 and resp.headers["Location"] == "/"
    assert "Set-Cookie: a=b" not in str(resp.headers) and "evil" not in resp.headers["Location"]
    # the login page itself shows with such a next, too
    page = _client(app).get(FACES[face]["login"], query_string={"next": bad})
    assert page.status_code == 200


@pytest.mark.parametrize("face", sorted(FACES))
def test_a_plain_next_is_kept(app: Any, people: None, face: str) -> None:
    target = "/console/tickets?status=new" if face == "console" else "/portal/installations"
    resp = login(_client(app), face, next=target)
    assert resp.status_code == 302 and resp.headers["Location"] == target
