"""``release-server mailgate``: an MTA pipe into a real server; its exit status tells the MTA what to do."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from release_server.support.cli import EX_DATAERR, EX_OK, EX_TEMPFAIL, deliver

ROOT = Path(__file__).resolve().parents[2]
MESSAGE = (b"From: Bob <bob@acme.example>\r\nTo: support@localhost\r\nSubject: Printer offline\r\n"
           b"Message-ID: <gate-1@acme.example>\r\n\r\nThe invoice printer is offline.\r\n")


@pytest.fixture
def gate(live_server, auth, client):
    client.post("/api/v1/customers", json={"name": "Acme", "mail_domains": ["acme.example"]},
                headers=auth.headers("admin"))
    return live_server, auth.token("support")


def run_gate(args: list[str], stdin: bytes, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELEASE_SERVER_")}
    env.update(PYTHONPATH=str(ROOT), RELEASE_SERVER_INSTANCE_PATH=str(tmp_path / "gate-instance"))
    return subprocess.run([sys.executable, "-m", "release_server.cli", "mailgate", *args], input=stdin,
                          capture_output=True, env=env, timeout=120)


def test_mailgate_against_a_real_server(gate, client, app, auth, tmp_path):
    server, token = gate
    from conftest import free_port
    from sqlalchemy import select

    from release_server.db import db
    from release_server.support.models import MailMessage

    # stored: exit 0, a ticket for the customer of the sender's mail domain
    done = run_gate(["--server", server.url, "--token", token], MESSAGE, tmp_path)
    assert done.returncode == EX_OK, done.stderr.decode()
    tickets = client.get("/api/v1/tickets?q=printer", headers=auth.headers("support")).json["items"]
    assert len(tickets) == 1 and tickets[0]["customer"] == "Acme" and tickets[0]["source"] == "mail"
    # the MTA delivers the same message again (it did not see our answer): 0, stored once
    assert deliver(server.url, token, MESSAGE) == EX_OK
    assert client.get("/api/v1/tickets?q=printer", headers=auth.headers("support")).json["total"] == 1
    # not a message at all: 65 (the MTA bounces it), yet the raw bytes are kept
    assert deliver(server.url, token, b"\x00\x00 garbage, not a message") == EX_DATAERR
    with app.app_context():
        inbound = db.session.scalars(select(MailMessage).where(MailMessage.direction == "in"))
        statuses = sorted(m.status for m in inbound)
        assert statuses == ["stored", "unparseable"]
    # server unreachable, or the token refused (a configuration error): 75, the MTA keeps the mail and retries
    assert deliver(f"http://127.0.0.1:{free_port()}", token, MESSAGE, timeout=5) == EX_TEMPFAIL
    assert deliver(server.url, "rst_aaaaaaaa_" + "x" * 30, MESSAGE) == EX_TEMPFAIL
    done = run_gate(["--server", f"http://127.0.0.1:{free_port()}", "--token", token], MESSAGE, tmp_path)
    assert done.returncode == EX_TEMPFAIL


class _Failing(BaseHTTPRequestHandler):
    status = 503

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = b'{"error": {"code": "storage_unavailable", "message": "S3 down", "field": null}}'
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("status, code", [(503, EX_TEMPFAIL), (500, EX_TEMPFAIL), (413, EX_DATAERR)])
def test_server_errors_map_to_exit_codes(status, code):
    handler = type("H", (_Failing,), {"status": status})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        assert deliver(f"http://127.0.0.1:{httpd.server_address[1]}", "tok", MESSAGE) == code
    finally:
        httpd.shutdown()
        httpd.server_close()
        t.join()


def test_mailgate_reads_its_token_from_a_file_or_the_environment(gate, client, auth, tmp_path):
    server, token = gate
    token_file = tmp_path / "mailgate.token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    by_file = run_gate(["--server", server.url, "--token-file", str(token_file)],
                       MESSAGE.replace(b"gate-1@", b"gate-file@"), tmp_path)
    assert by_file.returncode == EX_OK, by_file.stderr.decode()
    assert b"warning" not in by_file.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELEASE_SERVER_")}
    env.update(PYTHONPATH=str(ROOT), RELEASE_SERVER_INSTANCE_PATH=str(tmp_path / "gate-instance"),
               RELEASE_SERVER_URL=server.url, RELEASE_SERVER_TOKEN=token)
    by_env = subprocess.run([sys.executable, "-m", "release_server.cli", "mailgate"],
                            input=MESSAGE.replace(b"gate-1@", b"gate-env@"), capture_output=True, env=env,
                            timeout=120)
    assert by_env.returncode == EX_OK, by_env.stderr.decode()
    assert b"warning" not in by_env.stderr
    env.pop("RELEASE_SERVER_TOKEN")
    env["RELEASE_SERVER_TOKEN_FILE"] = str(token_file)
    by_env_file = subprocess.run([sys.executable, "-m", "release_server.cli", "mailgate"],
                                 input=MESSAGE.replace(b"gate-1@", b"gate-envfile@"), capture_output=True,
                                 env=env, timeout=120)
    assert by_env_file.returncode == EX_OK, by_env_file.stderr.decode()
    assert client.get("/api/v1/tickets?q=printer", headers=auth.headers("support")).json["total"] == 3


def test_a_token_on_the_command_line_still_works_but_warns(gate, tmp_path):
    server, token = gate
    done = run_gate(["--server", server.url, "--token", token], MESSAGE, tmp_path)
    assert done.returncode == EX_OK
    assert b"warning: --token on the command line" in done.stderr


def test_without_a_readable_token_the_mta_keeps_the_message(gate, tmp_path):
    server, _ = gate
    missing = run_gate(["--server", server.url, "--token-file", str(tmp_path / "absent")], MESSAGE, tmp_path)
    assert missing.returncode == EX_TEMPFAIL and b"cannot read the token file" in missing.stderr
    none = run_gate(["--server", server.url], MESSAGE, tmp_path)
    assert none.returncode == EX_TEMPFAIL and b"no token" in none.stderr
