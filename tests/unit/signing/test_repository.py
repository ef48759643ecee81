"""The repository's lifecycle: publish, yank, promote, refresh, rotation, serving, export, worker."""
from __future__ import annotations

import hashlib
import json
import logging
from datetime import timedelta
from pathlib import Path

import pytest
from factories import create_component, make_tarball, publish
from tuf.api.exceptions import RepositoryError
from tuf.api.metadata import Metadata
from tuf.ngclient import Updater


@pytest.fixture
def pub(auth):
    return auth.headers("publisher")


def versions(app) -> dict[str, int]:
    from sqlalchemy import select

    from release_server.db import db
    from release_server.signing.models import TufRole

    with app.app_context():
        return {r.name: r.version for r in db.session.scalars(select(TufRole))}


def stored(app, key: str) -> bytes:
    from release_server.storage import get_storage

    with app.app_context():
        return get_storage().read(key)


def bin_of(path: str) -> str:
    from release_server.signing import metadata as md

    return md.bin_for(path, 8)


def signed_target(app, path: str) -> dict:
    v = versions(app)[bin_of(path)]
    data = json.loads(stored(app, f"tuf/metadata/{v}.{bin_of(path)}.json"))
    return data["signed"]["targets"][path]


def test_publish_before_bootstrap_signs_nothing_then_bootstrap_includes_it(app, client, pub, tmp_path, caplog,
                                                                          bootstrap):
    create_component(client, pub, "server")
    with caplog.at_level(logging.WARNING):
        assert publish(client, pub, "server", "1.0", changelog="first").status_code == 201
    assert "not bootstrapped" in caplog.text
    assert client.get("/tuf/metadata/timestamp.json").status_code == 404
    bootstrap(app, tmp_path / "keys")
    entry = signed_target(app, "server/server-1.0.tar.gz")
    assert entry["custom"]["version"] == "1.0"


def test_published_release_is_a_verified_target_with_custom_fields(app, client, pub, tuf_client):
    create_component(client, pub, "server")
    create_component(client, pub, "db-schema")
    body = make_tarball({"app.py": "print(1)"})
    resp = publish(client, pub, "server", "2.4.0", artifact=body, channels=["beta"], critical=True,
                   min_from_version="2.0", requires={"db-schema": ">=5"}, changelog="* faster")
    assert resp.status_code == 201, resp.json
    updater = tuf_client()
    updater.refresh()
    info = updater.get_targetinfo("server/server-2.4.0.tar.gz")
    assert info is not None and info.length == len(body)
    assert info.hashes == {"sha256": hashlib.sha256(body).hexdigest()}
    cl = info.custom["changelog"]
    assert info.custom == {"component": "server", "version": "2.4.0", "channels": ["beta"], "critical": True,
                           "yanked": False, "min_from_version": "2.0", "requires": {"db-schema": ">=5"},
                           "changelog": cl}
    assert Path(updater.download_target(info)).read_bytes() == body
    cl_info = updater.get_targetinfo(cl["path"])
    assert cl["path"] == "server/changelogs/2.4.0.md" and cl_info.hashes["sha256"] == cl["sha256"]
    assert Path(updater.download_target(cl_info)).read_bytes() == b"* faster"


def test_yank_unyank_promote_resign_bin_snapshot_timestamp_once_each(app, client, pub, tuf_repo):
    create_component(client, pub, "web")
    publish(client, pub, "web", "1.0", channels=["beta"])
    path = "web/web-1.0.tar.gz"
    steps = [("yank", {"reason": "broken"}, "yanked", True), ("unyank", None, "yanked", False),
             ("promote", {"channel": "stable"}, "channels", ["beta", "stable"])]
    for action, body, field, expected in steps:
        before = versions(app)
        url = f"/api/v1/components/web/releases/1.0/{action}"
        resp = client.post(url, json=body, headers=pub) if body else client.post(url, headers=pub)
        assert resp.status_code == 200, resp.json
        after = versions(app)
        changed = {k for k in after if after[k] != before[k]}
        assert changed == {bin_of(path), "snapshot", "timestamp"}, action
        assert all(after[k] == before[k] + 1 for k in changed)
        assert signed_target(app, path)["custom"][field] == expected


def test_same_target_path_for_two_releases_is_refused(app, client, pub, tuf_repo):
    create_component(client, pub, "server")
    assert publish(client, pub, "server", "1.0", filename="server.tar.gz").status_code == 201
    before = versions(app)
    resp = publish(client, pub, "server", "1.1", filename="server.tar.gz", artifact=make_tarball({"other": "x"}))
    assert resp.status_code == 409 and resp.json["error"]["code"] == "duplicate_target_path"
    assert versions(app) == before
    assert client.get("/api/v1/components/server/releases/1.1", headers=pub).status_code == 404


def test_caching_headers_etags_and_missing_root(app, client, pub, tuf_repo):
    ts = client.get("/tuf/metadata/timestamp.json")
    assert ts.status_code == 200 and ts.headers["Cache-Control"] == "no-cache" and ts.headers["ETag"]
    again = client.get("/tuf/metadata/timestamp.json", headers={"If-None-Match": ts.headers["ETag"]})
    assert again.status_code == 304
    root = client.get("/tuf/metadata/1.root.json")
    assert root.data == tuf_repo.root_v1
    assert "immutable" in root.headers["Cache-Control"]
    assert client.get("/tuf/metadata/2.root.json").status_code == 404
    assert client.get("/tuf/metadata/../secret_key").status_code == 404
    assert client.get("/tuf/metadata/1.other.json").status_code == 404
    create_component(client, pub, "web")
    body = make_tarball({"artifact": "bytes"})
    publish(client, pub, "web", "1.0", artifact=body)
    sha = hashlib.sha256(body).hexdigest()
    got = client.get(f"/tuf/targets/web/{sha}.web-1.0.tar.gz")
    assert got.status_code == 200 and got.data == body and "immutable" in got.headers["Cache-Control"]
    assert got.headers["ETag"] == f'"{sha}"'
    for r in (ts, again, root, got):
        r.close()
    assert client.get(f"/tuf/targets/web/{'0' * 64}.web-1.0.tar.gz").status_code == 404
    assert client.get("/tuf/targets/web/web-1.0.tar.gz").status_code == 404


def test_refresh_resigns_only_what_is_due(app, tuf_repo, monkeypatch):
    from release_server.db import db
    from release_server.signing import services

    real_now = services.utcnow()
    with app.app_context():
        assert services.refresh(db.session) == []
        monkeypatch.setattr(services, "utcnow", lambda: real_now + timedelta(hours=20))
        assert services.refresh(db.session) == ["timestamp"]
        db.commit()
    v = versions(app)
    assert v["timestamp"] == 2 and v["snapshot"] == 1 and v["targets"] == 1 and v["bins-00"] == 1
    with app.app_context():
        monkeypatch.setattr(services, "utcnow", lambda: real_now + timedelta(days=80))
        roles = services.refresh(db.session)
        db.commit()
    assert "targets" in roles and "bins-ff" in roles and versions(app)["bins-ff"] == 2


def test_timestamp_near_expiry_is_resigned_when_served(app, client, tuf_repo, monkeypatch):
    """A server switched off for a week serves fresh metadata on the first request."""
    from release_server.signing import services

    week_later = services.utcnow() + timedelta(days=8)
    monkeypatch.setattr(services, "utcnow", lambda: week_later)
    resp = client.get("/tuf/metadata/timestamp.json")
    ts = Metadata.from_bytes(resp.data)
    resp.close()
    assert ts.signed.version == 2 and ts.signed.expires > week_later
    snap_v = ts.signed.snapshot_meta.version
    snap = Metadata.from_bytes(client.get(f"/tuf/metadata/{snap_v}.snapshot.json").data)
    assert snap_v == 2 and snap.signed.expires > week_later
    # a second request within the margin does not re-sign again
    again = client.get("/tuf/metadata/timestamp.json")
    assert Metadata.from_bytes(again.data).signed.version == 2
    again.close()


def test_client_from_root_v1_survives_two_root_rotations_and_online_rotation(app, client, pub, tuf_repo,
                                                                             tuf_client, tmp_path, fetcher_class):
    from release_server.db import db
    from release_server.signing import keys, services

    create_component(client, pub, "server")
    publish(client, pub, "server", "1.0")
    first = tuf_client()
    first.refresh()
    assert first.get_targetinfo("server/server-1.0.tar.gz") is not None

    signers = tuf_repo.root_signers()
    with app.app_context():
        new1 = [keys.generate_signer() for _ in range(3)]
        services.rotate_root(db.session, current_signers=signers[:2], new_signers=new1, threshold=2)
        db.commit()
        new2 = [keys.generate_signer() for _ in range(4)]
        services.rotate_root(db.session, current_signers=new1[1:], new_signers=new2, threshold=3)
        db.commit()
        online = {r: keys.generate_signer() for r in keys.ONLINE_ROLES}
        folder = keys.key_dir(app.config, app.instance_path)
        for role, s in online.items():
            keys.save_online_key(folder, role, s)
        assert services.rotate_online_keys(db.session, root_signers=new2[:3], new_signers=online) == [4, 5]
        db.commit()
        root = services.current_root(db.session)
    assert root.signed.version == 5
    assert root.signed.roles["timestamp"].keyids == [online["timestamp"].public_key.keyid]
    publish(client, pub, "server", "1.1")

    # a client that only ever trusted root v1 (fresh cache) and one with a cache from before
    fresh_dir = tmp_path / "fresh"
    fresh_dir.mkdir()
    fresh = Updater(str(fresh_dir), "http://repo/tuf/metadata/", str(tmp_path / "t"), "http://repo/tuf/targets/",
                    fetcher=fetcher_class(app.test_client()), bootstrap=tuf_repo.root_v1)
    for updater in (fresh, tuf_client()):
        updater.refresh()
        assert updater._trusted_set.root.version == 5
        assert updater.get_targetinfo("server/server-1.1.tar.gz") is not None
        assert updater.get_targetinfo("server/server-1.0.tar.gz") is not None


def test_root_rotation_needs_the_current_threshold(app, tuf_repo):
    from release_server.db import db
    from release_server.signing import keys, services
    from release_server.signing.errors import ThresholdNotMetError

    with app.app_context():
        with pytest.raises(ThresholdNotMetError):
            services.rotate_root(db.session, current_signers=tuf_repo.root_signers()[:1],
                                 new_signers=[keys.generate_signer() for _ in range(3)], threshold=2)
        db.rollback()
        assert services.root_version(db.session) == 1


def test_orphaned_versions_from_a_failed_commit_are_never_reused(app, client, pub, tuf_repo, tuf_client):
    from release_server.db import db
    from release_server.signing import services

    create_component(client, pub, "server")
    publish(client, pub, "server", "1.0")
    with app.app_context():
        services.refresh(db.session, force=True)  # writes files ...
        db.rollback()  # ... but the transaction is lost
    orphan = Metadata.from_bytes(stored(app, "tuf/metadata/timestamp.json")).signed.version
    assert orphan == versions(app)["timestamp"] + 1
    updater = tuf_client()
    updater.refresh()  # a client saw the orphaned state
    publish(client, pub, "server", "1.1")
    v = versions(app)
    assert v["timestamp"] == orphan + 1
    updater = tuf_client()
    updater.refresh()
    assert updater.get_targetinfo("server/server-1.1.tar.gz") is not None


def test_export_is_a_complete_static_tree(app, client, pub, tuf_repo, tmp_path, fetcher_class):
    from release_server.db import db
    from release_server.signing import services

    create_component(client, pub, "server")
    body = make_tarball({"the": "artifact"})
    publish(client, pub, "server", "1.0", artifact=body, changelog="notes")
    dest = tmp_path / "export"
    with app.app_context():
        first = services.export_tree(db.session, str(dest))
        second = services.export_tree(db.session, str(dest))
    assert first.written > 260 and second.written == 1  # only timestamp.json again
    sha = hashlib.sha256(body).hexdigest()
    target = dest / "targets" / "server" / f"{sha}.server-1.0.tar.gz"
    assert target.is_file() and not target.is_symlink() and target.read_bytes() == body

    class FolderFetcher(fetcher_class):
        def __init__(self) -> None:
            super().__init__(None)

        def _fetch(self, url):
            from tuf.api.exceptions import DownloadHTTPError

            p = dest / url.split("/tuf/", 1)[1]
            if not p.is_file():
                raise DownloadHTTPError(url, 404)
            return iter([p.read_bytes()])

    cache = tmp_path / "c"
    cache.mkdir()
    updater = Updater(str(cache), "http://cdn/tuf/metadata/", str(tmp_path / "t"), "http://cdn/tuf/targets/",
                      fetcher=FolderFetcher(), bootstrap=tuf_repo.root_v1)
    updater.refresh()
    info = updater.get_targetinfo("server/server-1.0.tar.gz")
    assert Path(updater.download_target(info)).read_bytes() == body

    if app.config["STORAGE_BACKEND"] == "s3":  # the same tree into a bucket for a CDN
        from release_server.storage.s3 import S3Storage

        with app.app_context():
            services.export_tree(db.session, f"s3://{app.config['S3_BUCKET']}/mirror")
        bucket = S3Storage(bucket=app.config["S3_BUCKET"], endpoint_url=app.config["S3_ENDPOINT_URL"],
                           access_key_id="test", secret_access_key="test", prefix="mirror")
        assert bucket.read(f"targets/server/{sha}.server-1.0.tar.gz") == body
        assert bucket.read("metadata/timestamp.json") == stored(app, "tuf/metadata/timestamp.json")


def test_tampered_bin_is_refused(app, client, pub, tuf_repo, tuf_client):
    create_component(client, pub, "server")
    publish(client, pub, "server", "1.0")
    path = "server/server-1.0.tar.gz"
    key = f"tuf/metadata/{versions(app)[bin_of(path)]}.{bin_of(path)}.json"
    data = json.loads(stored(app, key))
    data["signed"]["targets"][path]["length"] += 1000
    from release_server.storage import get_storage

    with app.app_context():
        get_storage().write(key, json.dumps(data).encode())
    updater = tuf_client()
    updater.refresh()
    with pytest.raises(RepositoryError):
        updater.get_targetinfo(path)


def test_cli_ceremony_with_passphrase_bootstrap_and_rotation(app, runner, tmp_path, monkeypatch):
    monkeypatch.setenv("ROOT_PASS", "correct horse")
    out = tmp_path / "ceremony"
    res = runner.invoke(args=["keys", "init-root", "--out", str(out), "--passphrase-env", "ROOT_PASS"])
    assert res.exit_code == 0, res.output
    assert str(out.resolve()) in res.output
    key_files = sorted(out.glob("root-key-*.pem"))
    assert len(key_files) == 3 and all(b"ENCRYPTED" in f.read_bytes() for f in key_files)
    assert all(f.stat().st_mode & 0o777 == 0o600 for f in key_files)
    folder = Path(app.instance_path) / "keys"
    assert sorted(p.name.split("-")[0] for p in folder.glob("*.pem")) == ["snapshot", "targets", "timestamp"]
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in folder.glob("*.pem"))
    assert runner.invoke(args=["tuf", "status"]).exit_code == 1
    res = runner.invoke(args=["tuf", "bootstrap", str(out / "1.root.json")])
    assert res.exit_code == 0, res.output
    assert runner.invoke(args=["tuf", "bootstrap", str(out / "1.root.json")]).exit_code == 1
    assert runner.invoke(args=["tuf", "bootstrap", "--if-needed", str(out / "1.root.json")]).exit_code == 0

    res = runner.invoke(args=["keys", "rotate-root", "--root-key", str(key_files[0]), "--passphrase-env",
                              "ROOT_PASS", "--out", str(tmp_path / "new"), "--no-passphrase"])
    assert res.exit_code == 1 and "threshold is 2" in res.output
    res = runner.invoke(args=["keys", "rotate-root", "--root-key", str(key_files[0]), "--root-key",
                              str(key_files[2]), "--passphrase-env", "ROOT_PASS", "--out", str(tmp_path / "new"),
                              "--no-passphrase"])
    assert res.exit_code == 0, res.output
    new_keys = sorted((tmp_path / "new").glob("root-key-*.pem"))
    args = ["keys", "rotate-online", "--role", "timestamp", "--role", "targets"]
    for k in new_keys[:2]:
        args += ["--root-key", str(k)]
    res = runner.invoke(args=args)
    assert res.exit_code == 0, res.output
    assert "root v3" in res.output and "root v4" in res.output
    res = runner.invoke(args=["tuf", "refresh", "--force"])
    assert res.exit_code == 0 and "timestamp" in res.output
    status = runner.invoke(args=["tuf", "status"]).output
    assert "root" in status and "v4" in status
    assert json.loads(runner.invoke(args=["tuf", "root"]).output)["signed"]["version"] == 4


def test_worker_once_runs_refresh_and_the_lease_keeps_a_second_worker_out(app, tuf_repo, monkeypatch):
    from release_server import worker
    from release_server.signing import services

    ran = []
    with app.app_context():
        worker.register_job(app, "probe", 1, lambda: ran.append(1))
        assert worker.acquire_lease("other-node", 60)
        assert worker.run_once("me") == (False, 0)
        worker.release_lease("other-node")
        later = services.utcnow() + timedelta(hours=23)
        monkeypatch.setattr(services, "utcnow", lambda: later)
        assert worker.run_once("me") == (True, 0)
    assert ran == [1] and versions(app)["timestamp"] == 2

    def boom():
        raise RuntimeError("job failed")

    with app.app_context():
        worker.register_job(app, "probe", 1, boom)
        assert worker.run_once("me") == (True, 1)
        stops = iter([False, False, True])
        worker.run_forever("me", tick_seconds=0.1, should_stop=lambda: next(stops, True))
        assert worker.acquire_lease("other-node", 60)  # released on exit


def test_worker_command_once(app, runner, tuf_repo):
    res = runner.invoke(args=["worker", "--once"])
    assert res.exit_code == 0, res.output
    assert "job(s), 0 failed" in res.output
