"""The shipped systemd units and nginx site: valid, and their commands are real.

``systemd-analyze verify`` checks each unit (its keys, and that every Exec command is an
executable) with the installation prefix pointed at this checkout; where systemd is absent
the units are parsed and their commands checked by hand. Either way each command is run
with ``--help``-like arguments so an option the program no longer takes fails here, and the
nginx site template renders to a configuration that ``nginx -t`` accepts.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import cluster  # noqa: E402

UNITS = sorted((ROOT / "deploy" / "systemd").glob("*.service"))
BIN = Path(sys.executable).parent


def localised(unit: Path, dest: Path, instance: str = "8001") -> Path:
    """The unit with /opt/release-server pointing at this checkout (a template gets an instance)."""
    text = unit.read_text().replace(f"{cluster.UNIT_PREFIX}/.venv/bin/", f"{BIN}/")
    name = unit.name.replace("@.service", f"@{instance}.service")
    path = dest / name
    path.write_text(text)
    return path


def test_units_are_shipped_for_nodes_and_the_worker() -> None:
    assert {u.name for u in UNITS} == {"release-server-node@.service", "release-server-worker.service"}


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_unit_is_valid_and_its_commands_exist(unit: Path, tmp_path: Path) -> None:
    service = cluster.unit_service(unit)
    assert service.get("EnvironmentFile") == ["/etc/release-server/node.env"]
    commands = [cluster.unit_command(v, BIN, "8001", tmp_path) for v in service["ExecStartPre"] + service["ExecStart"]]
    for cmd in commands:
        assert Path(cmd[0]).is_absolute() and os.access(cmd[0], os.X_OK), cmd
    analyze = shutil.which("systemd-analyze")
    if analyze:
        out = subprocess.run([analyze, "verify", str(localised(unit, tmp_path))], capture_output=True, text=True,
                             timeout=120)
        problems = [ln for ln in (out.stdout + out.stderr).splitlines()
                    if "release-server" in ln and "User" not in ln]  # the service user exists only on a server
        assert out.returncode == 0 and not problems, out.stdout + out.stderr
    # every option of the ExecStart command is one the program takes
    main = commands[-1]
    if Path(main[0]).name == "gunicorn":
        assert main[1:3] == ["--config", "python:release_server.gunicorn_conf"]
        out = subprocess.run([sys.executable, "-c", "import release_server.gunicorn_conf as c; print(c.wsgi_app)"],
                             capture_output=True, text=True, cwd=str(ROOT), timeout=60)
        assert out.stdout.strip() == "release_server:create_app()"
        help_cmd = [main[0], "--help"]
        opts = [a for a in main[1:] if a.startswith("--")]
        helptext = subprocess.run(help_cmd, capture_output=True, text=True, timeout=60).stdout
        assert all(o in helptext for o in opts), opts
    else:
        from click.testing import CliRunner

        from release_server.worker import worker_command

        assert Path(main[0]).name == "release-server" and main[1] == "worker"
        known = {o for p in worker_command.params for o in p.opts}
        assert {o for o in main[2:] if o.startswith("--")} <= known, main
        # and the values parse (an out-of-range one fails before anything runs)
        ctx = worker_command.make_context("worker", list(main[2:]))
        assert ctx.params["lease_seconds"] > ctx.params["tick"]
        assert CliRunner().invoke(worker_command, ["--tick", "0"]).exit_code == 2


def test_a_unit_with_a_missing_command_is_caught(tmp_path: Path) -> None:
    broken = tmp_path / "release-server-worker.service"
    broken.write_text((ROOT / "deploy/systemd/release-server-worker.service").read_text()
                      .replace("/opt/release-server/.venv/bin/release-server worker", "/nonexistent/release-server worker"))
    cmd = cluster.unit_command(cluster.unit_service(broken)["ExecStart"][0], BIN, "x", tmp_path)
    assert not os.access(cmd[0], os.X_OK)
    analyze = shutil.which("systemd-analyze")
    if analyze:
        out = subprocess.run([analyze, "verify", str(broken)], capture_output=True, text=True, timeout=120)
        assert out.returncode != 0 and "nonexistent" in out.stdout + out.stderr


def test_nginx_site_renders_to_a_configuration_nginx_accepts(tmp_path: Path) -> None:
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if nginx is None:
        if os.environ.get("REQUIRE_NGINX") == "1":
            pytest.fail("nginx is required (REQUIRE_NGINX=1) but not installed")
        pytest.skip("nginx is not installed (apt-get install nginx); set REQUIRE_NGINX=1 to make this a failure")
    (tmp_path / "logs").mkdir()
    conf = cluster.render_nginx(tmp_path, 18080, [18001, 18002, 18003])
    site = (tmp_path / "nginx" / "site.conf").read_text()
    body = "\n".join(ln for ln in site.splitlines() if not ln.lstrip().startswith("#"))
    assert body.count("server 127.0.0.1:1800") == 3 and "@" not in body
    out = subprocess.run([nginx, "-t", "-c", str(conf), "-p", str(tmp_path / "nginx"), "-e",
                          str(tmp_path / "logs" / "error.log")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert f"include {cluster.SNIPPET};" in body  # the shipped snippet itself, not a copy


def test_cluster_script_mistakes_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert cluster.main(["status", "--state-dir", str(tmp_path)]) == 1
    assert "no cluster in" in capsys.readouterr().err
    (tmp_path / "cluster.json").write_text('{"state": "down", "nginx": "", "nodes": [], "processes": '
                                           '[{"name": "node-1", "kind": "node", "pid": null}]}')
    assert cluster.main(["kill", "node-9", "--state-dir", str(tmp_path)]) == 1
    assert "no process named 'node-9'; there are: node-1" in capsys.readouterr().err
    assert cluster.main(["kill", "node-1", "--state-dir", str(tmp_path)]) == 1
    assert "node-1 is not running" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        cluster.main(["up", "--state-dir", str(tmp_path), "--tick", "5", "--lease-seconds", "2"])
    assert exc.value.code == 2 and "--tick must be shorter" in capsys.readouterr().err


def test_cluster_uses_the_database_and_store_it_is_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        s3_endpoint: str) -> None:
    """DATABASE_URL and RELEASE_SERVER_STORAGE_BACKEND=s3 given: no database created, no S3 server started."""
    bucket = f"given-{os.getpid()}"
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://rs@db.invalid:5432/release")
    for key, value in {"STORAGE_BACKEND": "s3", "S3_ENDPOINT_URL": s3_endpoint, "S3_BUCKET": bucket,
                       "S3_ACCESS_KEY_ID": "test", "S3_SECRET_ACCESS_KEY": "test"}.items():
        monkeypatch.setenv(f"RELEASE_SERVER_{key}", value)
    state: dict = {"processes": []}
    assert cluster.database_url(state) == "postgresql+psycopg://rs@db.invalid:5432/release"
    settings = cluster.storage_settings(state, tmp_path)
    assert settings["RELEASE_SERVER_S3_ENDPOINT_URL"] == s3_endpoint and settings["RELEASE_SERVER_S3_BUCKET"] == bucket
    assert state == {"processes": []}  # nothing of its own to start or drop
    from release_server.storage.s3 import S3Storage

    store = S3Storage(bucket=bucket, endpoint_url=s3_endpoint, access_key_id="test", secret_access_key="test")
    store.client.head_bucket(Bucket=bucket)  # the bucket exists now (made if missing)
