"""A claimed component end to end: publisher keys made on their machines, the claim with the
root keys, a two-signature release through the CLI against a running server, and a stock client."""
from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from factories import create_component, make_tarball
from tuf.ngclient import Updater


def test_claim_publish_sign_with_and_second_signature_through_the_cli(app, client, auth, runner, live_server,
                                                                      tmp_path):
    from release_server.client_cli import publish as publish_cli
    from release_server.client_cli import sign as sign_cli
    from release_server.db import db
    from release_server.signing import ceremony

    with app.app_context():
        root_v1 = ceremony.local_trial(db.session, tmp_path / "root-keys").root_file.read_bytes()
        db.commit()
    pub = auth.headers("publisher")
    token = pub["Authorization"][7:]
    create_component(client, pub, "server")
    keys = []
    for name in ("alice", "bob", "carol"):
        res = runner.invoke(args=["keys", "new-publisher-key", "--out", str(tmp_path / f"{name}.pem")])
        assert res.exit_code == 0, res.output
        keys.append(tmp_path / f"{name}.pem")
    args = ["tuf", "claim", "server", "--threshold", "2"]
    for k in keys:
        args += ["--public-key", f"{k}.pub"]
    res = runner.invoke(args=args)
    assert res.exit_code != 0  # the root keys are needed
    for k in sorted((tmp_path / "root-keys").glob("root-key-*.pem"))[:2]:
        args += ["--root-key", str(k)]
    res = runner.invoke(args=args)
    assert res.exit_code == 0, res.output
    assert "root v2" in res.output and "threshold 2" in res.output

    artifact = tmp_path / "server-1.0.tar.gz"
    artifact.write_bytes(make_tarball({"server.py": "print('v1')"}))
    common = ["--server", live_server.url, "--token", token]
    # the publishers check the server's account against TUF, from the root they trust
    (tmp_path / "trusted-root.json").write_bytes(root_v1)
    env = {"RELEASE_SERVER_TRUSTED_ROOT": str(tmp_path / "trusted-root.json"),
           "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    res = CliRunner(env=env).invoke(publish_cli, [*common, "--component", "server", "--version", "1.0", "--quiet",
                                           "--sign-with", str(keys[0]), str(artifact)])
    assert res.exit_code == 0, res.output
    assert "pending signatures (1 of 2)" in res.output
    res = CliRunner(env=env).invoke(sign_cli, [*common, "--component", "server", "--version", "1.1", "--key", str(keys[1]),
                                        "--yes"])
    assert res.exit_code != 0 and "not 1.1" in res.output
    res = CliRunner(env=env).invoke(sign_cli, [*common, "--component", "server", "--version", "1.0", "--key",
                                        str(tmp_path / "root-keys" / sorted(p.name for p in
                                            (tmp_path / "root-keys").glob("root-key-*.pem"))[0]), "--yes"])
    assert res.exit_code != 0 and "not a publisher key" in res.output
    res = CliRunner(env=env).invoke(sign_cli, [*common, "--component", "server", "--version", "1.0", "--key", str(keys[1]),
                                        "--yes"])
    assert res.exit_code == 0, res.output
    assert "threshold met" in res.output and "+ server/server-1.0.tar.gz" in res.output

    cache = tmp_path / "tuf-cache"
    cache.mkdir()
    updater = Updater(str(cache), f"{live_server.url}/tuf/metadata/", str(tmp_path / "dl"),
                      f"{live_server.url}/tuf/targets/", bootstrap=root_v1)
    updater.refresh()
    info = updater.get_targetinfo("server/server-1.0.tar.gz")
    assert info is not None
    assert Path(updater.download_target(info)).read_bytes() == artifact.read_bytes()

    # a yank is signed by the publishers too: one signs it with the yank, a second one adds theirs
    from release_server.client_cli import yank_cmd

    res = CliRunner(env=env).invoke(yank_cmd, [*common, "--component", "server", "--version", "1.0", "--reason", "broken"])
    assert res.exit_code != 0 and "tuf_role" in res.output
    res = CliRunner(env=env).invoke(yank_cmd, [*common, "--component", "server", "--version", "1.0", "--reason", "broken",
                                        "--sign-with", str(keys[2])])
    assert res.exit_code == 0 and "pending signatures (1 of 2)" in res.output, res.output
    res = CliRunner(env=env).invoke(sign_cli, [*common, "--component", "server", "--key", str(keys[0]), "--yes"])
    assert res.exit_code == 0 and "threshold met" in res.output, res.output
    assert "~ server/server-1.0.tar.gz" in res.output  # what was signed, shown to the signer
    updater = Updater(str(cache), f"{live_server.url}/tuf/metadata/", str(tmp_path / "dl"),
                      f"{live_server.url}/tuf/targets/", bootstrap=root_v1)
    updater.refresh()
    assert updater.get_targetinfo("server/server-1.0.tar.gz").custom["yanked"] is True

    # a server that misreports the keys, or the role it builds on, is caught before anything is signed
    import copy

    import pytest

    from release_server.signing import keys as keys_mod
    from release_server.signing import publisher
    from release_server.signing.errors import SigningError

    st = client.get("/api/v1/components/server/signing", headers=pub).json
    url = f"{live_server.url}/tuf/metadata/"
    publisher.verify_state(st, root_v1, url, tmp_path / "check")
    other = copy.deepcopy(st)
    fake = keys_mod.generate_signer().public_key
    other["keys"][0] = {"keyid": fake.keyid, **fake.to_dict()}
    with pytest.raises(SigningError, match="other publisher keys"):
        publisher.verify_state(other, root_v1, url, tmp_path / "check")
    forged = copy.deepcopy(st)
    forged["role"]["signed"]["targets"]["server/server-1.0.tar.gz"]["length"] += 1
    with pytest.raises(SigningError, match="not signed by its publishers"):
        publisher.verify_state(forged, root_v1, url, tmp_path / "check")


def _forge_claimed_role(app, component: str, path: str, evil: bytes, signers) -> None:
    """Whoever holds every online key: a new version of the claimed role pointing ``path`` at
    ``evil``, signed by ``signers``, listed by a snapshot and timestamp signed with the online keys."""
    import hashlib

    from release_server.signing import keys as keys_mod
    from release_server.signing import metadata as md
    from release_server.signing.models import TufRole
    from release_server.storage import get_storage

    now = md.datetime.now(md.timezone.utc)
    with app.app_context():
        from release_server.db import db

        storage = get_storage()
        online = keys_mod.find_online_keys(keys_mod.key_dir(app.config, app.instance_path))
        rows = {r.name: r for r in db.session.query(TufRole)}
        sha = hashlib.sha256(evil).hexdigest()
        storage.write(md.TARGETS_PREFIX + md.hash_prefixed(path, sha), evil)
        entry = md.target_file(path, sha, len(evil), {"component": component, "version": "1.0", "yanked": False,
                                                      "channels": ["beta"], "requires": {}, "critical": False,
                                                      "min_from_version": None})
        role = md.build_bin(rows[component].version + 1, md.expiry(now, 86400), [entry])
        md.sign(role, signers(online))
        storage.write(md.metadata_key(component, role.signed.version), md.to_bytes(role))
        versions = {n: r.version for n, r in rows.items() if n not in ("root", "snapshot", "timestamp")}
        versions[component] = role.signed.version
        snap = md.build_snapshot(rows["snapshot"].version + 1, md.expiry(now, 86400), versions)
        md.sign(snap, [online["snapshot"]])
        storage.write(md.metadata_key("snapshot", snap.signed.version), md.to_bytes(snap))
        ts = md.build_timestamp(rows["timestamp"].version + 1, md.expiry(now, 86400), snap.signed.version)
        md.sign(ts, [online["timestamp"]])
        storage.write(md.metadata_key("timestamp", None), md.to_bytes(ts))
    app.extensions["tuf_metadata_cache"].invalidate()


def test_the_agent_refuses_a_claimed_release_re_signed_with_every_online_key(app, client, auth, live_server,
                                                                              tmp_path):
    import hashlib
    import pytest

    from client_agent.trust import TrustedRepository, VerificationError
    from factories import publish
    from release_server.db import db
    from release_server.signing import ceremony, claims, keys, publisher

    with app.app_context():
        root_v1 = ceremony.local_trial(db.session, tmp_path / "root-keys").root_file.read_bytes()
        db.commit()
    pub = auth.headers("publisher")
    create_component(client, pub, "server")
    signers = [keys.generate_signer() for _ in range(3)]
    with app.app_context():
        claims.claim(db.session, "server", [s.public_key for s in signers], 2,
                     root_signers=ceremony.load_root_keys(tmp_path / "root-keys")[:2], actor="test")
        db.commit()
    good = make_tarball({"server.py": "good"})
    st = client.get("/api/v1/components/server/signing", headers=pub).json
    role = publisher.publish_role(st, component="server", version="1.0", filename="server-1.0.tar.gz",
                                  sha256=hashlib.sha256(good).hexdigest(), length=len(good), channels=["beta"],
                                  critical=False, min_from_version=None, requires={}, changelog="")
    for s in signers[:2]:
        role.sign(s, append=True)
    resp = publish(client, pub, "server", "1.0", artifact=good, tuf_role=role.to_dict())
    assert resp.status_code == 201 and resp.json["signatures_pending"] is False, resp.json
    path = "server/server-1.0.tar.gz"

    def agent(name: str) -> TrustedRepository:
        return TrustedRepository(tmp_path / name, f"{live_server.url}/tuf/metadata/",
                                 f"{live_server.url}/tuf/targets/", root_v1)

    found = agent("before").open().target(path)
    assert found is not None and found[0].hashes["sha256"] == hashlib.sha256(good).hexdigest()

    # every online key, and one publisher's key too: two of three are required
    _forge_claimed_role(app, "server", path, make_tarball({"server.py": "evil"}),
                        lambda online: [*online.values(), signers[2]])
    for name in ("before", "fresh"):
        with pytest.raises(VerificationError):
            agent(name).open().target(path)
