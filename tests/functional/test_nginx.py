"""The documented production layout: nginx with the shipped configuration in front of the app.

The TUF repository is exported to a folder that nginx serves statically, and a stock
``tuf.ngclient.Updater`` refreshes and downloads through it; downloads the app hands off
with ``X-Accel-Redirect`` are sent by nginx (ranges included). Needs Debian's nginx:
skipped without it, unless REQUIRE_NGINX=1 (CI), which makes its absence a failure.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import LiveServer, free_port
from factories import create_component, publish, random_tarball
from tuf.ngclient import Updater

from release_server.nginx_conf import write_main_config

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "deploy" / "nginx" / "release-server.conf"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)


@pytest.fixture
def nginx_bin() -> str:
    if NGINX is None:
        if os.environ.get("REQUIRE_NGINX") == "1":
            pytest.fail("nginx is required (REQUIRE_NGINX=1) but not installed")
        pytest.skip("nginx is not installed (apt-get install nginx); set REQUIRE_NGINX=1 to make this a failure")
    return NGINX


class Nginx:
    def __init__(self, binary: str, work: Path, root: Path, upstream_port: int, blobs: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.work = work
        conf = write_main_config(work, f"""upstream release_servers {{ server 127.0.0.1:{upstream_port}; }}
server {{
    listen 127.0.0.1:{self.port};
    root {root};
    set $release_server_blobs {blobs};
    include {SHIPPED};
}}""", connections=256)
        self.proc = subprocess.Popen([binary, "-c", str(conf), "-p", str(work), "-e", str(work / "error.log")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode()
                self.proc.stderr.close()
                raise RuntimeError(f"nginx exited: {err}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("nginx did not start")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.proc.stderr.close()


def test_static_export_behind_nginx_serves_a_stock_tuf_client(app: Any, client: Any, auth: Any, app_config: dict,
                                                               tmp_path: Path, nginx_bin: str) -> None:
    from release_server.db import db
    from release_server.signing import ceremony, services
    from release_server.storage import get_storage

    with app.app_context():
        root_v1 = ceremony.local_trial(db.session, tmp_path / "root-keys").root_file.read_bytes()
        db.commit()
    staff = auth.headers("admin")
    assert create_component(client, staff, "server").status_code == 201
    body = random_tarball(300 * 1024)
    assert publish(client, staff, "server", "1.0", artifact=body, changelog="first").status_code == 201
    srv = tmp_path / "srv"
    with app.app_context():
        services.export_tree(db.session, str(srv / "tuf"))
        blobs = getattr(get_storage(), "root", None)
    local = blobs is not None
    config = dict(app_config, DOWNLOAD_ACCEL_REDIRECT="/_blobs/")
    server = LiveServer(config, tmp_path / "server.log").start()
    proxy = None
    try:
        proxy = Nginx(nginx_bin, tmp_path / "nginx", srv, server.port, str(blobs or tmp_path / "no-blobs"))
        # a stock TUF client through the static files
        cache = tmp_path / "tuf-cache"
        cache.mkdir()
        updater = Updater(str(cache), f"{proxy.url}/tuf/metadata/", str(tmp_path / "dl"),
                          f"{proxy.url}/tuf/targets/", bootstrap=root_v1)
        updater.refresh()
        info = updater.get_targetinfo("server/server-1.0.tar.gz")
        assert info is not None and info.custom["version"] == "1.0"
        (tmp_path / "dl").mkdir()
        got = updater.download_target(info)
        assert Path(got).read_bytes() == body
        ts = requests.get(f"{proxy.url}/tuf/metadata/timestamp.json", timeout=10)
        assert ts.headers["Cache-Control"] == "no-cache" and ts.headers.get("ETag")
        assert requests.get(f"{proxy.url}/tuf/metadata/99.root.json", timeout=10).status_code == 404
        assert requests.get(f"{proxy.url}/_blobs/sha256/00/00/{'0' * 64}", timeout=10).status_code == 404
        # the API goes through to the app; downloads come back from nginx itself
        h = {"Authorization": f"Bearer {auth.token('admin')}"}
        url = "/api/v1/components/server/releases/1.0/artifact"
        assert requests.get(proxy.url + "/api/v1/components", headers=h, timeout=10).status_code == 200
        direct = requests.get(server.url + url, headers=h, timeout=10)
        full = requests.get(proxy.url + url, headers=h, timeout=30)
        assert full.status_code == 200 and full.content == body
        assert hashlib.sha256(full.content).hexdigest() == hashlib.sha256(body).hexdigest()
        assert "server-1.0.tar.gz" in full.headers["Content-Disposition"]
        if local:
            assert direct.content == b"" and direct.headers["X-Accel-Redirect"].startswith("/_blobs/sha256/")
            assert "X-Accel-Redirect" not in full.headers
            part = requests.get(proxy.url + url, headers={**h, "Range": "bytes=100-199"}, timeout=30)
            assert part.status_code == 206 and part.content == body[100:200]
        else:  # object storage: nothing for nginx to send; the app streams it
            assert direct.content == body
        assert requests.get(proxy.url + url, timeout=10).status_code == 401  # the app still decides who
    finally:
        if proxy is not None:
            proxy.stop()
        server.stop()
