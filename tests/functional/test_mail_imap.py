"""Polling a real IMAP server (dovecot, started by the test on loopback with its own configuration):
non-ASCII folder names and password, processed mail moved or marked with a private keyword
whatever its \\Seen flag, a message without Message-ID stored once however often it is fetched,
and one poll at a time.

Skipped when dovecot is not installed, unless ``REQUIRE_IMAP=1`` (then it fails).
"""
from __future__ import annotations

import getpass
import imaplib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from sqlalchemy import select

DOVECOT = shutil.which("dovecot") or ("/usr/sbin/dovecot" if os.path.exists("/usr/sbin/dovecot") else None)
PASSWORD = "пароль-Straße"
FOLDER = "Поддержка"
DONE = "Обработано"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def dovecot():
    if DOVECOT is None:
        if os.environ.get("REQUIRE_IMAP") == "1":
            pytest.fail("REQUIRE_IMAP=1 but dovecot is not installed (apt-get install dovecot-imapd)")
        pytest.skip("dovecot is not installed (apt-get install dovecot-imapd); REQUIRE_IMAP=1 makes this fail")
    root = Path(tempfile.mkdtemp(prefix="imap-test-"))
    root.chmod(0o755)
    user = "dovecot" if os.geteuid() == 0 else getpass.getuser()
    login_user = "dovenull" if os.geteuid() == 0 else user
    port = free_port()
    for sub in ("run", "state", "mail"):
        (root / sub).mkdir()
    if os.geteuid() == 0:
        shutil.chown(root / "mail", user, user)
    (root / "passwd").write_text(f"desk:{{PLAIN}}{PASSWORD}\n", encoding="utf-8")
    conf = root / "dovecot.conf"
    conf.write_text(f"""
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
mail_location = maildir:{root}/mail/%u
mail_uid = {user}
mail_gid = {user}
first_valid_uid = 1
first_valid_gid = 1
default_internal_user = {user}
default_internal_group = {user}
default_login_user = {login_user}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={user} gid={user} home={root}/mail/%u
}}
""", encoding="utf-8")
    subprocess.run([DOVECOT, "-c", str(conf)], check=True, timeout=30)
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    yield {"port": port, "root": root}
    subprocess.run([DOVECOT, "-c", str(conf), "stop"], timeout=30)
    shutil.rmtree(root, ignore_errors=True)


def connect(dovecot) -> imaplib.IMAP4:
    c = imaplib.IMAP4("127.0.0.1", dovecot["port"], timeout=10)
    c.authenticate("PLAIN", lambda _: b"\0desk\0" + PASSWORD.encode())
    return c


@pytest.fixture
def mailbox(dovecot):
    """A fresh folder named in Cyrillic; returns a helper that appends and inspects."""
    from release_server.support.imap import encode_mailbox_name

    c = connect(dovecot)
    for name in (FOLDER, DONE):
        c.delete(f'"{encode_mailbox_name(name)}"')
    c.create(f'"{encode_mailbox_name(FOLDER)}"')

    class Box:
        def append(self, raw: bytes, flags: str | None = None) -> None:
            typ, data = c.append(f'"{encode_mailbox_name(FOLDER)}"', flags, None, raw)
            assert typ == "OK", data

        def flags(self, name: str = FOLDER) -> list[bytes]:
            typ, _ = c.select(f'"{encode_mailbox_name(name)}"', readonly=True)
            if typ != "OK":
                return []
            typ, data = c.fetch("1:*", "(FLAGS)")
            return [d for d in data if d] if typ == "OK" else []

        def count(self, name: str) -> int:
            typ, data = c.status(f'"{encode_mailbox_name(name)}"', "(MESSAGES)")
            return int(data[0].split()[-1].rstrip(b")")) if typ == "OK" else 0

    yield Box()
    c.logout()


@pytest.fixture
def app_config(app_config, dovecot):
    return {**app_config, "IMAP_HOST": "127.0.0.1", "IMAP_PORT": dovecot["port"], "IMAP_SSL": False,
            "IMAP_USER": "desk", "IMAP_PASSWORD": PASSWORD, "IMAP_FOLDER": FOLDER}


def inbound(app) -> list:
    from release_server.db import db
    from release_server.support.models import MailMessage

    with app.app_context():
        return list(db.session.scalars(select(MailMessage).where(MailMessage.direction == "in")
                                       .order_by(MailMessage.id)))


def run_poll(app, **overrides):
    from release_server.support.cli import store_one
    from release_server.support.imap import poll_configured

    app.config.update(overrides)
    with app.app_context():
        return poll_configured(app.config, store_one)


MAIL_A = (b"From: Bob <bob@acme.example>\r\nTo: support@localhost\r\nSubject: Read by a person\r\n"
          b"Message-ID: <a@client.example>\r\n\r\nThe export fails.\r\n")
NO_ID = b"From: Eve <eve@acme.example>\r\nTo: support@localhost\r\nSubject: No id\r\n\r\nHello.\r\n"


def test_processed_mail_moves_to_the_done_folder_whatever_its_seen_flag(app, mailbox):
    mailbox.append(MAIL_A, r"(\Seen)")  # a person read it in a client first
    mailbox.append(NO_ID)
    result = run_poll(app, IMAP_DONE_FOLDER=DONE)
    assert (result.stored, result.failed) == (2, 0), str(result)
    assert mailbox.count(FOLDER) == 0 and mailbox.count(DONE) == 2
    assert sorted(m.subject for m in inbound(app)) == ["No id", "Read by a person"]
    assert run_poll(app, IMAP_DONE_FOLDER=DONE).stored == 0


def test_without_a_done_folder_a_private_keyword_marks_processed_mail(app, mailbox):
    mailbox.append(MAIL_A)
    result = run_poll(app, IMAP_DONE_FOLDER=None)
    assert result.stored == 1
    (flags,) = mailbox.flags()
    assert b"$SupportIngested" in flags and b"\\Seen" not in flags  # still unread for the people
    assert run_poll(app, IMAP_DONE_FOLDER=None).stored == 0
    assert len(inbound(app)) == 1


def test_a_message_without_message_id_fetched_twice_is_stored_once(app, mailbox):
    mailbox.append(NO_ID)
    mailbox.append(NO_ID)  # the same bytes again, as after a crash before it was marked done
    result = run_poll(app, IMAP_DONE_FOLDER=DONE)
    assert result.outcomes == {"created": 1, "duplicate": 1}
    assert len(inbound(app)) == 1


def test_a_wrong_password_is_an_error_not_a_traceback(app, mailbox):
    from release_server.support.errors import MailFetchError

    with pytest.raises(MailFetchError):
        run_poll(app, IMAP_PASSWORD="неверный")


def test_only_one_poll_runs_at_a_time(app, mailbox):
    from release_server.support.cli import store_one
    from release_server.support.imap import _release_lease, _take_lease, poll_configured

    mailbox.append(MAIL_A)
    with app.app_context():
        assert _take_lease("another-node", 600)
        try:
            assert poll_configured(app.config, store_one).skipped
        finally:
            _release_lease("another-node")
        assert poll_configured(app.config, store_one).stored == 1


def test_the_worker_polls_the_mailbox_when_it_is_configured(app, mailbox):
    from release_server.worker import jobs

    mailbox.append(MAIL_A)
    with app.app_context():
        (job,) = [j for j in jobs() if j.name == "support-mail-poll"]
        job.run()
    assert [m.subject for m in inbound(app)] == ["Read by a person"]
