"""The console shows delta patches and bytes saved, per release and across the fleet, in both languages."""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from factories import create_component, enroll, make_tarball, publish
from functional.test_web_console import console_login, make_staff

LIB = random.Random(9).randbytes(100_000)


def test_release_page_and_dashboard_show_patches_and_bytes_saved(app: Any, client: Any, auth: Any) -> None:
    from release_server.db import db
    from release_server.deltas import services
    from release_server.signing import ceremony

    with app.app_context():
        ceremony.local_trial(db.session, Path(app.instance_path) / "root-keys")
        db.commit()
    admin = auth.headers("admin")
    create_component(client, admin, "server")
    for v in ("1.0", "1.1"):
        publish(client, admin, "server", v, artifact=make_tarball({"lib.so": LIB, "v": v}))
    with app.app_context():
        [made] = services.generate(lambda write: db.new_session(write=write), "server", "1.1")
    client.post("/api/v1/customers", json={"name": "Acme"}, headers=admin)
    inst = enroll(client, admin, "Acme")
    report = {"id": "6f1c2b1e-8d7a-4c1e-9a53-0d4f1c2b3a4d", "component": "server", "from_version": "1.0",
              "to_version": "1.1", "outcome": "success", "bytes_downloaded": 2048, "bytes_full": 1024 * 1024 + 2048}
    resp = client.post("/api/v1/reports", json={"reports": [report]},
                       headers={"Authorization": f"Bearer {inst['token']}"})
    assert resp.status_code < 300, resp.json

    make_staff(app, "alice", "admin")
    assert console_login(client, "alice").status_code == 302
    page = client.get("/console/releases/server/1.1").text
    section = page.split('id="delta-patches"', 1)[1].split("</section>", 1)[0]
    assert "Delta patches" in section and "signed" in section and "1.0" in section
    assert 'id="release-bytes-saved">1 MB<' in section
    board = client.get("/console/").text
    assert "Delta patches saved 1 MB of 1 MB across the fleet (1 updates)." in board

    page = client.get("/console/releases/server/1.1", headers={"Accept-Language": "ru"}).text
    assert "Дельта-патчи" in page and "Сэкономлено" in page and "подписан" in page
    assert made.status == "ready"
