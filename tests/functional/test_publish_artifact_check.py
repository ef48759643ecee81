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


def test_a_tarball_is_checked_as_it_arrives_and_a_zip_or_a_refusal_from_the_stored_file(client, pub, monkeypatch):
    import zipfile

    from release_server.releases import services

    files_checked = []
    real = services.check_artifact

    def check_file(path: str) -> None:
        files_checked.append(path)
        real(path)

    monkeypatch.setattr(services, "check_artifact", check_file)
    assert create_component(client, pub, "server").status_code == 201
    assert publish(client, pub, "server", "1.0.0", artifact=make_tarball({"a": "b" * 100_000})).status_code == 201
    assert files_checked == []  # passed while it was received: not read again
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("app/main.py", "print(1)")
    resp = publish(client, pub, "server", "1.0.1", artifact=buf.getvalue(), filename="server-1.0.1.zip")
    assert resp.status_code == 201, resp.json
    assert len(files_checked) == 1
    resp = publish(client, pub, "server", "1.0.2", artifact=_link_tarball())
    assert resp.status_code == 400 and "'current'" in resp.json["error"]["message"]
    assert len(files_checked) == 2  # the stored file's check words the refusal
