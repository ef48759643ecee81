"""TUF metadata served from per-process cached bytes: ETags, 304s, invalidation, lazy refresh."""
from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from factories import create_component, publish
from sqlalchemy import event
from release_server import close_app


class FakeClock:
    """Stands in for the ``time`` module of the caches: ``monotonic`` moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(app: Any, monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    from release_server.rollouts import catalog
    from release_server.signing import serving

    fake = FakeClock()
    monkeypatch.setattr(serving, "time", fake)
    monkeypatch.setattr(catalog, "time", fake)
    app.extensions["tuf_metadata_cache"].recheck_seconds = 1.0
    app.extensions["catalog_cache"].recheck_seconds = 1.0
    return fake


@pytest.fixture
def statements(app: Any) -> list[str]:
    seen: list[str] = []
    engine = app.extensions["db_engine"]

    def on_execute(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", on_execute)
    yield seen
    event.remove(engine, "before_cursor_execute", on_execute)


def _version(resp: Any) -> int:
    return json.loads(resp.data)["signed"]["version"]


def test_timestamp_from_memory_with_etag_and_304(app: Any, client: Any, tuf_repo: Any, clock: FakeClock,
                                                 statements: list[str]) -> None:
    first = client.get("/tuf/metadata/timestamp.json")
    assert first.status_code == 200 and first.headers["Cache-Control"] == "no-cache"
    etag = first.headers["ETag"]
    statements.clear()
    again = client.get("/tuf/metadata/timestamp.json")
    assert again.data == first.data and again.headers["ETag"] == etag
    assert statements == []  # no database round trip within the recheck period
    not_modified = client.get("/tuf/metadata/timestamp.json", headers={"If-None-Match": etag})
    assert not_modified.status_code == 304 and not_modified.data == b""
    assert not_modified.headers["ETag"] == etag
    other = client.get("/tuf/metadata/timestamp.json", headers={"If-None-Match": '"something-else"'})
    assert other.status_code == 200 and other.data == first.data


def test_own_release_change_is_served_at_once(app: Any, client: Any, auth: Any, tuf_repo: Any,
                                              clock: FakeClock) -> None:
    before = client.get("/tuf/metadata/timestamp.json")
    pub = auth.headers("publisher")
    assert create_component(client, pub, "server").status_code == 201
    assert publish(client, pub, "server", "1.0").status_code == 201
    after = client.get("/tuf/metadata/timestamp.json")  # no recheck period passed: this process wrote it
    assert _version(after) > _version(before) and after.headers["ETag"] != before.headers["ETag"]
    snap = json.loads(after.data)["signed"]["meta"]["snapshot.json"]["version"]
    versioned = client.get(f"/tuf/metadata/{snap}.snapshot.json")
    assert versioned.status_code == 200 and versioned.headers["Cache-Control"].endswith("immutable")
    assert client.get(f"/tuf/metadata/{snap}.snapshot.json",
                      headers={"If-None-Match": versioned.headers["ETag"]}).status_code == 304
    assert client.get(f"/tuf/metadata/{snap + 5}.snapshot.json").status_code == 404


@pytest.fixture
def other_process(app_config: dict[str, Any]) -> Any:
    """A second application on the same database and storage: another server process."""
    from release_server import create_app

    other = create_app(dict(app_config))
    yield other
    close_app(other)


def test_release_change_elsewhere_is_served_once_the_state_version_moves(
        app: Any, client: Any, auth: Any, tuf_repo: Any, clock: FakeClock, other_process: Any) -> None:
    before = client.get("/tuf/metadata/timestamp.json")
    pub = auth.headers("publisher")
    elsewhere = other_process.test_client()
    assert create_component(elsewhere, pub, "server").status_code == 201
    assert publish(elsewhere, pub, "server", "1.0").status_code == 201
    # within the recheck period this process still serves what it had (as its check answers do)
    assert client.get("/tuf/metadata/timestamp.json").data == before.data
    clock.now += 1.5
    assert _version(client.get("/tuf/metadata/timestamp.json")) > _version(before)


def test_refresh_by_another_process_is_seen_after_the_recheck(app: Any, client: Any, tuf_repo: Any,
                                                              clock: FakeClock, other_process: Any) -> None:
    from release_server.db import db
    from release_server.signing import services

    before = client.get("/tuf/metadata/timestamp.json")
    with other_process.app_context():
        assert services.refresh(db.session, force=True)
        db.commit()
    assert client.get("/tuf/metadata/timestamp.json").data == before.data
    clock.now += 1.5
    assert _version(client.get("/tuf/metadata/timestamp.json")) > _version(before)


def test_lazy_refresh_near_expiry_is_not_delayed_by_the_cache(app: Any, client: Any, tuf_repo: Any,
                                                              clock: FakeClock,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from release_server.signing import services

    before = client.get("/tuf/metadata/timestamp.json")
    later = services.utcnow() + timedelta(hours=23)  # within the margin of a 1-day timestamp
    monkeypatch.setattr(services, "utcnow", lambda: later)
    fresh = client.get("/tuf/metadata/timestamp.json")  # no recheck period has passed, yet it is re-signed
    assert _version(fresh) == _version(before) + 1
    from tuf.api.metadata import Metadata, Timestamp

    assert Metadata[Timestamp].from_bytes(fresh.data).signed.expires > later + timedelta(hours=12)
    assert client.get("/tuf/metadata/timestamp.json").data == fresh.data  # and cached again
