"""The release-server command line as an operator meets it: finding the instance, and one-line errors."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, free_port


def rs(args: list[str], cwd: Path, **env_extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELEASE_SERVER_")}
    env.pop("DATABASE_URL", None)
    env["PYTHONPATH"] = str(ROOT)
    env.update(env_extra)
    return subprocess.run([sys.executable, "-m", "release_server.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "inst"
    done = rs(["--instance", str(path), "init"], cwd=path.parent)
    assert done.returncode == 0, done.stderr
    assert "API token" in done.stdout
    return path


def test_outside_an_instance_nothing_is_created_and_one_line_says_what_to_do(tmp_path: Path) -> None:
    proc = rs(["users", "list"], cwd=tmp_path)
    line = one_line_error(proc)
    assert line == (f"error: no instance at {tmp_path / 'instance'}; run `release-server init` "
                    "or set RELEASE_SERVER_INSTANCE_PATH")
    assert list(tmp_path.iterdir()) == []
    # the environment names it too, and is not created either
    proc = rs(["tokens", "list"], cwd=tmp_path, RELEASE_SERVER_INSTANCE_PATH=str(tmp_path / "elsewhere"))
    assert f"no instance at {tmp_path / 'elsewhere'}" in one_line_error(proc)
    assert list(tmp_path.iterdir()) == []
    # help still answers, and says why the server commands are missing
    proc = rs(["--help"], cwd=tmp_path)
    assert proc.returncode == 0 and "publish" in proc.stdout and "no instance at" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_option_beats_environment_beats_default(instance: Path, tmp_path: Path) -> None:
    proc = rs(["--instance", str(instance), "tokens", "list"], cwd=tmp_path,
              RELEASE_SERVER_INSTANCE_PATH=str(tmp_path / "missing"))
    assert proc.returncode == 0 and "initial admin token" in proc.stdout
    proc = rs(["tokens", "list"], cwd=tmp_path, RELEASE_SERVER_INSTANCE_PATH=str(instance))
    assert proc.returncode == 0 and "initial admin token" in proc.stdout
    # the default: ./instance
    (tmp_path / "instance").symlink_to(instance)
    proc = rs(["tokens", "list"], cwd=tmp_path)
    assert proc.returncode == 0 and "initial admin token" in proc.stdout


@pytest.mark.parametrize("env, names", [
    ({"RELEASE_SERVER_MAX_ARTIFACT_SIZE": "abc"}, ["RELEASE_SERVER_MAX_ARTIFACT_SIZE", "2GiB"]),
    ({"RELEASE_SERVER_SMTP_PORT": "twenty-five"}, ["RELEASE_SERVER_SMTP_PORT", "integer"]),
    ({"RELEASE_SERVER_STORAGE_BACKEND": "ftp"}, ["STORAGE_BACKEND", "'local' or 's3'"]),
])
def test_bad_configuration_is_one_line_naming_the_setting(instance: Path, tmp_path: Path, env: dict[str, str],
                                                          names: list[str]) -> None:
    line = one_line_error(rs(["--instance", str(instance), "tokens", "list"], cwd=tmp_path, **env))
    for name in names:
        assert name in line


def test_unreachable_database_is_one_line_without_the_password(instance: Path, tmp_path: Path) -> None:
    url = f"postgresql://ops:s3cretpw@127.0.0.1:{free_port()}/rs"
    line = one_line_error(rs(["--instance", str(instance), "tokens", "list"], cwd=tmp_path, DATABASE_URL=url))
    assert "DATABASE_URL" in line and "127.0.0.1" in line and "s3cretpw" not in line


def test_missing_migration_names_the_command(tmp_path: Path) -> None:
    inst = tmp_path / "inst"
    assert rs(["--instance", str(inst), "init"], cwd=tmp_path).returncode == 0
    assert rs(["--instance", str(inst), "db", "downgrade", "0001"], cwd=tmp_path).returncode == 0
    line = one_line_error(rs(["--instance", str(inst), "tokens", "list"], cwd=tmp_path))
    assert "release-server db upgrade" in line and "f001" in line
    # db current and db history work with several heads, and say what is missing
    cur = rs(["--instance", str(inst), "db", "current"], cwd=tmp_path)
    assert cur.returncode == 0 and cur.stdout.split() == ["0001"] and "not applied" in cur.stderr
    assert rs(["--instance", str(inst), "db", "upgrade"], cwd=tmp_path).returncode == 0
    from release_server.migrations import script_heads

    heads = script_heads()
    assert len(heads) >= 2  # the shipped tree has several heads: the case that used to crash
    cur = rs(["--instance", str(inst), "db", "current"], cwd=tmp_path)
    assert cur.returncode == 0 and sorted(cur.stdout.split()) == sorted(heads), cur.stderr
    assert "not applied" not in cur.stderr
    hist = rs(["--instance", str(inst), "db", "history"], cwd=tmp_path)
    assert hist.returncode == 0, hist.stderr
    lines = hist.stdout.splitlines()
    for head in heads:
        assert any(f"-> {head} (head, current) [applied]" in line for line in lines), hist.stdout
    assert any(line.startswith("base -> 0001") for line in lines)
    assert "[pending]" not in hist.stdout


def test_json_logs_when_configured_one_line_per_job(instance: Path, tmp_path: Path) -> None:
    import json

    proc = rs(["--instance", str(instance), "worker", "--once"], cwd=tmp_path, RELEASE_SERVER_LOG_FORMAT="json")
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    jobs = [x for x in lines if x["logger"] == "release_server.job"]
    assert jobs and all(x["ok"] is True and x["job"] and x["duration_s"] >= 0 for x in jobs)
    assert len({x["job"] for x in jobs}) == len(jobs)  # one line per job
    assert not [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith("{")]
    bad = rs(["--instance", str(instance), "tokens", "list"], cwd=tmp_path, RELEASE_SERVER_LOG_FORMAT="xml")
    assert "LOG_FORMAT" in one_line_error(bad)
