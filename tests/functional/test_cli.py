"""The release-server command line: server-side commands and the publishing client."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from factories import make_tarball

from conftest import ROOT


def test_users_and_tokens_commands(runner, app):
    r = runner.invoke(args=["users", "create", "alice", "--role", "publisher", "--email", "a@example.com"])
    assert r.exit_code == 0 and "password: " in r.output
    r = runner.invoke(args=["users", "create", "alice", "--role", "publisher"])
    assert r.exit_code == 1 and "already exists" in r.output
    r = runner.invoke(args=["tokens", "create", "--name", "ci", "--role", "publisher", "--user", "alice"])
    assert r.exit_code == 0
    secret = r.stdout.strip().splitlines()[0]
    assert secret.startswith("rst_")
    prefix = secret.split("_")[1]
    r = runner.invoke(args=["tokens", "list"])
    assert prefix in r.output and "active" in r.output and secret not in r.output
    client = app.test_client()
    assert client.get("/api/v1/components", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    assert runner.invoke(args=["tokens", "revoke", prefix]).exit_code == 0
    assert "revoked" in runner.invoke(args=["tokens", "list"]).output
    assert client.get("/api/v1/components", headers={"Authorization": f"Bearer {secret}"}).status_code == 401
    r = runner.invoke(args=["tokens", "revoke", "zzzzzzzz"])
    assert r.exit_code == 1 and "no token" in r.output
    r = runner.invoke(args=["tokens", "create", "--name", "x", "--role", "admin", "--user", "alice"])
    assert r.exit_code == 1 and "cannot hold" in r.output


def test_passwords_are_hashed_with_argon2(runner, app):
    runner.invoke(args=["users", "create", "bob", "--role", "support", "--password", "a very good password"])
    from sqlalchemy import select

    from release_server.accounts import services
    from release_server.accounts.models import User
    from release_server.db import db

    with app.app_context():
        user = db.session.scalar(select(User).where(User.username == "bob"))
        assert user.password_hash.startswith("$argon2id$")
        assert services.authenticate_user(db.session, "bob", "a very good password") is not None
        assert services.authenticate_user(db.session, "bob", "wrong") is None


def test_init_prints_admin_credentials_only_once(runner):
    first = runner.invoke(args=["init"])
    assert first.exit_code == 0 and "password:" in first.output and "API token: rst_" in first.output
    second = runner.invoke(args=["init"])
    assert second.exit_code == 0 and "password:" not in second.output


def test_components_create_rejects_bad_name(runner):
    assert runner.invoke(args=["components", "create", "server"]).exit_code == 0
    r = runner.invoke(args=["components", "create", "server"])
    assert r.exit_code == 1 and "already exists" in r.output
    r = runner.invoke(args=["components", "create", "Bad Name"])
    assert r.exit_code == 1


def run_publish(server_url: str, token: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, RELEASE_SERVER_URL=server_url, RELEASE_SERVER_TOKEN=token, PYTHONPATH=str(ROOT),
               RELEASE_SERVER_PROGRESS="1")
    return subprocess.run([sys.executable, "-m", "release_server.cli", "publish", *args], capture_output=True,
                          text=True, env=env, timeout=120)


def test_publish_command_against_a_real_server(live_server, auth, tmp_path):
    token = auth.token("publisher")
    h = {"Authorization": f"Bearer {token}"}
    assert requests.post(live_server.url + "/api/v1/components", json={"name": "server"}, headers=h,
                         timeout=10).status_code == 201
    artifact = tmp_path / "server-2.4.0.tar.gz"
    body = make_tarball({"big.bin": os.urandom(3 * 1024 * 1024)})
    artifact.write_bytes(body)
    changes = tmp_path / "CHANGES.md"
    changes.write_text("* Faster search\n")
    r = run_publish(live_server.url, token, "--component", "server", "--version", "2.4.0", "--channel", "beta",
                    "--channel", "stable", "--changelog", str(changes), str(artifact))
    assert r.returncode == 0, r.stderr
    assert "published server 2.4.0" in r.stdout
    assert "upload server-2.4.0.tar.gz" in r.stderr and "100%" in r.stderr  # the progress bar ran to the end
    got = requests.get(live_server.url + "/api/v1/components/server/releases/2.4.0", headers=h, timeout=10).json()
    assert got["artifact"]["sha256"] == hashlib.sha256(body).hexdigest() and got["channels"] == ["beta", "stable"]
    assert got["changelog"] == "* Faster search\n"

    # every refusal is one clear line and a non-zero exit
    r = run_publish(live_server.url, token, "--component", "server", "--version", "2.4.0", str(artifact))
    assert r.returncode == 1 and "409 duplicate_release [version]" in r.stderr
    r = run_publish(live_server.url, token, "--component", "server", "--version", "two", str(artifact))
    assert r.returncode == 1 and "[version]" in r.stderr
    r = run_publish(live_server.url, "rst_aaaaaaaa_" + "b" * 30, "--component", "server", "--version", "3",
                    str(artifact))
    assert r.returncode == 1 and "401" in r.stderr
    r = run_publish("http://127.0.0.1:9", token, "--component", "server", "--version", "3", str(artifact))
    assert r.returncode == 3 and "cannot reach" in r.stderr
    r = run_publish(live_server.url, token, "--component", "server", "--version", "3", "--requires", "oops",
                    str(artifact))
    assert r.returncode == 2 and "COMPONENT=SPEC" in r.stderr


def test_migrations_match_the_models(app):
    """Every model change has its migration: autogenerate finds nothing to do."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from release_server import models_registry  # noqa: F401
    from release_server.db import Base, db

    with app.app_context():
        with db.engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(ctx, Base.metadata)
    assert diff == []


def test_publish_starts_without_the_database_layer():
    code = ("import sys, release_server.server_cli; "
            "print(sorted(m for m in ('sqlalchemy', 'requests', 'release_server.support.models', 'release_server.db') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("command", ["publish", "sign", "yank", "unyank", "promote"])
def test_a_client_command_named_first_starts_without_flask(command: str):
    code = ("import sys\nfrom release_server.cli import main\ntry:\n    main([%r, '--help'])\nexcept SystemExit as e:\n"
            "    assert e.code == 0, e.code\nprint(sorted(m for m in ('flask', 'werkzeug', 'sqlalchemy', 'requests', "
            "'release_server.application') if m in sys.modules))" % command)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    assert f"Usage: release-server {command} [OPTIONS]" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("first", [True, False])
def test_a_client_command_reads_dot_env_as_the_group_does(tmp_path: Path, first: bool):
    """RELEASE_SERVER_URL from .env in a parent folder, named first or after a group option."""
    import socket

    with socket.socket() as s:  # a port nothing listens on: the command reports it cannot reach it
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / ".env").write_text(f"RELEASE_SERVER_URL=http://127.0.0.1:{port}\nRELEASE_SERVER_TOKEN=rst_x_y\n")
    (tmp_path / ".flaskenv").write_text("RELEASE_SERVER_URL=http://127.0.0.1:1\n")  # .env wins
    work = tmp_path / "sub"
    work.mkdir()
    artifact = work / "server-1.0.tar.gz"
    artifact.write_bytes(make_tarball({"a.txt": b"a"}))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RELEASE_SERVER_", "FLASK_"))}
    args = ["publish", "--component", "server", "--version", "1.0", "--quiet", str(artifact)]
    if not first:
        args = ["-v", *args]
    out = subprocess.run([sys.executable, "-m", "release_server.cli", *args], capture_output=True, text=True,
                         cwd=work, timeout=60, env={**env, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 3, out.stderr
    assert f"cannot reach http://127.0.0.1:{port}" in out.stderr
    skipped = subprocess.run([sys.executable, "-m", "release_server.cli", *args], capture_output=True, text=True,
                             cwd=work, timeout=60, env={**env, "PYTHONPATH": str(ROOT), "FLASK_SKIP_DOTENV": "1"})
    assert skipped.returncode == 2 and "--server" in skipped.stderr


def test_the_whole_group_still_lists_the_client_commands(tmp_path: Path):
    out = subprocess.run([sys.executable, "-m", "release_server.cli", "--help"], capture_output=True, text=True,
                         cwd=tmp_path, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    listed = {line.split()[0] for line in out.stdout.split("Commands:")[1].splitlines() if line.strip()}
    assert {"publish", "sign", "yank", "unyank", "promote", "mailgate"} <= listed


def test_a_database_failure_inside_a_command_is_one_line(app, monkeypatch):
    from click.testing import CliRunner
    from flask.cli import ScriptInfo
    from sqlalchemy.exc import OperationalError

    from release_server.accounts import services
    from release_server.server_cli import cli

    def broken(session):  # noqa: ANN001, ANN202
        raise OperationalError("SELECT 1", {}, Exception("disk I/O error"))

    monkeypatch.setattr(services, "list_users", broken)
    result = CliRunner().invoke(cli, ["users", "list"], obj=ScriptInfo(create_app=lambda: app))
    assert result.exit_code == 1, result.output
    assert "cannot use the database" in result.output and "disk I/O error" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
