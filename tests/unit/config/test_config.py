"""Configuration: defaults < instance file < environment, typed, with clear errors."""
from __future__ import annotations

import pytest

from release_server import create_app
from release_server.config import load_config
from release_server.errors import ConfigError
from release_server import close_app


def test_precedence_defaults_file_env(tmp_path):
    (tmp_path / "config.toml").write_text('MAX_ARTIFACT_SIZE = 1000\nSTORAGE_BACKEND = "local"\nS3_BUCKET = "f"\n')
    cfg = load_config(tmp_path, environ={"RELEASE_SERVER_S3_BUCKET": "e"})
    assert cfg["MAX_ARTIFACT_SIZE"] == 1000  # from the file
    assert cfg["S3_BUCKET"] == "e"  # env beats file
    assert cfg["S3_REGION"] == "us-east-1"  # default


def test_env_values_are_typed(tmp_path):
    cfg = load_config(tmp_path, environ={"RELEASE_SERVER_MAX_ARTIFACT_SIZE": "2_000",
                                         "RELEASE_SERVER_S3_PRESIGNED_DOWNLOADS": "yes"})
    assert cfg["MAX_ARTIFACT_SIZE"] == 2000 and cfg["S3_PRESIGNED_DOWNLOADS"] is True


@pytest.mark.parametrize("env, name", [
    ({"RELEASE_SERVER_MAX_ARTIFACT_SIZE": "big"}, "MAX_ARTIFACT_SIZE"),
    ({"RELEASE_SERVER_S3_PRESIGNED_DOWNLOADS": "maybe"}, "S3_PRESIGNED_DOWNLOADS"),
])
def test_bad_env_value_names_the_variable(tmp_path, env, name):
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path, environ=env)
    assert f"RELEASE_SERVER_{name}" in str(e.value)


def test_bad_file_values(tmp_path):
    (tmp_path / "config.toml").write_text("MAX_ARTIFACT_SIZE = 'lots'\n")
    with pytest.raises(ConfigError, match="MAX_ARTIFACT_SIZE"):
        load_config(tmp_path, environ={})
    (tmp_path / "config.toml").write_text("this is = = not toml\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(tmp_path, environ={})


def test_database_url_selects_postgresql(tmp_path):
    cfg = load_config(tmp_path, environ={"DATABASE_URL": "postgresql://u@h/db"})
    assert cfg["DATABASE_URL"] == "postgresql://u@h/db"
    app = create_app({"INSTANCE_PATH": str(tmp_path), "DATABASE_URL": "postgresql://u@127.0.0.1:1/db"})
    assert app.extensions["db_engine"].dialect.name == "postgresql"
    assert app.extensions["db_engine"].driver == "psycopg"
    close_app(app)


def test_unknown_storage_backend_refused(tmp_path):
    with pytest.raises(ConfigError, match="STORAGE_BACKEND"):
        create_app({"INSTANCE_PATH": str(tmp_path), "STORAGE_BACKEND": "ftp"})


def test_embedded_default_is_sqlite_wal_with_foreign_keys(tmp_path):
    app = create_app({"INSTANCE_PATH": str(tmp_path)})
    with app.app_context():
        from release_server.db import db

        assert str(tmp_path) in str(db.engine.url)
        with db.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    assert app.config["STORAGE_PATH"].startswith(str(tmp_path))
    close_app(app)
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("raw, expected", [
    ("2GiB", 2 * 1024**3), ("500MB", 500 * 1000**2), ("25 MiB", 25 * 1024**2), ("1048576", 1048576),
    ("1_000", 1000), ("1.5GiB", int(1.5 * 1024**3)), ("10kb", 10_000),
])
def test_sizes_take_units(tmp_path, raw, expected):
    assert load_config(tmp_path, environ={"RELEASE_SERVER_MAX_ARTIFACT_SIZE": raw})["MAX_ARTIFACT_SIZE"] == expected
    (tmp_path / "config.toml").write_text(f'MAX_ATTACHMENT_SIZE = "{raw}"\n')
    assert load_config(tmp_path, environ={})["MAX_ATTACHMENT_SIZE"] == expected


@pytest.mark.parametrize("raw", ["abc", "2 GiBs", "-5MB", "MB", ""])
def test_bad_sizes_name_the_setting_and_the_form(tmp_path, raw):
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path, environ={"RELEASE_SERVER_MAX_MAIL_SIZE": raw})
    assert "RELEASE_SERVER_MAX_MAIL_SIZE" in e.value.message and "2GiB" in e.value.message


def test_create_app_never_creates_a_discovered_instance(tmp_path, monkeypatch):
    from release_server.errors import InstanceNotFoundError

    monkeypatch.setenv("RELEASE_SERVER_INSTANCE_PATH", str(tmp_path / "nope"))
    with pytest.raises(InstanceNotFoundError, match="run `release-server init`"):
        create_app()
    assert not (tmp_path / "nope").exists()


def test_library_logs_stay_at_warning_unless_verbose(tmp_path, monkeypatch):
    import logging

    # the command line sets these for the process; restored after the test
    monkeypatch.setenv("RELEASE_SERVER_INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("RELEASE_SERVER_LOG_LIBRARIES", "false")

    from click.testing import CliRunner

    from release_server import logs
    from release_server.server_cli import cli

    app = create_app({"INSTANCE_PATH": str(tmp_path)})
    close_app(app)
    for name in ("tuf.api._payload", "securesystemslib.signer", "alembic.runtime.migration", "botocore.hooks"):
        assert not logging.getLogger(name).isEnabledFor(logging.INFO), name
        assert logging.getLogger(name).isEnabledFor(logging.WARNING), name
    # `release-server -v` lets them through
    result = CliRunner().invoke(cli, ["-v", "--instance", str(tmp_path), "db", "--help"])
    assert result.exit_code == 0, result.output
    try:
        assert logging.getLogger("tuf.api._payload").isEnabledFor(logging.INFO)
    finally:
        logs.quiet_libraries(verbose=False)
    assert not logging.getLogger("tuf.api._payload").isEnabledFor(logging.INFO)
