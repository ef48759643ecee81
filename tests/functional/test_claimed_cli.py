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
    res = CliRunner().invoke(publish_cli, [*common, "--component", "server", "--version", "1.0", "--quiet",
                                           "--sign-with", str(keys[0]), str(artifact)])
    assert res.exit_code == 0, res.output
    assert "pending signatures (1 of 2)" in res.output
    res = CliRunner().invoke(sign_cli, [*common, "--component", "server", "--version", "1.1", "--key", str(keys[1]),
                                        "--yes"])
    assert res.exit_code != 0 and "not 1.1" in res.output
    res = CliRunner().invoke(sign_cli, [*common, "--component", "server", "--version", "1.0", "--key",
                                        str(tmp_path / "root-keys" / sorted(p.name for p in
                                            (tmp_path / "root-keys").glob("root-key-*.pem"))[0]), "--yes"])
    assert res.exit_code != 0 and "not a publisher key" in res.output
    res = CliRunner().invoke(sign_cli, [*common, "--component", "server", "--version", "1.0", "--key", str(keys[1]),
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
