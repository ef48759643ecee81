"""Delta patches as TUF targets: a stock python-tuf client verifies and downloads them."""
from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest
from factories import create_component, make_tarball, publish

from client_agent import deltapatch

LIB = random.Random(7).randbytes(200_000)


@pytest.fixture
def pub(auth):
    return auth.headers("publisher")


def generate(app, version, **kw):
    from release_server.db import db
    from release_server.deltas import services

    with app.app_context():
        return services.generate(lambda write: db.new_session(write=write), "server", version, **kw)


def test_stock_updater_verifies_delta_targets_and_their_signed_fields(app, client, pub, tuf_client, tmp_path):
    from release_server.db import db
    from release_server.signing import services as signing

    create_component(client, pub, "server")
    old = make_tarball({"lib.so": LIB, "main.py": "print(1)\n"})
    new = make_tarball({"lib.so": LIB, "main.py": "print(2)\n"})
    assert publish(client, pub, "server", "1.0", artifact=old).status_code == 201
    assert publish(client, pub, "server", "1.1", artifact=new).status_code == 201
    [made] = generate(app, "1.1")
    assert made.status == "ready" and made.length < len(new) * 0.8

    updater = tuf_client()
    updater.refresh()
    info = updater.get_targetinfo("server/deltas/1.0-1.1.rsdpatch")
    assert info is not None and info.length == made.length
    custom = info.custom
    assert custom["kind"] == "delta" and custom["format"] == deltapatch.FORMAT
    assert custom["from"] == {"path": "server/server-1.0.tar.gz", "sha256": hashlib.sha256(old).hexdigest(),
                              "length": len(old)}
    assert custom["to"] == {"path": "server/server-1.1.tar.gz", "sha256": hashlib.sha256(new).hexdigest(),
                            "length": len(new)}
    patch = Path(updater.download_target(info, str(tmp_path / "patch")))

    # applying the verified patch to 1.0's tar stream gives exactly 1.1's signed tar stream
    (tmp_path / "old.tar.gz").write_bytes(old)
    (tmp_path / "new.tar.gz").write_bytes(new)
    base = deltapatch.to_tar(tmp_path / "old.tar.gz", tmp_path / "old.tar")
    want = deltapatch.to_tar(tmp_path / "new.tar.gz", tmp_path / "new.tar")
    assert custom["base_tar"] == base.to_json() and custom["tar"] == want.to_json()
    got = deltapatch.apply_patch(tmp_path / "old.tar", patch, tmp_path / "out.tar", max_output=want.length)
    assert got == want

    # the artifacts' own targets are untouched, and a second run makes nothing new
    assert updater.get_targetinfo("server/server-1.1.tar.gz").hashes["sha256"] == hashlib.sha256(new).hexdigest()
    assert generate(app, "1.1") == []

    # the exported static tree holds the patch like any target
    dest = tmp_path / "export"
    with app.app_context():
        signing.export_tree(db.session, str(dest))
    assert (dest / "targets" / "server" / "deltas" / f"{info.hashes['sha256']}.1.0-1.1.rsdpatch").read_bytes() \
        == patch.read_bytes()


def test_a_patch_that_saves_too_little_is_not_kept(app, client, pub, tuf_client):
    create_component(client, pub, "server")
    publish(client, pub, "server", "1.0", artifact=make_tarball({"lib.so": random.Random(1).randbytes(50_000)}))
    publish(client, pub, "server", "1.1", artifact=make_tarball({"lib.so": random.Random(2).randbytes(50_000)}))
    [result] = generate(app, "1.1")
    assert result.status == "too_large"
    updater = tuf_client()
    updater.refresh()
    assert updater.get_targetinfo("server/deltas/1.0-1.1.rsdpatch") is None


def test_patches_come_from_the_newest_n_earlier_releases(app, client, pub, tuf_repo):
    app.config["DELTA_FROM_RELEASES"] = 2
    create_component(client, pub, "server")
    for v in ("1.0", "1.1", "1.2", "1.3"):
        publish(client, pub, "server", v, artifact=make_tarball({"lib.so": LIB, "v": v}))
    results = generate(app, "1.3")
    assert sorted(r.from_version for r in results) == ["1.1", "1.2"]
    assert {r.status for r in results} == {"ready"}


def test_a_zip_artifact_gets_no_patch(app, client, pub, tuf_repo):
    import io
    import zipfile

    create_component(client, pub, "server")
    for v in ("1.0", "1.1"):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("lib.so", LIB)
        publish(client, pub, "server", v, artifact=buf.getvalue(), filename=f"server-{v}.zip")
    [result] = generate(app, "1.1")
    assert result.status == "unsupported"


def test_the_worker_makes_patches_to_the_newest_release_once(app, client, pub, runner, tuf_repo):
    create_component(client, pub, "server")
    for v in ("1.0", "1.1"):
        publish(client, pub, "server", v, artifact=make_tarball({"lib.so": LIB, "v": v}))
    res = runner.invoke(args=["worker", "--once"])
    assert res.exit_code == 0, res.output
    listed = runner.invoke(args=["deltas", "list", "--component", "server", "--version", "1.1"])
    assert listed.exit_code == 0 and "1.0 -> 1.1: ready" in listed.output
    assert "server/deltas/1.0-1.1.rsdpatch" in listed.output
    again = runner.invoke(args=["deltas", "generate", "--component", "server", "--version", "1.1"])
    assert again.exit_code == 0 and "nothing to do" in again.output


def test_cli_generate_and_its_errors(app, client, pub, runner, tuf_repo):
    create_component(client, pub, "server")
    for v in ("1.0", "1.1"):
        publish(client, pub, "server", v, artifact=make_tarball({"lib.so": LIB, "v": v}))
    res = runner.invoke(args=["deltas", "generate", "--component", "server", "--version", "1.1", "--from", "1.0"])
    assert res.exit_code == 0, res.output
    assert "server 1.0 -> 1.1: ready" in res.output
    bad = runner.invoke(args=["deltas", "generate", "--component", "server", "--version", "1.1", "--from", "3.0"])
    assert bad.exit_code == 1 and "no earlier release '3.0'" in bad.output
    missing = runner.invoke(args=["deltas", "list", "--component", "server", "--version", "9.9"])
    assert missing.exit_code == 1 and "error:" in missing.output
