"""Publish refuses what the agent cannot install, with a 400 naming the field and the member; nothing is kept."""
from __future__ import annotations

import io
import tarfile

import pytest
from factories import create_component, make_tarball, publish


@pytest.fixture
def pub(auth):
    return auth.headers("publisher")


def _link_tarball() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("current")
        info.type, info.linkname = tarfile.SYMTYPE, "../../../etc"
        tar.addfile(info)
    return buf.getvalue()


@pytest.mark.parametrize("artifact, member", [
    (b"just some text, not an archive\n", None),
    (_link_tarball(), "current"),
    (make_tarball({"a": "b"}, manifest='[hooks.post_install]\ncommand = []\n'), "update.toml"),
], ids=["not-an-archive", "link-out-of-the-tree", "hook-without-command"])
def test_uninstallable_artifacts_are_refused_and_nothing_is_stored(client, pub, app, artifact, member):
    from release_server.storage import get_storage

    assert create_component(client, pub, "server").status_code == 201
    resp = publish(client, pub, "server", "1.0.0", artifact=artifact)
    assert resp.status_code == 400, resp.json
    err = resp.json["error"]
    assert err["code"] == "invalid_artifact" and err["field"] == "artifact"
    if member is not None:
        assert repr(member) in err["message"]
    with app.app_context():
        assert list(get_storage().list("sha256/")) == []
    assert client.get("/api/v1/components/server/releases", headers=pub).json["items"] == []
    assert publish(client, pub, "server", "1.0.0").status_code == 201
