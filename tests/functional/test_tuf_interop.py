"""A stock python-tuf client against a running server: it verifies what is published
(through the API and the CLI) and refuses what a hostile mirror or download path serves."""
from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from factories import create_component, make_tarball, publish
from tuf.api.exceptions import (BadVersionNumberError, DownloadError, ExpiredMetadataError,
                                LengthOrHashMismatchError, UnsignedMetadataError)
from tuf.api.metadata import Metadata, Timestamp
from tuf.ngclient import Updater


@pytest.fixture
def root_v1(app, tmp_path) -> bytes:
    from release_server.db import db
    from release_server.signing import ceremony

    with app.app_context():
        result = ceremony.local_trial(db.session, tmp_path / "root-keys")
        db.commit()
    return result.root_file.read_bytes()


@pytest.fixture
def new_updater(live_server, root_v1, tmp_path):
    cache = tmp_path / "tuf-cache"
    cache.mkdir()

    def make() -> Updater:
        return Updater(str(cache), f"{live_server.url}/tuf/metadata/", str(tmp_path / "downloads"),
                       f"{live_server.url}/tuf/targets/", bootstrap=root_v1)

    return make


@pytest.fixture
def published(app, client, auth, root_v1):
    pub = auth.headers("publisher")
    create_component(client, pub, "server")
    body = make_tarball({"server.py": "print('v1')"})
    assert publish(client, pub, "server", "1.0", artifact=body, changelog="first").status_code == 201
    from release_server.db import db
    from release_server.releases import services

    with app.app_context():
        blob_key = services.get_release(db.session, "server", "1.0").blob_key
    return {"path": "server/server-1.0.tar.gz", "body": body, "blob_key": blob_key, "pub": pub}


def storage_write(app, key: str, data: bytes) -> None:
    from release_server.storage import get_storage

    with app.app_context():
        get_storage().write(key, data)


def storage_read(app, key: str) -> bytes:
    from release_server.storage import get_storage

    with app.app_context():
        return get_storage().read(key)


def test_stock_client_verifies_releases_published_by_api_and_cli(app, published, new_updater, live_server,
                                                                tmp_path):
    from release_server.client_cli import publish as publish_cli

    artifact = tmp_path / "server-2.0.tar.gz"
    artifact.write_bytes(make_tarball({"server.py": "print('v2')"}))
    changes = tmp_path / "CHANGES.md"
    changes.write_text("* second\n")
    res = CliRunner().invoke(publish_cli, ["--server", live_server.url, "--token",
                                           published["pub"]["Authorization"][7:], "--component", "server",
                                           "--version", "2.0", "--channel", "stable", "--changelog", str(changes),
                                           "--quiet", str(artifact)])
    assert res.exit_code == 0, res.output
    updater = new_updater()
    updater.refresh()
    for path, body in ((published["path"], published["body"]), ("server/server-2.0.tar.gz", artifact.read_bytes())):
        info = updater.get_targetinfo(path)
        assert info is not None, path
        assert Path(updater.download_target(info)).read_bytes() == body
    info = updater.get_targetinfo("server/server-2.0.tar.gz")
    assert info.custom["channels"] == ["stable"] and info.custom["version"] == "2.0"
    cl = updater.get_targetinfo(info.custom["changelog"]["path"])
    assert Path(updater.download_target(cl)).read_bytes() == b"* second\n"


def test_tampered_target_is_refused(app, published, new_updater):
    body = published["body"]
    storage_write(app, published["blob_key"], bytes([body[0] ^ 0xFF]) + body[1:])
    updater = new_updater()
    updater.refresh()
    info = updater.get_targetinfo(published["path"])
    with pytest.raises(LengthOrHashMismatchError):
        updater.download_target(info)


def test_inflated_target_is_refused(app, published, new_updater):
    storage_write(app, published["blob_key"], published["body"] + b"\0" * 100_000)
    updater = new_updater()
    updater.refresh()
    info = updater.get_targetinfo(published["path"])
    with pytest.raises(DownloadError):
        updater.download_target(info)


def test_replayed_older_timestamp_is_refused(app, client, published, new_updater):
    old = storage_read(app, "tuf/metadata/timestamp.json")
    assert publish(client, published["pub"], "server", "1.1").status_code == 201
    new_updater().refresh()  # the client now trusts the newer timestamp
    storage_write(app, "tuf/metadata/timestamp.json", old)
    with pytest.raises(BadVersionNumberError):
        new_updater().refresh()


def _forged_timestamp(app, *, expired: bool, foreign_key: bool) -> bytes:
    from release_server.db import db
    from release_server.signing import keys, services

    with app.app_context():
        ts = Metadata[Timestamp].from_bytes(storage_read(app, "tuf/metadata/timestamp.json"))
        ts.signed.version += 1
        if expired:
            ts.signed.expires = (services.utcnow() - timedelta(hours=1)).replace(microsecond=0)
        root = services.current_root(db.session).signed
        signer = keys.generate_signer() if foreign_key else keys.load_online_signer(
            app.config, app.instance_path, root, "timestamp")
        ts.signatures.clear()
        ts.sign(signer)
        return ts.to_bytes()


def test_expired_metadata_is_refused(app, published, new_updater):
    storage_write(app, "tuf/metadata/timestamp.json", _forged_timestamp(app, expired=True, foreign_key=False))
    with pytest.raises(ExpiredMetadataError):
        new_updater().refresh()


def test_metadata_signed_by_a_key_not_in_root_is_refused(app, published, new_updater):
    storage_write(app, "tuf/metadata/timestamp.json", _forged_timestamp(app, expired=False, foreign_key=True))
    with pytest.raises(UnsignedMetadataError):
        new_updater().refresh()


def test_served_metadata_and_targets_over_http(published, live_server):
    import requests

    with requests.get(f"{live_server.url}/tuf/metadata/timestamp.json", timeout=10) as ts:
        assert ts.status_code == 200 and ts.headers["Cache-Control"] == "no-cache"
    with requests.get(f"{live_server.url}/tuf/metadata/1.root.json", timeout=10) as root:
        assert "immutable" in root.headers["Cache-Control"] and root.headers["ETag"]
    with requests.get(f"{live_server.url}/tuf/metadata/2.root.json", timeout=10) as missing:
        assert missing.status_code == 404
    sha = hashlib.sha256(published["body"]).hexdigest()
    with requests.get(f"{live_server.url}/tuf/targets/server/{sha}.server-1.0.tar.gz", timeout=10) as t:
        assert t.status_code == 200 and t.content == published["body"]
    assert json.loads(root.content)["signed"]["_type"] == "root"
