"""Mail that cannot be parsed is listed for staff in the console, with the raw message to download."""
from __future__ import annotations

import re

PASSWORD = "correct horse battery"


def make_staff(app, username, role):
    from release_server.accounts import services
    from release_server.db import db

    with app.app_context():
        services.create_user(db.session, username, PASSWORD, role)
        db.commit()


def console_login(client, username):
    page = client.get("/console/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    return client.post("/console/login", data={"username": username, "password": PASSWORD, "csrf_token": token})

RAW = b"\x00\x01 this is not a mail at all\r\n\r\nbinary \xff\xfe"


def send_unreadable(client, auth, raw=RAW, expect=422):
    r = client.post("/api/v1/support/mail", data=raw,
                    headers={**auth.headers("support"), "Content-Type": "message/rfc822"})
    assert r.status_code == expect, r.text
    return r.json


def test_staff_see_unreadable_mail_and_download_it_raw(app, client, auth):
    send_unreadable(client, auth)
    assert send_unreadable(client, auth, expect=200)["outcome"] == "duplicate"  # the MTA tries again: kept once
    make_staff(app, "sam", "support")
    assert console_login(client, "sam").status_code == 302
    page = client.get("/console/mail/unreadable")
    assert page.status_code == 200
    assert "The message does not start with a header field." in page.text
    assert page.text.count("/raw\"") == 1
    nav = page.text.split('class="main-nav"', 1)[1].split("</nav>", 1)[0]
    assert ">Unreadable mail</a>" in nav
    link = page.text.split('href="/console/mail/unreadable/', 1)[1].split('"', 1)[0]
    raw = client.get("/console/mail/unreadable/" + link)
    try:
        assert raw.status_code == 200 and raw.data == RAW
        assert raw.headers["Content-Type"] == "application/octet-stream"
        assert "attachment" in raw.headers["Content-Disposition"]
    finally:
        raw.close()


def test_the_page_is_in_russian_for_a_russian_reader(app, client, auth):
    send_unreadable(client, auth)
    make_staff(app, "sam", "support")
    console_login(client, "sam")
    page = client.get("/console/mail/unreadable", headers={"Accept-Language": "ru"})
    assert "Нечитаемые письма" in page.text
    assert "Письмо не начинается с поля заголовка." in page.text


def test_only_unreadable_inbound_mail_can_be_downloaded_here(app, client, auth):
    ok = client.post("/api/v1/support/mail", data=b"From: a@b.example\r\nSubject: fine\r\n\r\nhello\r\n",
                     headers={**auth.headers("support"), "Content-Type": "message/rfc822"})
    assert ok.status_code == 201
    make_staff(app, "sam", "support")
    console_login(client, "sam")
    assert client.get(f"/console/mail/unreadable/{ok.json['mail_id']}/raw").status_code == 404
    assert client.get("/console/mail/unreadable/99999999999999999999/raw").status_code == 404
