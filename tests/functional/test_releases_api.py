"""Publishing, listing, downloading, promoting and yanking releases over the API."""
from __future__ import annotations

import hashlib
import io
import json

import pytest
from factories import create_component, make_tarball, publish


@pytest.fixture
def pub(auth):
    return auth.headers("publisher")


def stored_blobs(app) -> list[str]:
    from release_server.storage import get_storage

    with app.app_context():
        return [k for k in get_storage().list("sha256/")]


def release_count(app) -> int:
    from sqlalchemy import func, select

    from release_server.db import db
    from release_server.releases.models import Release

    with app.app_context():
        return db.session.scalar(select(func.count(Release.id)))


def test_publish_and_fetch(client, pub, app):
    assert create_component(client, pub, "server", "The CRM server").status_code == 201
    body = make_tarball({"app.py": "print('hi')"})
    resp = publish(client, pub, "server", "2.4.0", artifact=body, channels=["beta"],
                   changelog="# Fixes\n\n* <script>alert(1)</script> faster *search*",
                   requires={}, critical=True, min_from_version="2.0")
    assert resp.status_code == 201, resp.json
    rel = resp.json
    assert rel["version"] == "2.4.0"
    assert rel["artifact"] == {"filename": "server-2.4.0.tar.gz", "sha256": hashlib.sha256(body).hexdigest(),
                               "size": len(body)}
    assert rel["channels"] == ["beta"] and rel["critical"] is True and rel["min_from_version"] == "2.0"
    assert "<script>" not in rel["changelog_html"] and "<em>search</em>" in rel["changelog_html"]

    got = client.get("/api/v1/components/server/releases/2.4.0", headers=pub)
    assert got.status_code == 200 and got.json["artifact"]["sha256"] == rel["artifact"]["sha256"]

    dl = client.get(rel["download_url"], headers=pub)
    if dl.status_code == 302:  # pragma: no cover - presigned redirect not enabled in tests
        pytest.fail("unexpected redirect")
    assert dl.status_code == 200
    assert dl.data == body
    assert "attachment" in dl.headers["Content-Disposition"]
    dl.close()


def test_version_is_normalised_and_duplicate_refused(client, pub, app):
    create_component(client, pub, "web")
    assert publish(client, pub, "web", "1.0.0rc01").json["version"] == "1.0.0rc1"
    before = stored_blobs(app)
    dup = publish(client, pub, "web", "1.0.0-rc.1", artifact=b"other content")
    assert dup.status_code == 409
    assert dup.json["error"]["field"] == "version"
    assert stored_blobs(app) == before


@pytest.mark.parametrize("meta, field", [
    ({"version": "not a version"}, "version"),
    ({"version": "1.0", "requires": {"db-schema": ">=>1"}}, "requires"),
    ({"version": "1.0", "channels": ["Bad Name"]}, "channels"),
    ({"version": "1.0", "min_from_version": "x.y"}, "min_from_version"),
    ({"version": "1.0", "unknown": 1}, "unknown"),
    ({}, "version"),
])
def test_bad_metadata_is_refused_and_nothing_stored(client, pub, app, meta, field):
    create_component(client, pub, "server")
    create_component(client, pub, "db-schema")
    data = {"metadata": json.dumps(meta), "artifact": (io.BytesIO(b"payload"), "a.tar.gz")}
    resp = client.post("/api/v1/components/server/releases", data=data, headers=pub,
                       content_type="multipart/form-data")
    assert resp.status_code == 400, resp.json
    assert resp.json["error"]["field"].startswith(field)
    assert stored_blobs(app) == [] and release_count(app) == 0


def test_refusals_name_the_field(client, pub, app):
    create_component(client, pub, "server")
    # unknown component
    r = publish(client, pub, "nope", "1.0")
    assert r.status_code == 404 and r.json["error"]["field"] == "component"
    # unknown channel
    r = publish(client, pub, "server", "1.0", channels=["nightly"])
    assert r.status_code == 404 and r.json["error"]["field"] == "channels"
    # required component that does not exist
    r = publish(client, pub, "server", "1.0", requires={"ghost": ">=1"})
    assert r.status_code == 400 and r.json["error"]["field"] == "requires.ghost"
    # empty artifact
    r = publish(client, pub, "server", "1.0", artifact=b"")
    assert r.status_code == 400 and r.json["error"]["field"] == "artifact", r.json
    # missing parts
    r = client.post("/api/v1/components/server/releases", data={"metadata": json.dumps({"version": "1.0"})},
                    headers=pub, content_type="multipart/form-data")
    assert r.status_code == 400 and r.json["error"]["field"] == "artifact", r.json
    r = client.post("/api/v1/components/server/releases",
                    data={"artifact": (io.BytesIO(b"x"), "a.tar.gz")}, headers=pub,
                    content_type="multipart/form-data")
    assert r.status_code == 400 and r.json["error"]["field"] == "metadata"
    # metadata not JSON
    r = client.post("/api/v1/components/server/releases",
                    data={"metadata": "{oops", "artifact": (io.BytesIO(b"x"), "a.tar.gz")}, headers=pub,
                    content_type="multipart/form-data")
    assert r.status_code == 400 and r.json["error"]["field"] == "metadata"
    # JSON body instead of multipart
    r = client.post("/api/v1/components/server/releases", json={"version": "1.0"}, headers=pub)
    assert r.status_code == 415 and r.json["error"]["code"] == "unsupported_media_type"
    assert stored_blobs(app) == [] and release_count(app) == 0


def test_over_limit_artifact_is_413_and_nothing_stored(app, client, pub):
    app.config["MAX_ARTIFACT_SIZE"] = 64 * 1024
    create_component(client, pub, "server")
    r = publish(client, pub, "server", "1.0", artifact=b"x" * (64 * 1024 + 1))
    assert r.status_code == 413
    assert r.json["error"]["code"] == "too_large" and r.json["error"]["field"] == "artifact"
    assert stored_blobs(app) == [] and release_count(app) == 0
    # a whole request over MAX_CONTENT_LENGTH is refused before it is read
    app.config["MAX_CONTENT_LENGTH"] = 1024
    r = publish(client, pub, "server", "1.1", artifact=b"y" * 4096)
    assert r.status_code == 413 and r.json["error"]["code"] == "too_large"
    assert stored_blobs(app) == []
    incoming = list((__import__("pathlib").Path(app.config["UPLOAD_TMP_DIR"])).glob("upload-*"))
    assert incoming == []


def test_list_is_newest_version_first_paginated_and_filtered(client, pub):
    create_component(client, pub, "server")
    for v, ch in [("1.9", ["stable"]), ("1.10", ["stable"]), ("1.10.1rc1", ["beta"]), ("1.2", ["stable"]),
                  ("2.0.dev1", ["beta"])]:
        assert publish(client, pub, "server", v, channels=ch).status_code == 201
    r = client.get("/api/v1/components/server/releases?per_page=2", headers=pub)
    assert [x["version"] for x in r.json["items"]] == ["2.0.dev1", "1.10.1rc1"] and r.json["total"] == 5
    r = client.get("/api/v1/components/server/releases?per_page=2&page=2", headers=pub)
    assert [x["version"] for x in r.json["items"]] == ["1.10", "1.9"]
    r = client.get("/api/v1/components/server/releases?channel=stable", headers=pub)
    assert [x["version"] for x in r.json["items"]] == ["1.10", "1.9", "1.2"]
    r = client.get("/api/v1/components/server/releases?per_page=0", headers=pub)
    assert r.status_code == 400 and r.json["error"]["field"] == "per_page"


def test_promote_yank_unyank_are_audited(client, pub, auth):
    create_component(client, pub, "server")
    publish(client, pub, "server", "3.0", channels=["beta"])
    r = client.post("/api/v1/components/server/releases/3.0/promote", json={"channel": "stable"}, headers=pub)
    assert r.status_code == 200 and r.json["channels"] == ["beta", "stable"]
    r = client.post("/api/v1/components/server/releases/3.0/yank", json={"reason": "corrupts data"}, headers=pub)
    assert r.json["yanked"] is True and r.json["yank_reason"] == "corrupts data"
    r = client.post("/api/v1/components/server/releases/3.0/yank", json={}, headers=pub)
    assert r.status_code == 400 and r.json["error"]["field"] == "reason"
    r = client.post("/api/v1/components/server/releases/3.0/unyank", headers=pub)
    assert r.json["yanked"] is False
    r = client.post("/api/v1/components/server/releases/3.0/promote", json={"channel": "nope"}, headers=pub)
    assert r.status_code == 404 and r.json["error"]["field"] == "channels"
    audit = client.get("/api/v1/audit", headers=auth.headers("admin")).json["items"]
    actions = [e["action"] for e in audit]
    for action in ("release.publish", "release.promote", "release.yank", "release.unyank", "component.create"):
        assert action in actions


def test_custom_channel(client, pub):
    r = client.post("/api/v1/channels", json={"name": "lts"}, headers=pub)
    assert r.status_code == 201
    assert client.post("/api/v1/channels", json={"name": "lts"}, headers=pub).status_code == 409
    names = [c["name"] for c in client.get("/api/v1/channels", headers=pub).json["items"]]
    assert names == ["beta", "lts", "stable"]


def test_combined_changelog(client, pub):
    create_component(client, pub, "server")
    for v in ("1.0", "1.1", "1.2", "2.0"):
        publish(client, pub, "server", v, changelog=f"Changes in **{v}**")
    r = client.get("/api/v1/components/server/changelog?from=1.0&to=1.2", headers=pub)
    assert r.status_code == 200
    assert [e["version"] for e in r.json["entries"]] == ["1.2", "1.1"]
    assert r.json["markdown"].index("## 1.2") < r.json["markdown"].index("## 1.1")
    assert "<strong>1.1</strong>" in r.json["html"]
    r = client.get("/api/v1/components/server/changelog?to=2.0", headers=pub)
    assert [e["version"] for e in r.json["entries"]] == ["2.0", "1.2", "1.1", "1.0"]
    r = client.get("/api/v1/components/server/changelog?from=2.0&to=1.0", headers=pub)
    assert r.status_code == 400 and r.json["error"]["field"] == "from"
    r = client.get("/api/v1/components/server/changelog?from=banana&to=1.0", headers=pub)
    assert r.status_code == 400 and r.json["error"]["field"] == "from"


def test_same_content_twice_shares_one_blob(client, pub, app):
    create_component(client, pub, "server")
    body = make_tarball({"same": "bytes"})
    publish(client, pub, "server", "1.0", artifact=body)
    publish(client, pub, "server", "1.1", artifact=body)
    assert len(stored_blobs(app)) == 1
    # a refused publish of the same content must not delete the shared blob
    assert publish(client, pub, "server", "1.1", artifact=body).status_code == 409
    assert len(stored_blobs(app)) == 1
    dl = client.get("/api/v1/components/server/releases/1.0/artifact", headers=pub)
    assert dl.data == body
    dl.close()


def test_s3_download_can_redirect_to_a_presigned_url(app, client, pub, backend):
    import requests

    create_component(client, pub, "server")
    body = make_tarball({"x": "presigned"})
    publish(client, pub, "server", "1.0", artifact=body)
    app.config["S3_PRESIGNED_DOWNLOADS"] = True
    r = client.get("/api/v1/components/server/releases/1.0/artifact", headers=pub)
    if backend == "sqlite-local":  # local disk has no presigned URLs: served directly
        assert r.status_code == 200 and r.data == body
        r.close()
        return
    assert r.status_code == 302
    got = requests.get(r.headers["Location"], timeout=10)
    assert got.status_code == 200 and got.content == body
    assert "server-1.0.tar.gz" in got.headers.get("Content-Disposition", "")
