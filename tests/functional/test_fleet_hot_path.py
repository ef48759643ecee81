"""The check endpoint's hot path: no synchronous writes, bounded credential memory, exact invalidation."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import uuid
from datetime import datetime, timezone

import pytest
from factories import create_component, enroll, publish
from sqlalchemy import event, select, update

from release_server import close_app, create_app
from release_server.db import db
from release_server.fleet.models import InstalledComponent, Installation

WRITES = ("INSERT", "UPDATE", "DELETE", "BEGIN IMMEDIATE")


@pytest.fixture
def staff(auth):
    return auth.headers("admin")


@pytest.fixture
def acme(client, staff):
    assert client.post("/api/v1/customers", json={"name": "Acme"}, headers=staff).status_code == 201
    return "Acme"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Statements:
    """SQL statements run on the engine, by thread (SQLAlchemy's cursor events)."""

    def __init__(self, engine) -> None:  # noqa: ANN001
        self.engine = engine
        self.rows: list[tuple[int, str, bool]] = []

    def _on(self, conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001
        self.rows.append((threading.get_ident(), statement, executemany))

    def __enter__(self) -> Statements:
        event.listen(self.engine, "before_cursor_execute", self._on)
        return self

    def __exit__(self, *exc) -> None:  # noqa: ANN002
        event.remove(self.engine, "before_cursor_execute", self._on)

    def of_this_thread(self) -> list[str]:
        me = threading.get_ident()
        return [s for t, s, _ in self.rows if t == me]


def _installation(app, installation_id: str) -> Installation:  # noqa: ANN001
    with app.app_context():
        s = db.new_session(write=False)
        try:
            inst = s.get(Installation, installation_id)
            s.expunge_all()
            return inst
        finally:
            s.close()


def _versions(app, installation_id: str) -> dict[str, str]:  # noqa: ANN001
    with app.app_context():
        s = db.new_session(write=False)
        try:
            return dict(s.execute(select(InstalledComponent.component, InstalledComponent.version)
                                  .where(InstalledComponent.installation_id == installation_id)).all())
        finally:
            s.close()


def _age_last_seen(app, installation_id: str) -> datetime:  # noqa: ANN001
    old = datetime(2026, 1, 1, tzinfo=timezone.utc)
    with app.app_context():
        s = db.new_session()
        s.execute(update(Installation).where(Installation.id == installation_id).values(last_seen_at=old))
        s.commit()
        s.close()
    return old


# ---------------------------------------------------------------- last-seen and inventory


@pytest.fixture
def slow_flush(app_config):
    """An app whose flusher waits an hour, so that only explicit flushes write."""
    application = create_app({**app_config, "LAST_SEEN_FLUSH_SECONDS": 3600, "LAST_SEEN_PROMPT_SECONDS": 3600})
    yield application
    close_app(application)


def test_a_check_writes_nothing_even_when_due_or_changed(slow_flush, backend):
    app = slow_flush
    client = app.test_client()
    staff = {"Authorization": f"Bearer {_staff_token(app)}"}
    client.post("/api/v1/customers", json={"name": "Acme"}, headers=staff)
    create_component(client, staff, "server")
    publish(client, staff, "server", "1.0", channels=["stable"])
    publish(client, staff, "server", "1.1", channels=["stable"])
    inst = enroll(client, staff, "Acme", installed={"server": "1.0"})
    old = _age_last_seen(app, inst["installation_id"])  # the check is due for a last-seen write
    h = bearer(inst["token"])
    engine = app.extensions["db_engine"]
    with Statements(engine) as seen:
        first = client.post("/api/v1/updates/check", json={"installed": {"server": "1.0"}}, headers=h)
        # a changed inventory and a state change: still nothing written by the request
        second = client.post("/api/v1/updates/check", json={"installed": {"server": "1.1"}, "state": "updating",
                                                            "agent_version": "9.9"}, headers=h)
    assert first.status_code == 200 and [o["version"] for o in first.json["offers"]] == ["1.1"]
    # the offer is computed from the versions the check sent, not from what is stored
    assert second.status_code == 200 and second.json["offers"] == []
    statements = seen.of_this_thread()
    assert statements, "the check read nothing at all?"
    assert not [s for s in statements if s.lstrip().upper().startswith(WRITES)], statements
    stored = _installation(app, inst["installation_id"])
    assert stored.last_seen_at == old and _versions(app, inst["installation_id"]) == {"server": "1.0"}

    buffer = app.extensions["seen_buffer"]
    assert buffer.flush() == 1
    stored = _installation(app, inst["installation_id"])
    assert stored.last_seen_at > old and stored.state == "updating" and stored.agent_version == "9.9"
    assert _versions(app, inst["installation_id"]) == {"server": "1.1"}


def _staff_token(app) -> str:  # noqa: ANN001
    from release_server.accounts import services

    with app.app_context():
        user = services.create_user(db.session, "admin-user", "correct horse battery", "admin")
        issued = services.issue_token(db.session, name="admin token", role="admin", user=user)
        db.commit()
        return issued.secret


def test_flush_writes_many_installations_in_one_statement_per_table(app, client, staff, acme):
    ids = [enroll(client, staff, "Acme", name=f"i{n}", installed={"server": "1.0"})["installation_id"]
           for n in range(3)]
    with app.app_context():
        s = db.new_session()
        many = [Installation(id=str(uuid.uuid4()), customer_id=s.scalar(select(Installation.customer_id)),
                             name=f"bulk-{n}", token_prefix=f"b{n:07d}", token_hash="x" * 64) for n in range(250)]
        s.add_all(many)
        s.commit()
        ids += [i.id for i in many]
        s.close()
    buffer = app.extensions["seen_buffer"]
    buffer.interval = 3600  # only this flush writes
    for n, inst_id in enumerate(ids):
        buffer.note(inst_id, installed={"server": "1.0", "web": f"2.{n}"}, known=frozenset({("server", "1.0")}))
    with Statements(app.extensions["db_engine"]) as seen:
        assert buffer.flush() == len(ids)
    writes = [(s, many) for _, s, many in seen.rows if s.lstrip().upper().startswith(("INSERT", "UPDATE"))]
    assert len(writes) == 2, writes  # one UPDATE of the installations, one upsert of the components
    update_stmt = next((s, m) for s, m in writes if s.lstrip().upper().startswith("UPDATE"))
    assert update_stmt[1] or "VALUES" in update_stmt[0].upper()  # executemany, or one UPDATE ... FROM (VALUES)
    assert all(_installation(app, i).last_seen_at is not None for i in ids)
    assert _versions(app, ids[0]) == {"server": "1.0", "web": "2.0"}  # only what changed was sent
    assert _versions(app, ids[-1]) == {"web": f"2.{len(ids) - 1}"}


def test_a_changed_inventory_is_written_promptly_and_last_seen_within_a_flush(app_config, backend):
    app = create_app({**app_config, "LAST_SEEN_FLUSH_SECONDS": 0.3, "LAST_SEEN_PROMPT_SECONDS": 0.01})
    try:
        client = app.test_client()
        staff = {"Authorization": f"Bearer {_staff_token(app)}"}
        client.post("/api/v1/customers", json={"name": "Acme"}, headers=staff)
        inst = enroll(client, staff, "Acme", installed={"server": "1.0"})
        old = _age_last_seen(app, inst["installation_id"])
        buffer = app.extensions["seen_buffer"]
        before = buffer.flushes
        assert client.post("/api/v1/updates/check", json={"installed": {"server": "1.0"}},
                           headers=bearer(inst["token"])).status_code == 200
        assert buffer.wait_flushed(before, timeout=10)
        got = client.get(f"/api/v1/installations/{inst['installation_id']}", headers=staff).json
        assert datetime.fromisoformat(got["last_seen_at"]) > old

        buffer.interval = 3600  # from now on only a changed inventory wakes the flusher
        before = buffer.flushes
        client.post("/api/v1/updates/check", json={"installed": {"server": "1.2"}}, headers=bearer(inst["token"]))
        assert buffer.wait_flushed(before, timeout=10)
        got = client.get(f"/api/v1/installations/{inst['installation_id']}", headers=staff).json
        assert got["versions"] == {"server": "1.2"}
    finally:
        app.extensions["seen_buffer"].stop()
        close_app(app)


def test_a_late_flush_does_not_undo_a_report_stored_since(slow_flush, backend):
    app = slow_flush
    client = app.test_client()
    staff = {"Authorization": f"Bearer {_staff_token(app)}"}
    client.post("/api/v1/customers", json={"name": "Acme"}, headers=staff)
    create_component(client, staff, "server")
    inst = enroll(client, staff, "Acme", installed={"server": "1.0"})
    h = bearer(inst["token"])
    client.post("/api/v1/updates/check", json={"installed": {"server": "1.1"}}, headers=h)
    r = client.post("/api/v1/reports", json={"reports": [{"id": str(uuid.uuid4()), "component": "server",
                                                          "from_version": "1.1", "to_version": "1.2",
                                                          "outcome": "success"}]}, headers=h)
    assert r.status_code == 200
    app.extensions["seen_buffer"].flush()
    assert _versions(app, inst["installation_id"]) == {"server": "1.2"}


SHUTDOWN_SCRIPT = """
import json, sys
from release_server import create_app
config = json.loads(sys.argv[1])
app = create_app(config)
client = app.test_client()
r = client.post("/api/v1/updates/check", json={"installed": {"server": "3.0"}},
                headers={"Authorization": "Bearer " + sys.argv[2]})
assert r.status_code == 200, r.data
assert len(app.extensions["seen_buffer"]) == 1
"""


def test_pending_rows_are_written_at_exit(app_config, app, client, staff, acme):
    inst = enroll(client, staff, "Acme", installed={"server": "1.0"})
    old = _age_last_seen(app, inst["installation_id"])
    config = {**app_config, "LAST_SEEN_FLUSH_SECONDS": 3600, "LAST_SEEN_PROMPT_SECONDS": 3600}
    subprocess.run([sys.executable, "-c", SHUTDOWN_SCRIPT, json.dumps(config), inst["token"]], check=True,
                   timeout=120)
    stored = _installation(app, inst["installation_id"])
    assert stored.last_seen_at > old and _versions(app, inst["installation_id"]) == {"server": "3.0"}


# ---------------------------------------------------------------- credentials


def test_revocation_in_another_process_is_refused_at_the_next_recheck(app_config, app, client, staff, acme):
    other = create_app(dict(app_config))  # a second process on the same database
    try:
        oc = other.test_client()
        a = enroll(client, staff, "Acme", name="a")
        b = enroll(client, staff, "Acme", name="b")
        for inst in (a, b):
            assert oc.post("/api/v1/updates/check", json={}, headers=bearer(inst["token"])).status_code == 200
        cache = other.extensions["installation_auth_cache"]
        assert len(cache) == 2
        misses = cache.misses
        assert client.post(f"/api/v1/installations/{a['installation_id']}/revoke", headers=staff).status_code == 200
        r = oc.post("/api/v1/updates/check", json={}, headers=bearer(a["token"]))
        assert r.status_code == 401 and r.json["error"]["field"] == "Authorization"
        # exact: only the revoked installation was forgotten, the other is still served from memory
        assert oc.post("/api/v1/updates/check", json={}, headers=bearer(b["token"])).status_code == 200
        assert cache.misses == misses + 1  # the refused token's own look-up, nothing for b
        assert len(cache) == 1
    finally:
        close_app(other)


def test_the_credential_cache_is_bounded(app_config, app, client, staff, acme):
    small = create_app({**app_config, "INSTALLATION_AUTH_CACHE_SIZE": 3})
    try:
        sc = small.test_client()
        insts = [enroll(client, staff, "Acme", name=f"i{n}") for n in range(6)]
        for _ in range(2):
            for inst in insts:
                assert sc.post("/api/v1/updates/check", json={}, headers=bearer(inst["token"])).status_code == 200
        cache = small.extensions["installation_auth_cache"]
        assert len(cache) == 3 and len(cache._digest_of) == 3
        # the most recently used stay: checking them again reads nothing
        misses = cache.misses
        for inst in insts[-3:]:
            sc.post("/api/v1/updates/check", json={}, headers=bearer(inst["token"]))
        assert cache.misses == misses
    finally:
        close_app(small)


@pytest.mark.parametrize("token", ["rsi_abcdefgh_" + "x" * 30, "rsi_nope", "rsi_" + "a" * 8 + "_" + "y" * 40])
def test_unknown_installation_token_is_refused_and_not_cached(app, client, staff, acme, token):
    real = enroll(client, staff, "Acme")
    # same prefix as a real installation, wrong secret
    forged = real["token"][:13] + "z" * (len(real["token"]) - 13)
    for t in (token, forged):
        r = client.post("/api/v1/updates/check", json={}, headers=bearer(t))
        assert r.status_code == 401 and r.json["error"]["field"] == "Authorization"
    assert len(app.extensions["installation_auth_cache"]) == 0


def test_installation_edits_reach_other_processes_exactly(app_config, app, client, staff, acme):
    create_component(client, staff, "server")
    publish(client, staff, "server", "1.0", channels=["stable", "beta"])
    publish(client, staff, "server", "1.1", channels=["stable", "beta"])
    publish(client, staff, "server", "2.0b1", channels=["beta"])
    other = create_app(dict(app_config))
    try:
        oc = other.test_client()
        a = enroll(client, staff, "Acme", name="a", installed={"server": "1.0"})
        b = enroll(client, staff, "Acme", name="b", installed={"server": "1.0"})

        def offered(inst) -> list[str]:  # noqa: ANN001
            r = oc.post("/api/v1/updates/check", json={"installed": {"server": "1.0"}}, headers=bearer(inst["token"]))
            assert r.status_code == 200
            return [o["version"] for o in r.json["offers"]]

        assert offered(a) == ["1.1"] and offered(b) == ["1.1"]
        cache = other.extensions["installation_auth_cache"]
        misses = cache.misses
        # channel
        client.patch(f"/api/v1/installations/{a['installation_id']}", json={"channel": "beta"}, headers=staff)
        assert offered(a) == ["2.0b1"] and offered(b) == ["1.1"]
        assert cache.misses == misses + 1
        # tags, through a tag pin
        r = client.post("/api/v1/pins", json={"scope": "tag", "value": "frozen", "component": "server",
                                              "version": "1.0"}, headers=staff)
        assert r.status_code == 201
        assert offered(a) == ["2.0b1"]
        client.patch(f"/api/v1/installations/{a['installation_id']}", json={"tags": ["frozen"]}, headers=staff)
        assert offered(a) == [] and offered(b) == ["1.1"]
        assert cache.misses == misses + 2
        # an installation pin changes the catalog, not the credentials
        r = client.post("/api/v1/pins", json={"scope": "installation", "value": b["installation_id"],
                                              "component": "server", "version": "1.0"}, headers=staff)
        assert offered(b) == [] and cache.misses == misses + 2
        client.delete(f"/api/v1/pins/{r.json['id']}", headers=staff)
        assert offered(b) == ["1.1"]
    finally:
        close_app(other)
