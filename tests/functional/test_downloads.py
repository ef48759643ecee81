"""Downloads: slow clients never hold the request path; ranges; the proxy hand-off (X-Accel-Redirect)."""
from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from factories import create_component, enroll, random_tarball

#: a valid artifact (the server refuses what the agent cannot install) of about 6 MiB
BODY = random_tarball(6 * 1024 * 1024)
SIZE = len(BODY)


@pytest.fixture
def staff(auth: Any) -> dict[str, str]:
    return auth.headers("admin")


@pytest.fixture
def release(client: Any, staff: dict[str, str]) -> dict[str, Any]:
    assert create_component(client, staff, "server").status_code == 201
    body = BODY
    resp = publish_bytes(client, staff, "server", "1.0", body)
    assert resp.status_code == 201, resp.json
    return {"body": body, "url": resp.json["download_url"], "sha256": resp.json["artifact"]["sha256"]}


def publish_bytes(client: Any, headers: dict[str, str], component: str, version: str, body: bytes) -> Any:
    """Publish through the test client with the multipart body built in memory (no spooled temp file)."""
    boundary = "testboundary7MA4YWxkTrZu0gW"
    meta = json.dumps({"version": version, "channels": ["stable"]})
    data = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"metadata\"\r\n\r\n{meta}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"artifact\"; filename=\"{component}-{version}.tar.gz\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + body + f"\r\n--{boundary}--\r\n".encode()
    return client.post(f"/api/v1/components/{component}/releases", data=data, headers=headers,
                       content_type=f"multipart/form-data; boundary={boundary}")


def _stalled_download(port: int, path: str, token: str) -> socket.socket:
    """Start a GET with a tiny receive window and read almost nothing: the server's send blocks."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
    s.settimeout(10)
    assert s.recv(64).startswith(b"HTTP/1.1 200")
    return s


def _read_rest(s: socket.socket) -> bytes:
    s.settimeout(60)
    data = bytearray()
    while b"\r\n\r\n" not in data:
        data += s.recv(65536)
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    length = int(next(line.split(b":", 1)[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")))
    out = bytearray(body)
    while len(out) < length:
        chunk = s.recv(1 << 20)
        if not chunk:
            break
        out += chunk
    s.close()
    return bytes(out)


def test_slow_downloads_do_not_stall_checks(app: Any, client: Any, staff: dict[str, str], auth: Any,
                                            release: dict[str, Any], live_server: Any) -> None:
    """More stalled downloaders than worker processes, and a check and a page still answer at once."""
    token = auth.token("admin")
    inst = enroll(client, staff_headers=staff, customer=_customer(client, staff), installed={"server": "0.9"})
    readers = [_stalled_download(live_server.port, release["url"], token) for _ in range(6)]
    try:
        time.sleep(0.5)  # every reader's connection is now blocked inside the server's send
        t0 = time.monotonic()
        check = requests.post(live_server.url + "/api/v1/updates/check", json={"installed": {"server": "0.9"}},
                              headers={"Authorization": f"Bearer {inst['token']}"}, timeout=5)
        page = requests.get(live_server.url + "/api/v1/components/server/releases",
                            headers={"Authorization": f"Bearer {token}"}, timeout=5)
        elapsed = time.monotonic() - t0
        assert check.status_code == 200 and [o["version"] for o in check.json()["offers"]] == ["1.0"]
        assert page.status_code == 200 and elapsed < 5
        tuf = requests.get(live_server.url + "/tuf/metadata/timestamp.json", timeout=5)
        assert tuf.status_code in (200, 404)
    finally:
        bodies = [_read_rest(s) for s in readers]
    # and every stalled download completes, intact, once its client reads again
    for b in bodies:
        assert len(b) == SIZE and hashlib.sha256(b).hexdigest() == release["sha256"]


def _customer(client: Any, staff: dict[str, str]) -> str:
    resp = client.post("/api/v1/customers", json={"name": "Acme"}, headers=staff)
    assert resp.status_code == 201, resp.json
    return "Acme"


RANGES = [("bytes=0-0", 0, 1), ("bytes=1000-2999", 1000, 3000), ("bytes=5000000-", 5000000, SIZE),
          ("bytes=-100", SIZE - 100, SIZE), ("bytes=6000000-99999999", 6000000, SIZE)]


def test_ranged_downloads_through_gunicorn(app: Any, auth: Any, release: dict[str, Any], live_server: Any) -> None:
    """Resumed downloads through the real server: exact bytes, 206 and Content-Range; 416 past the end."""
    h = {"Authorization": f"Bearer {auth.token('admin')}"}
    body = release["body"]
    for header, start, stop in RANGES:
        r = requests.get(live_server.url + release["url"], headers={**h, "Range": header}, timeout=30)
        assert r.status_code == 206, (header, r.status_code)
        assert r.content == body[start:stop], header
        assert r.headers["Content-Range"] == f"bytes {start}-{stop - 1}/{SIZE}"
        assert int(r.headers["Content-Length"]) == stop - start
    bad = requests.get(live_server.url + release["url"], headers={**h, "Range": f"bytes={SIZE}-"}, timeout=30)
    assert bad.status_code == 416
    # If-Range with another version's ETag: the whole file
    whole = requests.get(live_server.url + release["url"], headers={**h, "Range": "bytes=10-", "If-Range": '"old"'},
                         timeout=30)
    assert whole.status_code == 200 and whole.content == body
    same = requests.get(live_server.url + release["url"],
                        headers={**h, "Range": "bytes=10-", "If-Range": f'"{release["sha256"]}"'}, timeout=30)
    assert same.status_code == 206 and same.content == body[10:]
    # the connection stays usable after a ranged answer (keep-alive framing is right)
    with requests.Session() as s:
        for header, start, stop in RANGES[:3]:
            r = s.get(live_server.url + release["url"], headers={**h, "Range": header}, timeout=30)
            assert r.content == body[start:stop]


def test_ranged_downloads_in_process(client: Any, staff: dict[str, str], release: dict[str, Any]) -> None:
    """Without a server file wrapper (the test client) the same ranges are cut exactly."""
    body = release["body"]
    for header, start, stop in RANGES:
        r = client.get(release["url"], headers={**staff, "Range": header})
        assert r.status_code == 206 and r.data == body[start:stop], header
        r.close()
    cached = client.get(release["url"], headers={**staff, "If-None-Match": f'"{release["sha256"]}"'})
    assert cached.status_code == 304
    cached.close()


def test_accel_redirect_mode(app: Any, client: Any, staff: dict[str, str], release: dict[str, Any]) -> None:
    """With DOWNLOAD_ACCEL_REDIRECT the app answers with headers only and the proxy sends the file."""
    from release_server.storage import get_storage

    app.config["DOWNLOAD_ACCEL_REDIRECT"] = "/_blobs/"
    r = client.get(release["url"], headers=staff)
    with app.app_context():
        local = get_storage().local_path(f"sha256/{release['sha256'][:2]}/{release['sha256'][2:4]}/{release['sha256']}")
    if local is None:  # object storage: no file for a proxy to send; streamed (or presigned) as before
        assert "X-Accel-Redirect" not in r.headers and r.data == release["body"]
        r.close()
        return
    assert r.status_code == 200 and r.data == b""
    sha = release["sha256"]
    assert r.headers["X-Accel-Redirect"] == f"/_blobs/sha256/{sha[:2]}/{sha[2:4]}/{sha}"
    assert r.headers["Content-Disposition"] == 'attachment; filename="server-1.0.tar.gz"'
    assert r.headers["Content-Type"] == "application/octet-stream"
    assert r.headers["ETag"] == f'"{sha}"'
    cached = client.get(release["url"], headers={**staff, "If-None-Match": f'"{sha}"'})
    assert cached.status_code == 304 and "X-Accel-Redirect" not in cached.headers
    # TUF target files are handed off the same way
    with app.app_context():
        from release_server.db import db
        from release_server.signing import ceremony

        ceremony.local_trial(db.session, Path(app.instance_path) / "rk")
        db.commit()
    tgt = client.get(f"/tuf/targets/server/{sha}.server-1.0.tar.gz")
    assert tgt.status_code == 200 and tgt.headers["X-Accel-Redirect"].endswith(sha)
    assert tgt.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    # without a proxy configured the file itself is sent
    app.config["DOWNLOAD_ACCEL_REDIRECT"] = None
    plain = client.get(release["url"], headers=staff)
    assert plain.data == release["body"] and "X-Accel-Redirect" not in plain.headers
    plain.close()
