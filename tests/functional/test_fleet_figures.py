"""Fleet figures for the dashboard: counted in SQL, not by loading every installation."""
from __future__ import annotations

from datetime import timedelta
from typing import Any

from factories import create_component, enroll, publish
from sqlalchemy import event, update

from release_server.db import db
from release_server.fleet.models import Installation
from release_server.models_common import utcnow
from release_server.rollouts import figures


def test_versions_in_use_counts_stale_and_live_installations_in_sql(app: Any, client: Any, auth: Any) -> None:
    admin = auth.headers("admin")
    assert client.post("/api/v1/customers", json={"name": "Acme"}, headers=admin).status_code == 201
    create_component(client, admin, "server")
    publish(client, admin, "server", "1.0", channels=["stable"])
    insts = [enroll(client, admin, "Acme", name=f"n{i}", installed={"server": "1.0"}) for i in range(5)]
    ids = [i["installation_id"] for i in insts]
    now = utcnow()
    with app.app_context():
        s = db.session
        s.execute(update(Installation).where(Installation.id == ids[0]).values(last_seen_at=now - timedelta(days=3)))
        s.execute(update(Installation).where(Installation.id == ids[1]).values(last_seen_at=None))
        s.execute(update(Installation).where(Installation.id == ids[2]).values(last_seen_at=now - timedelta(hours=47)))
        s.execute(update(Installation).where(Installation.id == ids[3]).values(revoked_at=now,
                                                                                last_seen_at=now - timedelta(days=9)))
        s.commit()
        seen: list[str] = []

        def on(conn, cursor, statement, *args: Any) -> None:  # noqa: ANN001
            seen.append(statement)

        engine = app.extensions["db_engine"]
        event.listen(engine, "before_cursor_execute", on)
        try:
            rows, stale, total = figures.versions_in_use(db.session)
            days = figures.adoption(db.session, "server", 3)
        finally:
            event.remove(engine, "before_cursor_execute", on)
    assert rows == [("server", "1.0", 4)]
    assert (stale, total) == (2, 4)  # 3 days unseen and never seen; 47 hours is not stale; revoked not counted
    assert days[-1][1] == {"1.0": 4}
    # no installation is loaded whole (no hostname column read, no components loaded per installation)
    assert not any("installations.hostname" in s for s in seen), seen
    assert api_figures(client, admin) == (2, 4)


def api_figures(client: Any, admin: dict[str, str]) -> tuple[int, int]:
    r = client.get("/api/v1/fleet/versions", headers=admin).json
    return r["stale"], r["total"]
