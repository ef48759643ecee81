"""The console shows who signed a claimed component's pending change and who is awaited, in both
languages, and refuses to yank or promote what only its publishers can sign."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from factories import create_component, make_tarball, publish
from functional.test_web_console import console_login, make_staff, post


def test_release_page_shows_signed_and_awaited_publishers_and_refuses_server_side_yank(app: Any, client: Any,
                                                                                        auth: Any) -> None:
    from release_server.db import db
    from release_server.signing import ceremony, claims, keys, publisher

    root_dir = Path(app.instance_path) / "root-keys"
    assert create_component(client, auth.headers("admin"), "server").status_code == 201
    with app.app_context():
        ceremony.local_trial(db.session, root_dir)
        db.commit()
        signers = [keys.generate_signer() for _ in range(3)]
        claims.claim(db.session, "server", [s.public_key for s in signers], 2,
                     root_signers=ceremony.load_root_keys(root_dir)[:2], actor="test")
        db.commit()
    admin = auth.headers("admin")
    body = make_tarball({"v": "1"})
    st = client.get("/api/v1/components/server/signing", headers=admin).json
    role = publisher.publish_role(st, component="server", version="1.0", filename="server-1.0.tar.gz",
                                  sha256=hashlib.sha256(body).hexdigest(), length=len(body), channels=["beta"],
                                  critical=False, min_from_version=None, requires={}, changelog="")
    role.sign(signers[0], append=True)
    assert publish(client, admin, "server", "1.0", artifact=body, tuf_role=role.to_dict()).status_code == 201

    make_staff(app, "alice", "admin")
    assert console_login(client, "alice").status_code == 302
    page = client.get("/console/releases/server/1.0").text
    section = page.split('id="publisher-signatures"', 1)[1].split("</section>", 1)[0]
    assert "has 1 of 2 signatures" in section and "Nothing is offered until the threshold is met." in section
    assert "Publication 1.0, proposed by" in section and section.count(">has signed<") == 1
    assert signers[0].public_key.keyid[:16] in section.split("awaited")[0]
    assert section.count(">awaited<") == 2
    assert "pending signatures" in client.get("/console/releases?component=server").text
    ru = client.get("/console/releases/server/1.0", headers={"Accept-Language": "ru"}).text
    assert "Подписи издателей" in ru and "ожидается" in ru
    ru_section = ru.split('id="publisher-signatures"', 1)[1].split("</section>", 1)[0]
    assert "Публикация 1.0" in ru_section and ">подписал<" in ru_section and "publish" not in ru_section

    resp = post(client, "/console/releases/server/1.0/yank", {"reason": "bad"}, page="/console/releases/server/1.0")
    assert resp.status_code == 303
    with app.app_context():
        from release_server.releases import services

        assert services.get_release(db.session, "server", "1.0").yanked is False


def test_demo_has_one_claimed_component_with_a_release_waiting_for_a_second_signature(app: Any, client: Any,
                                                                                    tmp_path: Path) -> None:
    from release_server import demo
    from release_server.db import db
    from release_server.releases import services
    from release_server.signing import ceremony, claims

    root_dir = tmp_path / "root-keys"
    with app.app_context():
        ceremony.local_trial(db.session, root_dir)
        db.commit()
        summary = demo.load(db.session, staff_password="demo password 1", customer_password="demo password 1",
                            root_keys=root_dir)
        db.commit()
        assert summary.publisher_keys == tmp_path / "publisher-keys"
        assert sorted(p.name for p in summary.publisher_keys.glob("*.pem")) == ["anna.pem", "boris.pem", "chen.pem"]
        assert services.get_release(db.session, "payments", "1.0.0").signatures_pending is False
        assert services.get_release(db.session, "payments", "1.1.0").signatures_pending is True
        st = claims.publisher_state(db.session, "payments")
        assert st["threshold"] == 2 and len(st["keys"]) == 3
        assert st["pending"]["version"] == "1.1.0" and len(st["pending"]["signed"]) == 1
    make_staff(app, "alice", "admin")
    assert console_login(client, "alice").status_code == 302
    page = client.get("/console/releases/payments/1.1.0").text
    assert "has 1 of 2 signatures" in page
