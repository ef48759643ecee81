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
