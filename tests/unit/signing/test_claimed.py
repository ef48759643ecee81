"""Claimed components: publisher-signed roles, pending signatures, and the attacker who holds every online key."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from factories import create_component, make_tarball, publish
from tuf.api.exceptions import RepositoryError
from tuf.api.metadata import Metadata


@pytest.fixture
def pub(auth):
    return auth.headers("publisher")


@pytest.fixture
def publishers():
    from release_server.signing import keys

    return [keys.generate_signer() for _ in range(3)]


def claim(app, tuf_repo, component, signers, threshold=2):
    from release_server.db import db
    from release_server.signing import claims

    with app.app_context():
        result = claims.claim(db.session, component, [s.public_key for s in signers], threshold,
                              root_signers=tuf_repo.root_signers()[:2], actor="test")
        db.commit()
    return result


def state(client, pub, component):
    resp = client.get(f"/api/v1/components/{component}/signing", headers=pub)
    assert resp.status_code == 200, resp.json
    return resp.json


def signed_publish(client, pub, component, version, signers, *, body=None, channels=("beta",), changelog=""):
    from release_server.signing import publisher

    body = body if body is not None else make_tarball({"VERSION": version})
    st = state(client, pub, component)
    role = publisher.publish_role(st, component=component, version=version, filename=f"{component}-{version}.tar.gz",
                                  sha256=hashlib.sha256(body).hexdigest(), length=len(body), channels=channels,
                                  critical=False, min_from_version=None, requires={}, changelog=changelog)
    for s in signers:
        role.sign(s, append=True)
    return publish(client, pub, component, version, artifact=body, channels=list(channels), changelog=changelog,
                   tuf_role=role.to_dict())


def add_signature(client, pub, component, signer):
    st = state(client, pub, component)
    role = Metadata.from_dict(json.loads(json.dumps(st["pending"]["role"])))
    sig = role.sign(signer, append=True)
    return client.post(f"/api/v1/components/{component}/signing/signatures",
                       json={"signatures": [sig.to_dict()]}, headers=pub)


def test_two_of_three_release_waits_then_is_verified_by_a_stock_client(app, client, pub, tuf_repo, tuf_client,
                                                                       publishers, tmp_path, fetcher_class):
    from tuf.ngclient import Updater

    create_component(client, pub, "server")
    create_component(client, pub, "web")
    assert publish(client, pub, "web", "1.0").status_code == 201
    old_cache = tmp_path / "old-client"
    old_cache.mkdir()

    def old_client():
        return Updater(str(old_cache), "http://repo/tuf/metadata/", str(tmp_path / "old-t"),
                       "http://repo/tuf/targets/", fetcher=fetcher_class(app.test_client()),
                       bootstrap=tuf_repo.root_v1)

    before = old_client()
    before.refresh()
    assert before.get_targetinfo("web/web-1.0.tar.gz") is not None

    result = claim(app, tuf_repo, "server", publishers)
    assert result.root_version == 2 and result.pending_releases == 0
    body = make_tarball({"app.py": "v1"})
    resp = signed_publish(client, pub, "server", "1.0", publishers[:1], body=body)
    assert resp.status_code == 201, resp.json
    assert resp.json["signatures_pending"] is True
    assert resp.json["signatures"]["signed"] == [publishers[0].public_key.keyid]
    assert len(resp.json["signatures"]["awaited"]) == 2
    # unsigned: no client finds it, the check endpoint offers it to nobody
    pending = tuf_client()
    pending.refresh()
    with pytest.raises(RepositoryError):
        pending.get_targetinfo("server/server-1.0.tar.gz")
    assert client.get("/api/v1/components/server/releases/1.0", headers=pub).json["signatures_pending"] is True
    again = signed_publish(client, pub, "server", "1.1", publishers[:2])
    assert again.status_code == 409 and again.json["error"]["code"] == "signatures_pending"

    resp = add_signature(client, pub, "server", publishers[2])
    assert resp.status_code == 200 and resp.json["applied"] is True, resp.json
    for updater in (tuf_client(), old_client()):  # a client from before the layout change follows the rotation
        updater.refresh()
        assert updater._trusted_set.root.version == 2
        info = updater.get_targetinfo("server/server-1.0.tar.gz")
        assert info is not None and info.custom["version"] == "1.0"
        assert Path(updater.download_target(info)).read_bytes() == body
        assert updater.get_targetinfo("web/web-1.0.tar.gz") is not None  # unclaimed: still the bins
    assert state(client, pub, "server")["pending"] is None
    assert client.get("/api/v1/components/server/releases/1.0", headers=pub).json["signatures_pending"] is False
    # the next release signed by two at once is applied straight away; unclaimed ones stay online-signed
    assert signed_publish(client, pub, "server", "1.1", publishers[1:]).json["signatures_pending"] is False
    assert publish(client, pub, "web", "1.1").status_code == 201
    u = tuf_client()
    u.refresh()
    assert u.get_targetinfo("server/server-1.1.tar.gz") is not None
    assert u.get_targetinfo("web/web-1.1.tar.gz") is not None


def test_publish_to_a_claimed_component_needs_its_signed_role(app, client, pub, tuf_repo, publishers):
    from release_server.signing import keys

    create_component(client, pub, "server")
    claim(app, tuf_repo, "server", publishers)
    resp = publish(client, pub, "server", "1.0")
    assert resp.status_code == 400 and resp.json["error"]["field"] == "tuf_role"
    # signed by a key that is not one of the publishers'
    resp = signed_publish(client, pub, "server", "1.0", [keys.generate_signer()])
    assert resp.status_code == 400 and resp.json["error"]["field"] == "tuf_role.signatures"
    # a role that points the release at other bytes than those uploaded
    from release_server.signing import publisher

    st = state(client, pub, "server")
    role = publisher.publish_role(st, component="server", version="1.0", filename="server-1.0.tar.gz",
                                  sha256="0" * 64, length=10, channels=["beta"], critical=False,
                                  min_from_version=None, requires={}, changelog="")
    role.sign(publishers[0], append=True)
    resp = publish(client, pub, "server", "1.0", tuf_role=role.to_dict())
    assert resp.status_code == 400 and resp.json["error"]["field"] == "tuf_role.targets"
    assert client.get("/api/v1/components/server/releases/1.0", headers=pub).status_code == 404
    assert state(client, pub, "server")["pending"] is None


def _attacker_resigns(app, component, path, evil: bytes) -> None:
    """With every online key the server holds: list evil bytes for ``path`` in a bin, re-sign all online roles.

    The attacker also rewrites the claimed role (unsigned by publishers: only online keys
    are at hand) and points snapshot and timestamp at it.
    """
    from release_server.db import db
    from release_server.signing import keys as keys_mod
    from release_server.signing import metadata as md
    from release_server.signing.models import TufRole
    from release_server.storage import get_storage

    with app.app_context():
        storage = get_storage()
        online = keys_mod.find_online_keys(keys_mod.key_dir(app.config, app.instance_path))
        sha = hashlib.sha256(evil).hexdigest()
        rows = {r.name: r for r in db.session.query(TufRole)}
        # the evil bytes as a target file
        storage.write(md.TARGETS_PREFIX + md.hash_prefixed(path, sha), evil)
        from release_server.signing.models import TufTarget

        row = db.session.get(TufTarget, path)
        entry = md.target_file(path, sha, len(evil), {"component": component, "version": "1.0", "yanked": False})
        # 1. the claimed role re-signed with every online key
        role_v = rows[component].version + 1
        role = md.build_bin(role_v, md.expiry(md.datetime.now(md.timezone.utc), 86400), [entry])
        md.sign(role, online.values())
        storage.write(md.metadata_key(component, role_v), md.to_bytes(role))
        # 2. the same target in its hash bin, signed with the bins key
        bin_name = md.bin_for(path, 8)
        bin_v = rows[bin_name].version + 1
        b = md.build_bin(bin_v, md.expiry(md.datetime.now(md.timezone.utc), 86400), [entry])
        md.sign(b, [online["targets"]])
        storage.write(md.metadata_key(bin_name, bin_v), md.to_bytes(b))
        # 3. a top-level targets re-signed online that delegates the component to the attacker's key
        t_v = rows["targets"].version + 1
        t = md.build_targets(t_v, md.expiry(md.datetime.now(md.timezone.utc), 86400),
                             online["targets"].public_key, 8)
        md.sign(t, [online["targets"]])
        storage.write(md.metadata_key("targets", t_v), md.to_bytes(t))
        versions = {n: r.version for n, r in rows.items() if n not in ("root", "snapshot", "timestamp")}
        versions.update({component: role_v, bin_name: bin_v, "targets": t_v})
        snap_v = rows["snapshot"].version + 1
        snap = md.build_snapshot(snap_v, md.expiry(md.datetime.now(md.timezone.utc), 86400), versions)
        md.sign(snap, [online["snapshot"]])
        storage.write(md.metadata_key("snapshot", snap_v), md.to_bytes(snap))
        ts = md.build_timestamp(rows["timestamp"].version + 1, md.expiry(md.datetime.now(md.timezone.utc), 86400),
                                snap_v)
        md.sign(ts, [online["timestamp"]])
        storage.write(md.metadata_key("timestamp", None), md.to_bytes(ts))
        assert row is not None
    app.extensions["tuf_metadata_cache"].invalidate()


def test_every_online_key_stolen_cannot_point_a_claimed_component_at_other_bytes(app, client, pub, tuf_repo,
                                                                                  tuf_client, publishers):
    create_component(client, pub, "server")
    claim(app, tuf_repo, "server", publishers)
    good = make_tarball({"app.py": "good"})
    assert signed_publish(client, pub, "server", "1.0", publishers[:2], body=good).json["signatures_pending"] is False
    path = "server/server-1.0.tar.gz"
    _attacker_resigns(app, "server", path, make_tarball({"app.py": "evil"}))
    updater = tuf_client()
    with pytest.raises(RepositoryError):  # the online-signed top-level targets is refused (root keys sign it)
        updater.refresh()
        updater.get_targetinfo(path)


def test_attacker_keeping_the_offline_targets_still_cannot_sign_the_claimed_role(app, client, pub, tuf_repo,
                                                                                  tuf_client, publishers):
    """Snapshot and timestamp point at an online-signed version of the claimed role: refused."""
    from release_server.db import db
    from release_server.signing import keys as keys_mod
    from release_server.signing import metadata as md
    from release_server.signing.models import TufRole
    from release_server.storage import get_storage

    create_component(client, pub, "server")
    claim(app, tuf_repo, "server", publishers)
    good = make_tarball({"app.py": "good"})
    signed_publish(client, pub, "server", "1.0", publishers[:2], body=good)
    path = "server/server-1.0.tar.gz"
    evil = make_tarball({"app.py": "evil"})
    now = md.datetime.now(md.timezone.utc)
    with app.app_context():
        storage = get_storage()
        online = keys_mod.find_online_keys(keys_mod.key_dir(app.config, app.instance_path))
        rows = {r.name: r for r in db.session.query(TufRole)}
        sha = hashlib.sha256(evil).hexdigest()
        storage.write(md.TARGETS_PREFIX + md.hash_prefixed(path, sha), evil)
        entry = md.target_file(path, sha, len(evil), {"component": "server", "version": "1.0", "yanked": False})
        role_v = rows["server"].version + 1
        role = md.build_bin(role_v, md.expiry(now, 86400), [entry])
        md.sign(role, online.values())
        storage.write(md.metadata_key("server", role_v), md.to_bytes(role))
        versions = {n: r.version for n, r in rows.items() if n not in ("root", "snapshot", "timestamp")}
        versions["server"] = role_v
        snap = md.build_snapshot(rows["snapshot"].version + 1, md.expiry(now, 86400), versions)
        md.sign(snap, [online["snapshot"]])
        storage.write(md.metadata_key("snapshot", snap.signed.version), md.to_bytes(snap))
        ts = md.build_timestamp(rows["timestamp"].version + 1, md.expiry(now, 86400), snap.signed.version)
        md.sign(ts, [online["timestamp"]])
        storage.write(md.metadata_key("timestamp", None), md.to_bytes(ts))
    app.extensions["tuf_metadata_cache"].invalidate()
    updater = tuf_client()
    updater.refresh()  # root, timestamp, snapshot, targets all verify
    with pytest.raises(RepositoryError):
        updater.get_targetinfo(path)


def test_one_signature_of_two_is_refused_by_a_stock_client(app, client, pub, tuf_repo, tuf_client, publishers):
    """A role with one publisher's signature, published by whoever holds the online keys: refused."""
    from release_server.db import db
    from release_server.signing import keys as keys_mod
    from release_server.signing import metadata as md
    from release_server.signing.models import TufRole
    from release_server.storage import get_storage

    create_component(client, pub, "server")
    claim(app, tuf_repo, "server", publishers)
    body = make_tarball({"app.py": "one"})
    resp = signed_publish(client, pub, "server", "1.0", publishers[:1], body=body)
    assert resp.json["signatures_pending"] is True
    st = state(client, pub, "server")
    role = Metadata.from_dict(st["pending"]["role"])
    now = md.datetime.now(md.timezone.utc)
    with app.app_context():
        storage = get_storage()
        online = keys_mod.find_online_keys(keys_mod.key_dir(app.config, app.instance_path))
        rows = {r.name: r for r in db.session.query(TufRole)}
        storage.write(md.metadata_key("server", 1), md.to_bytes(role))
        versions = {n: r.version for n, r in rows.items() if n not in ("root", "snapshot", "timestamp")}
        versions["server"] = 1
        snap = md.build_snapshot(rows["snapshot"].version + 1, md.expiry(now, 86400), versions)
        md.sign(snap, [online["snapshot"]])
        storage.write(md.metadata_key("snapshot", snap.signed.version), md.to_bytes(snap))
        ts = md.build_timestamp(rows["timestamp"].version + 1, md.expiry(now, 86400), snap.signed.version)
        md.sign(ts, [online["timestamp"]])
        storage.write(md.metadata_key("timestamp", None), md.to_bytes(ts))
    app.extensions["tuf_metadata_cache"].invalidate()
    updater = tuf_client()
    updater.refresh()
    with pytest.raises(RepositoryError):
        updater.get_targetinfo("server/server-1.0.tar.gz")


def test_removed_key_counts_for_nothing_and_clients_verify_through_every_key_change(app, client, pub, tuf_repo,
                                                                                     tuf_client, publishers):
    from release_server.db import db
    from release_server.signing import claims, keys

    a, b, c = publishers
    create_component(client, pub, "server")
    claim(app, tuf_repo, "server", publishers)
    assert signed_publish(client, pub, "server", "1.0", [a, b]).json["signatures_pending"] is False
    # adding a key: the role as served still meets the delegation, so it goes out at once
    d = keys.generate_signer()
    with app.app_context():
        res = claims.change_keys(db.session, "server", add=[d.public_key], root_signers=tuf_repo.root_signers()[:2],
                                 actor="test")
        db.commit()
    assert res.applied and len(res.keyids) == 4
    u = tuf_client()
    u.refresh()
    assert u.get_targetinfo("server/server-1.0.tar.gz") is not None
    # removing b, who signed the role as served: the publishers re-sign it under the new keys first
    with app.app_context():
        res = claims.change_keys(db.session, "server", remove=[b.public_key.keyid[:10]],
                                 root_signers=tuf_repo.root_signers()[:2], actor="test")
        db.commit()
    assert not res.applied
    st = state(client, pub, "server")
    assert st["pending"]["action"] == "keys" and len(st["keys"]) == 4  # not in force yet
    u = tuf_client()
    u.refresh()
    assert u.get_targetinfo("server/server-1.0.tar.gz") is not None  # still verifies meanwhile
    resp = add_signature(client, pub, "server", b)
    assert resp.status_code == 400 and resp.json["error"]["field"] == "tuf_role.signatures"
    assert add_signature(client, pub, "server", a).json["applied"] is False
    assert add_signature(client, pub, "server", d).json["applied"] is True
    assert len(state(client, pub, "server")["keys"]) == 3
    u = tuf_client()
    u.refresh()
    assert u.get_targetinfo("server/server-1.0.tar.gz") is not None
    # b's signature is refused from now on
    resp = signed_publish(client, pub, "server", "1.1", [a, b])
    assert resp.status_code == 400 and resp.json["error"]["field"] == "tuf_role.signatures"
    assert signed_publish(client, pub, "server", "1.1", [c, d]).json["signatures_pending"] is False
    # a raised threshold: the role (signed by c and d) meets 2 but not 3
    with app.app_context():
        res = claims.change_keys(db.session, "server", threshold=3, root_signers=tuf_repo.root_signers()[:2],
                                 actor="test")
        db.commit()
    assert not res.applied
    for s in (a, c, d):
        last = add_signature(client, pub, "server", s)
    assert last.json["applied"] is True
    u = tuf_client()
    u.refresh()
    assert u.get_targetinfo("server/server-1.1.tar.gz") is not None


def test_a_role_signed_by_a_removed_key_is_refused_by_a_stock_client(app, client, pub, tuf_repo, tuf_client,
                                                                     publishers):
    """After b is removed, a role signed by a and b, served with every online key, is refused."""
    from release_server.db import db
    from release_server.signing import claims
    from release_server.signing import keys as keys_mod
    from release_server.signing import metadata as md
    from release_server.signing.models import TufRole
    from release_server.storage import get_storage

    a, b, c = publishers
    create_component(client, pub, "server")
    claim(app, tuf_repo, "server", publishers)
    signed_publish(client, pub, "server", "1.0", [a, c])
    with app.app_context():
        assert claims.change_keys(db.session, "server", remove=[b.public_key.keyid],
                                  root_signers=tuf_repo.root_signers()[:2], actor="test").applied
        db.commit()
    evil = make_tarball({"app.py": "evil"})
    path = "server/server-1.0.tar.gz"
    now = md.datetime.now(md.timezone.utc)
    with app.app_context():
        storage = get_storage()
        online = keys_mod.find_online_keys(keys_mod.key_dir(app.config, app.instance_path))
        rows = {r.name: r for r in db.session.query(TufRole)}
        sha = hashlib.sha256(evil).hexdigest()
        storage.write(md.TARGETS_PREFIX + md.hash_prefixed(path, sha), evil)
        role = md.build_bin(rows["server"].version + 1, md.expiry(now, 86400),
                            [md.target_file(path, sha, len(evil), {"component": "server", "version": "1.0"})])
        md.sign(role, [a, b])
        storage.write(md.metadata_key("server", role.signed.version), md.to_bytes(role))
        versions = {n: r.version for n, r in rows.items() if n not in ("root", "snapshot", "timestamp")}
        versions["server"] = role.signed.version
        snap = md.build_snapshot(rows["snapshot"].version + 1, md.expiry(now, 86400), versions)
        md.sign(snap, [online["snapshot"]])
        storage.write(md.metadata_key("snapshot", snap.signed.version), md.to_bytes(snap))
        ts = md.build_timestamp(rows["timestamp"].version + 1, md.expiry(now, 86400), snap.signed.version)
        md.sign(ts, [online["timestamp"]])
        storage.write(md.metadata_key("timestamp", None), md.to_bytes(ts))
    app.extensions["tuf_metadata_cache"].invalidate()
    updater = tuf_client()
    updater.refresh()
    with pytest.raises(RepositoryError):
        updater.get_targetinfo(path)


def test_claiming_a_component_with_releases_waits_for_its_first_signed_role(app, client, pub, tuf_repo,
                                                                            tuf_client, publishers):
    from release_server.db import db
    from release_server.rollouts import catalog

    create_component(client, pub, "server")
    create_component(client, pub, "web")
    assert publish(client, pub, "web", "1.0", channels=["stable"]).status_code == 201
    claim(app, tuf_repo, "server", publishers[:1], threshold=1)
    result = claim(app, tuf_repo, "web", publishers[1:], threshold=2)  # the second claim: no new root
    assert result.root_version is None and result.pending_releases == 1
    with app.app_context():
        cat, _ = catalog.load_catalog(db.session, 0)
        assert list(cat.by_component) == []  # not offered while unsigned
    st = state(client, pub, "web")
    assert st["pending"]["action"] == "claim" and list(st["pending"]["role"]["signed"]["targets"]) == [
        "web/changelogs/1.0.md", "web/web-1.0.tar.gz"]
    assert add_signature(client, pub, "web", publishers[1]).json["applied"] is False
    assert add_signature(client, pub, "web", publishers[2]).json["applied"] is True
    with app.app_context():
        cat, _ = catalog.load_catalog(db.session, 0)
        assert list(cat.by_component) == ["web"]
    u = tuf_client()
    u.refresh()
    assert u.get_targetinfo("web/web-1.0.tar.gz").custom["channels"] == ["stable"]
    assert signed_publish(client, pub, "server", "2.0", publishers[:1]).json["signatures_pending"] is False
    u = tuf_client()
    u.refresh()
    assert u.get_targetinfo("server/server-2.0.tar.gz") is not None


def test_yank_unyank_promote_of_a_claimed_component_are_signed_by_its_publishers(app, client, pub, tuf_repo,
                                                                                tuf_client, publishers):
    from release_server.signing import publisher

    a, b, c = publishers
    create_component(client, pub, "server")
    claim(app, tuf_repo, "server", publishers)
    signed_publish(client, pub, "server", "1.0", [a, b])
    url = "/api/v1/components/server/releases/1.0"
    resp = client.post(f"{url}/yank", json={"reason": "broken"}, headers=pub)
    assert resp.status_code == 400 and resp.json["error"]["field"] == "tuf_role"

    def role_for(**change):
        return publisher.change_role(state(client, pub, "server"), component="server", version="1.0", **change)

    role = role_for(yanked=True)
    role.sign(a, append=True)
    resp = client.post(f"{url}/yank", json={"reason": "broken", "tuf_role": role.to_dict()}, headers=pub)
    assert resp.status_code == 200 and resp.json["signatures_pending"] is True, resp.json
    assert client.get(url, headers=pub).json["yanked"] is False  # not until the threshold is met
    assert add_signature(client, pub, "server", c).json["applied"] is True
    assert client.get(url, headers=pub).json["yanked"] is True
    u = tuf_client()
    u.refresh()
    assert u.get_targetinfo("server/server-1.0.tar.gz").custom["yanked"] is True

    role = role_for(yanked=False)
    for s in (b, c):
        role.sign(s, append=True)
    resp = client.post(f"{url}/unyank", json={"tuf_role": role.to_dict()}, headers=pub)
    assert resp.status_code == 200 and resp.json["yanked"] is False, resp.json
    # a promote whose role says something else than the change is refused
    wrong = role_for(add_channel="beta-2")
    wrong.sign(a, append=True)
    wrong.sign(b, append=True)
    resp = client.post(f"{url}/promote", json={"channel": "stable", "tuf_role": wrong.to_dict()}, headers=pub)
    assert resp.status_code == 400 and resp.json["error"]["field"] == "tuf_role.targets"
    role = role_for(add_channel="stable")
    role.sign(a, append=True)
    role.sign(b, append=True)
    resp = client.post(f"{url}/promote", json={"channel": "stable", "tuf_role": role.to_dict()}, headers=pub)
    assert resp.status_code == 200 and resp.json["channels"] == ["beta", "stable"], resp.json
    u = tuf_client()
    u.refresh()
    info = u.get_targetinfo("server/server-1.0.tar.gz")
    assert info.custom["yanked"] is False and info.custom["channels"] == ["beta", "stable"]
    # a renewal: same targets, a new expiry, signed by two
    role = publisher.change_role(state(client, pub, "server"), component="server", version="", days=200)
    role.sign(a, append=True)
    resp = client.post("/api/v1/components/server/signing/proposals",
                       json={"action": "renew", "tuf_role": role.to_dict()}, headers=pub)
    assert resp.status_code == 200 and resp.json["applied"] is False
    assert add_signature(client, pub, "server", b).json["applied"] is True
    assert state(client, pub, "server")["role_version"] == role.signed.version


def test_claimed_layout_survives_root_and_online_rotation_and_refresh(app, client, pub, tuf_repo, tuf_client,
                                                                      publishers, tmp_path, fetcher_class,
                                                                      monkeypatch, runner):
    from datetime import timedelta

    from tuf.ngclient import Updater

    from release_server.db import db
    from release_server.signing import keys, services

    create_component(client, pub, "server")
    create_component(client, pub, "web")
    claim(app, tuf_repo, "server", publishers)
    signed_publish(client, pub, "server", "1.0", publishers[:2])
    publish(client, pub, "web", "1.0")
    with app.app_context():
        new_root = [keys.generate_signer() for _ in range(3)]
        services.rotate_root(db.session, current_signers=tuf_repo.root_signers()[:2], new_signers=new_root,
                             threshold=2)
        db.commit()
        online = {r: keys.generate_signer() for r in keys.ONLINE_ROLES}
        folder = keys.key_dir(app.config, app.instance_path)
        for role, s in online.items():
            keys.save_online_key(folder, role, s)
        services.rotate_online_keys(db.session, root_signers=new_root[:2], new_signers=online)
        db.commit()
    publish(client, pub, "web", "1.1")
    signed_publish(client, pub, "server", "1.1", publishers[1:])
    real_now = services.utcnow()
    with app.app_context():
        monkeypatch.setattr(services, "utcnow", lambda: real_now + timedelta(days=80))
        roles = services.refresh(db.session)
        db.commit()
    assert "unclaimed" in roles and "bins-00" in roles and "targets" not in roles and "server" not in roles
    monkeypatch.setattr(services, "utcnow", lambda: real_now)
    fresh_dir = tmp_path / "fresh"
    fresh_dir.mkdir()
    fresh = Updater(str(fresh_dir), "http://repo/tuf/metadata/", str(tmp_path / "t"), "http://repo/tuf/targets/",
                    fetcher=fetcher_class(app.test_client()), bootstrap=tuf_repo.root_v1)
    for updater in (fresh, tuf_client()):
        updater.refresh()
        for path in ("server/server-1.0.tar.gz", "server/server-1.1.tar.gz", "web/web-1.0.tar.gz",
                     "web/web-1.1.tar.gz"):
            assert updater.get_targetinfo(path) is not None, path
    # the offline top-level targets is renewed with the (new) root keys
    root_dir = tmp_path / "new-root"
    root_dir.mkdir()
    from release_server.signing import ceremony

    files = ceremony.write_root_keys(root_dir, new_root[:2], None)
    args = ["tuf", "renew-targets"]
    for f in files:
        args += ["--root-key", str(f)]
    res = runner.invoke(args=args)
    assert res.exit_code == 0 and "signed with the root keys" in res.output, res.output
    u = tuf_client()
    u.refresh()
    assert u.get_targetinfo("server/server-1.1.tar.gz") is not None


def test_claim_and_claim_keys_commands_refuse_bad_input_and_change_keys(app, client, pub, tuf_repo, runner,
                                                                        tmp_path, publishers):
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    def pem(signer, name):
        path = tmp_path / f"{name}.pub"
        path.write_bytes(signer._private_key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
        return str(path)

    root = [str(p) for p in sorted(tuf_repo.root_dir.glob("root-key-*.pem"))[:2]]
    create_component(client, pub, "server")
    keys_args = [a for i, s in enumerate(publishers) for a in ("--public-key", pem(s, f"p{i}"))]
    roots = [a for r in root for a in ("--root-key", r)]
    res = runner.invoke(args=["tuf", "claim", "nosuch", *keys_args, "--threshold", "2", *roots])
    assert res.exit_code == 1 and "nosuch" in res.output
    res = runner.invoke(args=["tuf", "claim", "server", *keys_args, "--threshold", "4", *roots])
    assert res.exit_code == 1 and "threshold 4 is impossible" in res.output
    bad = tmp_path / "bad.pub"
    bad.write_text("not a key")
    res = runner.invoke(args=["tuf", "claim", "server", "--public-key", str(bad), "--threshold", "1", *roots])
    assert res.exit_code == 1 and "not a PEM public key" in res.output
    res = runner.invoke(args=["tuf", "claim", "server", *keys_args, "--threshold", "2", "--root-key", root[0]])
    assert res.exit_code == 1 and "threshold" in res.output  # one root key of two
    res = runner.invoke(args=["tuf", "claim", "server", *keys_args, "--threshold", "2", *roots])
    assert res.exit_code == 0, res.output
    res = runner.invoke(args=["tuf", "claim", "server", *keys_args, "--threshold", "2", *roots])
    assert res.exit_code == 1 and "already claimed" in res.output

    from release_server.signing import keys

    extra = keys.generate_signer()
    res = runner.invoke(args=["tuf", "claim-keys", "server", "--add-key", pem(extra, "extra"), *roots])
    assert res.exit_code == 0 and "threshold 2" in res.output, res.output
    assert len(state(client, pub, "server")["keys"]) == 4
    res = runner.invoke(args=["tuf", "claim-keys", "server", "--remove-key", "zzzzzzzz", *roots])
    assert res.exit_code == 1 and "names none" in res.output
    res = runner.invoke(args=["tuf", "claim-keys", "server", "--threshold", "5", *roots])
    assert res.exit_code == 1 and "impossible" in res.output
    res = runner.invoke(args=["tuf", "claim-keys", "server", "--remove-key", extra.public_key.keyid[:12], *roots])
    assert res.exit_code == 0, res.output
    assert sorted(k["keyid"] for k in state(client, pub, "server")["keys"]) == sorted(
        s.public_key.keyid for s in publishers)
    from release_server.accounts.models import AuditEvent
    from release_server.db import db

    with app.app_context():
        actions = [e.action for e in db.session.query(AuditEvent).filter(AuditEvent.target == "component:server")]
    assert actions.count("component.claim") == 1 and actions.count("component.claim_keys") == 2


def test_a_pending_release_nobody_signs_can_be_discarded_and_no_deltas_are_made(app, client, pub, tuf_repo,
                                                                                publishers):
    from release_server.db import db
    from release_server.deltas import services as deltas

    create_component(client, pub, "server")
    claim(app, tuf_repo, "server", publishers)
    signed_publish(client, pub, "server", "1.0", publishers[:2])
    assert signed_publish(client, pub, "server", "1.1", publishers[:1]).json["signatures_pending"] is True
    with app.app_context():
        assert deltas.generate(lambda write: db.new_session(write=write), "server", "1.1",
                               from_versions=["1.0"]) == []
    resp = client.delete("/api/v1/components/server/signing/pending", headers=pub)
    assert resp.status_code == 200 and resp.json["discarded"] == "publish"
    assert client.get("/api/v1/components/server/releases/1.1", headers=pub).status_code == 404
    assert client.delete("/api/v1/components/server/signing/pending", headers=pub).status_code == 404
    assert signed_publish(client, pub, "server", "1.1", publishers[1:]).json["signatures_pending"] is False
    assert client.get("/api/v1/components/web/signing", headers=pub).status_code == 404


def test_readiness_loads_the_bins_key_once_targets_is_offline(app, client, pub, tuf_repo, publishers):
    from release_server import health

    create_component(client, pub, "server")
    claim(app, tuf_repo, "server", publishers)
    with app.app_context():
        check = health.check_signing_keys()
    assert check.ok, check
    from release_server.signing import keys as keys_mod

    folder = keys_mod.key_dir(app.config, app.instance_path)
    for p in folder.glob("targets-*.pem"):
        p.unlink()
    app.extensions["health_keys_cache"].clear()
    with app.app_context():
        check = health.check_signing_keys()
    assert not check.ok and "targets" in check.detail
