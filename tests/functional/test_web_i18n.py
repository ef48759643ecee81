"""Languages: every interface text translatable; English and Russian; the person's choice, then the browser's."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parents[2]
TRANSLATIONS = ROOT / "release_server" / "web" / "translations"


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def test_the_browser_language_is_used(client: Any) -> None:
    page = client.get("/console/login", headers={"Accept-Language": "ru-RU,ru;q=0.9,en;q=0.5"})
    assert '<html lang="ru">' in page.text and "Вход для сотрудников" in page.text
    page = client.get("/console/login", headers={"Accept-Language": "de-DE,de;q=0.9"})
    assert '<html lang="en">' in page.text and "Staff login" in page.text


def test_the_chosen_language_beats_the_browser(client: Any) -> None:
    page = client.get("/portal/login", headers={"Accept-Language": "en"})
    resp = client.post("/language", data={"lang": "ru", "next": "/portal/login", "csrf_token": csrf_of(page.text)})
    assert resp.status_code == 302 and resp.headers["Location"] == "/portal/login"
    assert "lang=ru" in resp.headers["Set-Cookie"]
    page = client.get("/portal/login", headers={"Accept-Language": "en"})
    assert "Портал клиента" in page.text and '<option value="ru" selected>' in page.text
    # an unknown language or a foreign 'next' changes nothing harmful
    resp = client.post("/language", data={"lang": "xx", "next": "//evil.example/", "csrf_token": csrf_of(page.text)})
    assert resp.headers["Location"] == "/"
    assert "Портал клиента" in client.get("/portal/login").text


def test_the_language_survives_login(app: Any, client: Any) -> None:
    from release_server.accounts import services
    from release_server.db import db

    with app.app_context():
        services.create_user(db.session, "ivan", "correct horse battery", "support")
        db.commit()
    page = client.get("/console/login")
    client.post("/language", data={"lang": "ru", "next": "/console/login", "csrf_token": csrf_of(page.text)})
    page = client.get("/console/login")
    client.post("/console/login", data={"username": "ivan", "password": "correct horse battery",
                                        "csrf_token": csrf_of(page.text)})
    page = client.get("/console/tickets")
    assert "Заявки" in page.text and "Поиск заявок" in page.text


def test_russian_catalog_is_complete_and_compiled(tmp_path: Path) -> None:
    """Every message in the templates and code has a Russian translation, and the .mo matches the .po."""
    pot = tmp_path / "messages.pot"
    subprocess.run([sys.executable, "-m", "babel.messages.frontend", "extract", "-F",
                    str(TRANSLATIONS / "babel.cfg"), "-k", "_l", "-k", "lazy_gettext", "--no-location", "-o",
                    str(pot), str(ROOT / "release_server" / "web"), str(ROOT / "release_server" / "messages.py"),
                    str(ROOT / "release_server" / "demo.py")],
                   check=True, capture_output=True, cwd=ROOT)
    with pot.open("rb") as fh:
        wanted = {m.id for m in read_po(fh) if m.id}
    assert len(wanted) > 200
    with (TRANSLATIONS / "ru" / "LC_MESSAGES" / "messages.po").open("rb") as fh:
        po = {m.id: m.string for m in read_po(fh) if m.id}
    missing = sorted(w for w in wanted if not po.get(w))
    assert not missing, f"untranslated: {missing[:20]}"
    with (TRANSLATIONS / "ru" / "LC_MESSAGES" / "messages.mo").open("rb") as fh:
        mo = {m.id: m.string for m in read_mo(fh) if m.id}
    assert {k: v for k, v in po.items() if v} == mo, "run: python -m release_server.web.i18n compile"
    # the placeholders of each message survive translation
    for msgid, text in po.items():
        assert sorted(re.findall(r"%\(\w+\)[sd]", msgid)) == sorted(re.findall(r"%\(\w+\)[sd]", text)), msgid


def test_the_language_is_kept_on_the_account(app: Any) -> None:
    """Chosen once while logged in, the language follows the person to another browser."""
    from release_server.accounts import services
    from release_server.db import db

    with app.app_context():
        services.create_user(db.session, "olga", "correct horse battery", "support")
        db.commit()

    def login(client: Any) -> None:
        page = client.get("/console/login")
        client.post("/console/login", data={"username": "olga", "password": "correct horse battery",
                                            "csrf_token": csrf_of(page.text)})

    first = app.test_client()
    login(first)
    page = first.get("/console/tickets", headers={"Accept-Language": "en"})
    assert "Поиск заявок" not in page.text
    first.post("/language", data={"lang": "ru", "next": "/console/tickets", "csrf_token": csrf_of(page.text)})
    other = app.test_client()  # another browser: no cookie, an English Accept-Language
    login(other)
    page = other.get("/console/tickets", headers={"Accept-Language": "en"})
    assert "Поиск заявок" in page.text
