"""Fleet lists at fleet size: installations, customers and pins are filtered, counted and paged by the database.

Each list is checked against an oracle computed in Python from every row (the way the
lists used to be built), and each page is shown to run the same statements, returning at
most a page of rows, whether the fleet holds 30 or 300 installations.
"""
from __future__ import annotations

import random
import re
import uuid
from datetime import timedelta
from typing import Any

import pytest
from factories import create_component, statements_run
from functional.test_web_console import console_login, make_staff
from sqlalchemy import insert, select

from release_server.db import db
from release_server.fleet.models import Customer, InstalledComponent, Installation
from release_server.fleet.services import health_of
from release_server.models_common import utcnow
from release_server.rollouts.models import Pin

TAGS = ["eu", "us", "kiosk", "pilot", "eu-west", "e_u"]  # "eu-west" and "e_u" must not match "eu"
STATES = ["up_to_date", "updating", "failing"]


@pytest.fixture
def world(app: Any, client: Any, auth: Any) -> dict[str, Any]:
    admin = auth.headers("admin")
    for name in ("Acme", "Globex"):
        assert client.post("/api/v1/customers", json={"name": name}, headers=admin).status_code == 201
    create_component(client, admin, "server")
    return admin


def add_installations(app: Any, count: int, seed: int) -> None:
    rnd = random.Random(seed)
    now = utcnow()
    with app.app_context():
        s = db.session
        customers = list(s.scalars(select(Customer.id).order_by(Customer.id)))
        insts, inventory = [], []
        for i in range(count):
            iid = str(uuid.UUID(int=rnd.getrandbits(128)))
            seen = None if rnd.random() < 0.1 else now - timedelta(hours=rnd.choice([1, 5, 47, 49, 400]))
            insts.append(dict(id=iid, customer_id=rnd.choice(customers), name=f"host-{rnd.randrange(60):02d}",
                              token_prefix=f"p{seed}-{i}", token_hash="x" * 64, state=rnd.choice(STATES),
                              tags=sorted(rnd.sample(TAGS, rnd.randrange(3))), last_seen_at=seen))
            if rnd.random() < 0.8:
                inventory.append(dict(installation_id=iid, component="server",
                                      version=rnd.choice(["2.4", "2.4.1", "2.40", "3.0"])))
        s.execute(insert(Installation), insts)
        s.execute(insert(InstalledComponent), inventory)
        s.commit()


def oracle(app: Any, *, customer: int | None = None, tag: str | None = None, health: str | None = None,
           version: str | None = None) -> list[str]:
    """The ids that pass, in list order, from every row (the old way)."""
    with app.app_context():
        now = utcnow()
        out = []
        for inst in db.session.scalars(select(Installation).order_by(Installation.name, Installation.id)):
            versions = {c.component: c.version for c in inst.components}
            if customer is not None and inst.customer_id != customer:
                continue
            if tag is not None and tag not in (inst.tags or []):
                continue
            if health is not None and health_of(inst, now) != health:
                continue
            if version is not None and not (versions.get("server") == version
                                            or (versions.get("server") or "").startswith(version + ".")):
                continue
            out.append(inst.id)
        return out


def listed(client: Any, headers: dict[str, str], per_page: int = 7, **filters: Any) -> tuple[list[str], int]:
    ids, page, total = [], 1, None
    while True:
        r = client.get("/api/v1/installations", query_string={**filters, "page": page, "per_page": per_page},
                       headers=headers)
        assert r.status_code == 200, r.json
        assert total in (None, r.json["total"])
        total = r.json["total"]
        assert len(r.json["items"]) <= per_page
        ids += [i["id"] for i in r.json["items"]]
        if page * per_page >= total:
            return ids, total
        page += 1


def test_the_installation_list_filters_and_pages_as_every_row_would(app: Any, client: Any,
                                                                     world: dict[str, Any]) -> None:
    add_installations(app, 150, seed=3)
    with app.app_context():
        acme = db.session.scalar(select(Customer.id).where(Customer.name == "Acme"))
    cases = [{}, {"tag": "eu"}, {"tag": "e_u"}, {"tag": "kiosk", "health": "failing"}, {"health": "stale"},
             {"health": "up_to_date"}, {"customer": str(acme), "health": "updating"},
             {"component": "server", "version": "2.4"}, {"component": "server", "version": "2.4", "tag": "pilot"}]
    for filters in cases:
        want = oracle(app, customer=acme if "customer" in filters else None, tag=filters.get("tag"),
                      health=filters.get("health"), version=filters.get("version"))
        got, total = listed(client, world, **filters)
        assert got == want and total == len(want), filters
    assert listed(client, world, tag="eu")[1] > 0 and listed(client, world, health="stale")[1] > 0


def test_fleet_pages_run_the_same_statements_for_30_and_300_installations(app: Any, client: Any,
                                                                           world: dict[str, Any],
                                                                           backend: str) -> None:
    make_staff(app, "sam", "support")
    assert console_login(client, "sam").status_code == 302
    with app.app_context():
        acme = db.session.scalar(select(Customer.id).where(Customer.name == "Acme"))
    pages = ["/console/installations", "/console/installations?tag=eu&health=stale", "/console/customers",
             f"/console/customers/{acme}", "/console/pins"]
    per_size: dict[int, dict[str, list[tuple[str, int]]]] = {}
    for size, add, seed in ((30, 30, 1), (300, 270, 2)):
        add_installations(app, add, seed)
        with app.app_context():  # a pin on each installation: the pins page names them
            ids = list(db.session.scalars(select(Installation.id)))
            db.session.execute(insert(Pin), [dict(scope="installation", scope_value=i, component="server",
                                                  value="2.4", exact=False, note="", created_by="sam")
                                             for i in ids if i not in set(db.session.scalars(
                                                 select(Pin.scope_value)))])
            db.session.commit()
        per_size[size] = {}
        for url in pages:
            r = client.get(url)
            assert r.status_code == 200, url
            per_size[size][url] = statements_run(app, lambda url=url: client.get(url))
    def shapes(seen: list[tuple[str, int]]) -> list[str]:  # a page of ids in IN (...) is one shape
        return [re.sub(r"IN \((?:[^()]|\([^()]*\))*\)", "IN (...)", statement) for statement, _ in seen]

    for url in pages:
        assert shapes(per_size[30][url]) == shapes(per_size[300][url]), url
        if backend == "postgresql":  # the driver counts the rows each statement returned: at most a page
            assert max(n for _, n in per_size[300][url]) <= 100, url
    text = client.get(f"/console/customers/{acme}").get_data(as_text=True)
    with app.app_context():
        total = db.session.query(Installation).filter(Installation.customer_id == acme).count()
    assert f"({total})" in text and "?page=2" in text  # the count of all, a page of them, the way on
    assert client.get(f"/console/customers/{acme}?page=2").status_code == 200


def test_pins_are_listed_a_page_at_a_time_with_their_count(app: Any, client: Any, world: dict[str, Any]) -> None:
    add_installations(app, 130, seed=5)
    with app.app_context():
        ids = list(db.session.scalars(select(Installation.id).order_by(Installation.id)))
        db.session.execute(insert(Pin), [dict(scope="installation", scope_value=i, component="server", value="2.4",
                                              exact=False, note="", created_by="admin") for i in ids])
        db.session.commit()
        want = [p for p in db.session.scalars(select(Pin.id).order_by(Pin.id))]
    got = []
    for page in (1, 2):
        r = client.get("/api/v1/pins", query_string={"page": page}, headers=world)
        assert r.status_code == 200 and r.json["total"] == 130
        got += [p["id"] for p in r.json["items"]]
    assert got == want and len(client.get("/api/v1/pins", headers=world).json["items"]) == 100
    r = client.get("/api/v1/pins", query_string={"per_page": 1000}, headers=world)
    assert r.status_code == 400 and r.json["error"]["field"] == "per_page"
