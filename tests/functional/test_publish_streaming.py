"""Publishing through a real server: the metadata part is judged before the artifact is read."""
from __future__ import annotations

import hashlib
import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest
import requests
from factories import create_component, random_tarball

BOUNDARY = "pubtestboundary0123456789"
DECLARED = 200 * 1024 * 1024  # what the request says is coming; never sent


def _start_publish(port: int, token: str, component: str, metadata: dict[str, Any], *,
                   content_length: int = DECLARED) -> socket.socket:
    """Send the request head, the metadata part and the start of the artifact part, then stall."""
    meta = json.dumps(metadata)
    body_start = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"metadata\"\r\n"
                  f"Content-Type: application/json\r\n\r\n{meta}\r\n"
                  f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"artifact\"; filename=\"{component}-x.tar.gz\"\r\n"
                  f"Content-Type: application/octet-stream\r\n\r\n").encode() + b"\x1f\x8b" + b"\0" * 1000
    head = (f"POST /api/v1/components/{component}/releases HTTP/1.1\r\nHost: t\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
            f"Content-Length: {content_length}\r\n\r\n").encode()
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(head + body_start)
    return s


def _answer(s: socket.socket) -> tuple[int, dict[str, Any]]:
    """The response that arrives while the client still owes the server most of the body."""
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            assert chunk, "the server closed without answering"
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(next(line.split(b":", 1)[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:")))
        while len(body) < length:
            chunk = s.recv(65536)
            assert chunk
            body += chunk
    finally:
        s.close()
    return int(head.split(b" ", 2)[1]), json.loads(body)


@pytest.fixture
def served(app: Any, client: Any, auth: Any, tmp_path: Path, live_server: Any) -> dict[str, Any]:
    from release_server.db import db
    from release_server.signing import ceremony

    with app.app_context():
        ceremony.local_trial(db.session, tmp_path / "root-keys")
        db.commit()
    staff = auth.headers("admin")
    assert create_component(client, staff, "server").status_code == 201
    token = auth.token("admin")
    artifact = tmp_path / "server-1.0.tar.gz"
    artifact.write_bytes(random_tarball(3 * 1024 * 1024))
    with artifact.open("rb") as fh:
        r = requests.post(f"{live_server.url}/api/v1/components/server/releases",
                          headers={"Authorization": f"Bearer {token}"}, timeout=60,
                          files={"metadata": (None, json.dumps({"version": "1.0"})),
                                 "artifact": ("server-1.0.tar.gz", fh, "application/octet-stream")})
    assert r.status_code == 201, r.text
    assert r.json()["artifact"]["sha256"] == hashlib.sha256(artifact.read_bytes()).hexdigest()
    return {"port": live_server.port, "token": token, "url": live_server.url}


@pytest.mark.parametrize("component,metadata,status,code,field", [
    ("server", {"version": "1.0"}, 409, "duplicate_release", "version"),
    ("server", {"version": "1.1", "filename": "server-1.0.tar.gz"}, 409, "duplicate_target_path", "artifact"),
    ("nope", {"version": "1.0"}, 404, None, "component"),
    ("server", {"version": "1.2", "channels": ["nightly"]}, 404, None, "channels"),
    ("server", {"version": "not a version"}, 400, None, "version"),
    ("server", {"version": "1.3", "surprise": 1}, 400, None, "surprise"),
    ("server", {"version": "1.4", "size": 10 * 1024 ** 4}, 413, "too_large", "size"),
])
def test_refused_before_the_artifact_is_sent(app: Any, served: dict[str, Any], component: str,
                                             metadata: dict[str, Any], status: int, code: str | None,
                                             field: str) -> None:
    s = _start_publish(served["port"], served["token"], component, metadata)
    s.settimeout(10)  # far less than sending 200 MB; and the client sends nothing more
    got, body = _answer(s)
    assert got == status, body
    assert body["error"]["field"].startswith(field), body
    if code:
        assert body["error"]["code"] == code
    # nothing was stored, and the server still serves the next client
    r = requests.get(f"{served['url']}/api/v1/components/server/releases",
                     headers={"Authorization": f"Bearer {served['token']}"}, timeout=10)
    assert [x["version"] for x in r.json()["items"]] == ["1.0"]
    assert list(Path(app.config["UPLOAD_TMP_DIR"]).glob("upload-*")) == []


def test_declared_length_over_the_limit_is_refused_at_once(served: dict[str, Any]) -> None:
    s = _start_publish(served["port"], served["token"], "server", {"version": "2.0"},
                       content_length=3 * 1024 ** 4)
    s.settimeout(10)
    got, body = _answer(s)
    assert got == 413 and body["error"]["code"] == "too_large"


def test_cli_publish_streams_and_stops_on_refusal(served: dict[str, Any], tmp_path: Path) -> None:
    """The CLI sends metadata first and stops sending when the server refuses (duplicate version)."""
    import subprocess
    import sys

    big = tmp_path / "server-1.0-again.tar.gz"
    with big.open("wb") as fh:
        fh.truncate(1024 ** 3)  # 1 GiB, sparse: sending it whole would take far longer than the timeout
    env = dict(os.environ, RELEASE_SERVER_URL=served["url"], RELEASE_SERVER_TOKEN=served["token"])
    r = subprocess.run([sys.executable, "-m", "release_server.cli", "publish", "--component", "server",
                        "--version", "1.0", "--quiet", str(big)], capture_output=True, text=True, env=env,
                       timeout=20)
    assert r.returncode == 1 and "409 duplicate_release [version]" in r.stderr, r.stderr
    # and a good one goes through, declared size and all
    good = tmp_path / "server-1.5.tar.gz"
    good.write_bytes(random_tarball(2 * 1024 * 1024 + 7))
    r = subprocess.run([sys.executable, "-m", "release_server.cli", "publish", "--component", "server",
                        "--version", "1.5", "--quiet", str(good)], capture_output=True, text=True, env=env,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert hashlib.sha256(good.read_bytes()).hexdigest() in r.stdout


@pytest.mark.parametrize("off_by", [-1, 1, -4096])
def test_an_artifact_of_another_size_than_declared_is_refused_and_nothing_stored(app: Any, served: dict[str, Any],
                                                                                  off_by: int) -> None:
    body = random_tarball(1024 * 1024 + 13)
    r = requests.post(f"{served['url']}/api/v1/components/server/releases",
                      headers={"Authorization": f"Bearer {served['token']}"}, timeout=60,
                      files={"metadata": (None, json.dumps({"version": "3.0", "size": len(body) + off_by})),
                             "artifact": ("server-3.0.tar.gz", body, "application/octet-stream")})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["field"] == "size"
    assert f"after the {len(body) + off_by} bytes the metadata declares" in r.json()["error"]["message"]
    r = requests.get(f"{served['url']}/api/v1/components/server/releases",
                     headers={"Authorization": f"Bearer {served['token']}"}, timeout=10)
    assert "3.0" not in [x["version"] for x in r.json()["items"]]
    assert list(Path(app.config["UPLOAD_TMP_DIR"]).glob("upload-*")) == []
    # the same body with its true size goes through
    r = requests.post(f"{served['url']}/api/v1/components/server/releases",
                      headers={"Authorization": f"Bearer {served['token']}"}, timeout=60,
                      files={"metadata": (None, json.dumps({"version": "3.0", "size": len(body)})),
                             "artifact": ("server-3.0.tar.gz", body, "application/octet-stream")})
    assert r.status_code == 201, r.text
    assert r.json()["artifact"]["sha256"] == hashlib.sha256(body).hexdigest()
