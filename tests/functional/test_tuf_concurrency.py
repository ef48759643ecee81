"""Two server processes publishing at once: every release signed, every version chain whole."""
from __future__ import annotations

import json
import re
import threading
from collections import defaultdict

import requests
from conftest import LiveServer
from factories import create_component, make_tarball
from tuf.api.metadata import Metadata
from tuf.ngclient import Updater

PER_SERVER = 20


def test_two_servers_publish_concurrently_without_gaps(app, app_config, client, auth, tmp_path):
    from release_server.db import db
    from release_server.signing import ceremony, services
    from release_server.storage import get_storage

    with app.app_context():
        root_v1 = ceremony.local_trial(db.session, tmp_path / "root-keys").root_file.read_bytes()
        db.commit()
    pub = auth.headers("publisher")
    create_component(client, pub, "server")
    servers = [LiveServer(app_config, tmp_path / f"server{i}.log").start() for i in range(2)]
    errors: list[str] = []
    start = threading.Barrier(2)

    def publisher(i: int, server: LiveServer) -> None:
        start.wait()
        with requests.Session() as http:
            for n in range(PER_SERVER):
                version = f"{i + 1}.{n}"
                meta = {"version": version, "channels": ["beta"], "changelog": f"release {version}"}
                files = {"metadata": (None, json.dumps(meta)),
                         "artifact": (f"server-{version}.tar.gz", make_tarball({"v": version}))}
                resp = http.post(f"{server.url}/api/v1/components/server/releases", files=files, headers=pub,
                                 timeout=120)
                if resp.status_code != 201:
                    errors.append(f"{version}: {resp.status_code} {resp.text[:300]}")
                resp.close()

    try:
        threads = [threading.Thread(target=publisher, args=(i, s)) for i, s in enumerate(servers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(600)
        assert not errors, errors

        cache = tmp_path / "cache"
        cache.mkdir()
        updater = Updater(str(cache), f"{servers[1].url}/tuf/metadata/", str(tmp_path / "dl"),
                          f"{servers[1].url}/tuf/targets/", bootstrap=root_v1)
        updater.refresh()
        for i in range(2):
            for n in range(PER_SERVER):
                info = updater.get_targetinfo(f"server/server-{i + 1}.{n}.tar.gz")
                assert info is not None and info.custom["version"] == f"{i + 1}.{n}"
                assert updater.get_targetinfo(info.custom["changelog"]["path"]) is not None
    finally:
        for s in servers:
            s.stop()

    with app.app_context():
        storage = get_storage()
        names = [k.rsplit("/", 1)[1] for k in storage.list("tuf/metadata/")]
        by_role: dict[str, list[int]] = defaultdict(list)
        for name in names:
            m = re.fullmatch(r"(\d+)\.(.+)\.json", name)
            if m:
                by_role[m.group(2)].append(int(m.group(1)))
        changes = 2 * PER_SERVER
        assert sorted(by_role["snapshot"]) == list(range(1, changes + 2))
        for role, versions in by_role.items():
            assert sorted(versions) == list(range(1, max(versions) + 1)), role
        status = {s.name: s.version for s in services.status(db.session)}
        assert status["timestamp"] == status["snapshot"] == changes + 1
        ts = Metadata.from_bytes(storage.read("tuf/metadata/timestamp.json"))
        assert ts.signed.version == changes + 1 and ts.signed.snapshot_meta.version == changes + 1
        previous: dict[str, int] = {}
        for v in range(1, changes + 2):
            snap = Metadata.from_bytes(storage.read(f"tuf/metadata/{v}.snapshot.json"))
            assert snap.signed.version == v
            bumped = 0
            for fname, meta in snap.signed.meta.items():
                assert meta.version >= previous.get(fname, 0)
                bumped += meta.version - previous.get(fname, 0)
                previous[fname] = meta.version
                bin_md = Metadata.from_bytes(storage.read(f"tuf/metadata/{meta.version}.{fname}"))
                assert bin_md.signed.version == meta.version
            if v > 1:
                assert 1 <= bumped <= 2  # one release: the bins of its artifact and changelog
