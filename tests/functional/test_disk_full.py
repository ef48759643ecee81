"""A full disk: uploads get 507 with a JSON error, the connection is answered, nothing is left behind.

The upload folder (and, for local storage, the blob folder) lives on a 2 MiB tmpfs
mounted for the test; without the right to mount, the tests are skipped.
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import build_config
from factories import create_component, make_tarball, publish

SIZE = 2 * 1024 * 1024


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small"
    mount.mkdir()
    try:
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE},mode=0700", "tmpfs", str(mount)],
                              capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        pytest.skip(f"cannot mount a size-limited tmpfs for the disk-full tests: {e}")
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a size-limited tmpfs for the disk-full tests (needs root): {proc.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, timeout=20)


@pytest.fixture
def app_config(request: pytest.FixtureRequest, backend: str, tmp_path: Path, small_fs: Path) -> dict[str, Any]:
    config = build_config(request, backend, tmp_path)
    config["UPLOAD_TMP_DIR"] = str(small_fs / "incoming")
    if backend == "sqlite-local":
        config["STORAGE_PATH"] = str(small_fs / "blobs")
    return config


@pytest.fixture
def pub(auth):
    return auth.headers("publisher")


def files_on(mount: Path, *, but: set[Path] = frozenset()) -> list[Path]:
    return sorted(p for p in mount.rglob("*") if p.is_file() and p not in but)


def fill(mount: Path) -> Path:
    """Take every free byte of the file system."""
    filler = mount / "filler"
    with open(filler, "wb", buffering=0) as fh:
        for block in (65536, 4096, 1):
            try:
                while fh.write(b"\0" * block):
                    pass
            except OSError:
                pass
    assert os.statvfs(mount).f_bavail == 0
    return filler


def publish_bytes(client, pub, version: str, artifact: bytes):
    """POST a publish with a body built in memory (the test client spools large bodies to an unclosed file)."""
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"metadata\"\r\n\r\n"
            f"{json.dumps({'version': version})}\r\n--{boundary}\r\nContent-Disposition: form-data; "
            f"name=\"artifact\"; filename=\"server-{version}.tar.gz\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + artifact + f"\r\n--{boundary}--\r\n".encode()
    return client.post("/api/v1/components/server/releases", data=body, headers=pub,
                       content_type=f"multipart/form-data; boundary={boundary}")


def releases(client, pub) -> list[str]:
    return [r["version"] for r in client.get("/api/v1/components/server/releases", headers=pub).json["items"]]


def assert_507(resp_status: int, body: dict) -> None:
    assert resp_status == 507, body
    assert body["error"]["code"] == "insufficient_storage"
    assert "storage space" in body["error"]["message"]


def test_artifact_larger_than_the_free_space_is_507_and_leaves_nothing(app, client, pub, small_fs):
    assert create_component(client, pub, "server").status_code == 201
    big = make_tarball({"blob.bin": os.urandom(3 * 1024 * 1024)})
    resp = publish_bytes(client, pub, "1.0.0", big)
    assert_507(resp.status_code, resp.json)
    assert files_on(small_fs) == []
    assert releases(client, pub) == []
    # once there is room again, the same request goes through
    assert publish(client, pub, "server", "1.0.0").status_code == 201


def test_at_zero_bytes_free_publish_is_507_and_leaves_nothing(app, client, pub, small_fs):
    assert create_component(client, pub, "server").status_code == 201
    (small_fs / "incoming").mkdir(exist_ok=True)
    if app.config["STORAGE_BACKEND"] == "local":
        for sub in ("blobs/.tmp", "blobs/sha256"):
            (small_fs / sub).mkdir(parents=True, exist_ok=True)
    filler = fill(small_fs)
    resp = publish_bytes(client, pub, "1.0.0", make_tarball({"a": os.urandom(20_000)}))
    assert_507(resp.status_code, resp.json)
    assert files_on(small_fs, but={filler}) == []
    assert releases(client, pub) == []


def test_a_real_server_answers_507_instead_of_dropping_the_connection(app, client, pub, small_fs, live_server):
    assert create_component(client, pub, "server").status_code == 201
    big = make_tarball({"blob.bin": os.urandom(3 * 1024 * 1024)})
    filler = fill(small_fs)
    for artifact in (big, make_tarball({"a": b"small"})):
        resp = requests.post(f"{live_server.url}/api/v1/components/server/releases", headers=pub, timeout=60,
                             files={"metadata": (None, json.dumps({"version": "1.0.0"}), "application/json"),
                                    "artifact": (f"server-{uuid.uuid4().hex[:6]}.tar.gz", io.BytesIO(artifact))})
        assert_507(resp.status_code, resp.json())
        assert files_on(small_fs, but={filler}) == []
    filler.unlink()
    assert releases(client, pub) == []
