"""Languages: every interface text translatable; English and Russian; the person's choice, then the browser's."""
from __future__ import annotations

import re
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
    """Every translatable string in the package's templates and code has a Russian translation, and the .mo
    matches the .po. The failure names each missing string and where it is used."""
    from release_server.web.i18n import extract_messages, format_missing, missing_translations

    wanted = extract_messages()
    assert len(wanted) > 300
    # strings marked with the lazy keyword are found too (the catalog once lost them without -k _l)
    assert "Waiting for customer" in wanted and any(f.endswith("web/i18n.py") for f, _ in wanted["Incident"])
    missing = missing_translations("ru")
    assert not missing, format_missing("ru", missing)
    with (TRANSLATIONS / "ru" / "LC_MESSAGES" / "messages.po").open("rb") as fh:
        po = {m.id: m.string for m in read_po(fh) if m.id}
    with (TRANSLATIONS / "ru" / "LC_MESSAGES" / "messages.mo").open("rb") as fh:
        mo = {m.id: m.string for m in read_mo(fh) if m.id}
    assert {k: v for k, v in po.items() if v} == mo, "run: scripts/i18n"
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


def test_the_check_names_a_missing_string_and_where_it_is(tmp_path: Path, monkeypatch: Any) -> None:
    from release_server.web import i18n

    (tmp_path / "web" / "templates").mkdir(parents=True)
    (tmp_path / "web" / "templates" / "page.html").write_text("<p>{{ _('A string nobody translated') }}</p>\n")
    (tmp_path / "code.py").write_text("from flask_babel import lazy_gettext as _l\nLABEL = _l('Another one')\n")
    ru = tmp_path / "translations" / "ru" / "LC_MESSAGES"
    ru.mkdir(parents=True)
    (ru / "messages.po").write_text('msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n\n'
                                    'msgid "Another one"\nmsgstr ""\n', encoding="utf-8")
    (tmp_path / "translations" / "babel.cfg").write_text((TRANSLATIONS / "babel.cfg").read_text())
    monkeypatch.setattr(i18n, "PACKAGE_DIR", tmp_path)
    monkeypatch.setattr(i18n, "TRANSLATIONS_DIR", tmp_path / "translations")
    missing = i18n.missing_translations("ru")
    assert sorted(missing) == ["A string nobody translated", "Another one"]
    text = i18n.format_missing("ru", missing)
    assert "'A string nobody translated'  (release_server/web/templates/page.html:1)" in text
    assert "'Another one'  (release_server/code.py:2)" in text
