"""Changelogs are rendered once, at publish: reading releases renders nothing, deep nesting is refused."""
from __future__ import annotations

import pytest
from factories import create_component, publish


@pytest.fixture
def pub(auth):
    return auth.headers("publisher")


HOSTILE = ("[" * 50_000 + "`a" * 40_000 + "<a " * 20_000 + "*a _b " * 8_000)[:199_000]


def test_hostile_changelog_is_rendered_at_publish_and_never_again(client, pub, app, monkeypatch):
    assert create_component(client, pub, "server").status_code == 201
    resp = publish(client, pub, "server", "1.0.0", changelog=HOSTILE)
    assert resp.status_code == 201, resp.json
    stored = resp.json["changelog_html"]
    assert stored.startswith("<p>[[[[") and "<a " not in stored
    assert publish(client, pub, "server", "1.1.0", changelog="Changes in **1.1**").status_code == 201

    from release_server.releases import changelog

    def no_rendering(*args, **kwargs):
        raise AssertionError("a changelog was rendered while reading")

    monkeypatch.setattr(changelog, "render", no_rendering)
    monkeypatch.setattr(changelog, "markdown_to_html", no_rendering)
    listing = client.get("/api/v1/components/server/releases", headers=pub)
    assert listing.status_code == 200
    assert [r["changelog_html"] for r in listing.json["items"]] == [
        "<p>Changes in <strong>1.1</strong></p>\n", stored]
    one = client.get("/api/v1/components/server/releases/1.0.0", headers=pub)
    assert one.status_code == 200 and one.json["changelog_html"] == stored
    combined = client.get("/api/v1/components/server/changelog?to=1.1.0", headers=pub)
    assert combined.status_code == 200
    html = combined.json["html"]
    assert html.index("<h2>1.1.0</h2>") < html.index("<strong>1.1</strong>") < html.index("<h2>1.0.0</h2>")


def test_changelog_nested_too_deep_is_refused_and_nothing_is_stored(client, pub, app):
    from release_server.storage import get_storage

    assert create_component(client, pub, "server").status_code == 201
    resp = publish(client, pub, "server", "1.0.0", changelog="> " * 1000 + "deep")
    assert resp.status_code == 400
    assert resp.json["error"]["field"] == "changelog" and resp.json["error"]["code"] == "changelog_too_deep"
    with app.app_context():
        assert list(get_storage().list("sha256/")) == []
    assert client.get("/api/v1/components/server/releases", headers=pub).json["items"] == []


def test_console_release_page_shows_the_stored_html(client, pub, auth, app, monkeypatch):
    assert create_component(client, pub, "server").status_code == 201
    assert publish(client, pub, "server", "1.0.0", changelog="* fixed **everything**").status_code == 201
    from release_server.releases import changelog

    monkeypatch.setattr(changelog, "render", lambda *a, **k: (_ for _ in ()).throw(AssertionError("rendered")))
    import re

    page = client.get("/console/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    login = client.post("/console/login", data={"username": "publisher-user", "password": "correct horse battery",
                                                "csrf_token": token})
    assert login.status_code in (302, 303), login.data[:300]
    page = client.get("/console/releases/server/1.0.0")
    assert page.status_code == 200, page.data[:500]
    assert b"<strong>everything</strong>" in page.data
