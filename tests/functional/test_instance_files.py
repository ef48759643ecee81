"""The instance folder and everything the server writes in it are private to the server's user."""
from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from factories import create_component, publish
from release_server import close_app


def _modes(root: Path) -> dict[str, int]:
    out = {".": stat.S_IMODE(root.stat().st_mode)}
    for dirpath, dirnames, filenames in os.walk(root):
        for entry in dirnames + filenames:
            full = Path(dirpath) / entry
            out[str(full.relative_to(root))] = stat.S_IMODE(full.lstat().st_mode)
    return out


def test_instance_folder_and_every_file_in_it_are_private(tmp_path: Path) -> None:
    from release_server import create_app

    old = os.umask(0o022)  # the usual umask: without care, files would be world-readable
    try:
        instance = tmp_path / "instance"
        app = create_app({"INSTANCE_PATH": str(instance)})
        try:
            out = app.test_cli_runner().invoke(args=["init"])
            assert out.exit_code == 0, out.output
            token = re.search(r"API token: (\S+)", out.output).group(1)
            ceremony = tmp_path / "offline"
            out = app.test_cli_runner().invoke(args=["keys", "init-root", "--out", str(ceremony), "--no-passphrase"])
            assert out.exit_code == 0, out.output
            out = app.test_cli_runner().invoke(args=["tuf", "bootstrap", str(ceremony / "1.root.json")])
            assert out.exit_code == 0, out.output
            client = app.test_client()
            headers = {"Authorization": f"Bearer {token}"}
            assert create_component(client, headers, "server").status_code == 201
            assert publish(client, headers, "server", "1.0", channels=["stable"]).status_code == 201
            modes = _modes(instance)
            names = set(modes)
            assert {"release-server.db", "release-server.db-wal", "release-server.db-shm", "secret_key"} <= names
            assert any(n.startswith("keys/") for n in names) and any(n.startswith("blobs/") for n in names)
            loose = {name: oct(mode) for name, mode in modes.items()
                     if mode != (0o700 if (instance / name).is_dir() else 0o600)}
            assert loose == {}
        finally:
            close_app(app)
    finally:
        os.umask(old)


def test_an_existing_instance_is_mended_at_start(tmp_path: Path) -> None:
    from release_server import create_app

    instance = tmp_path / "instance"
    instance.mkdir(mode=0o755)
    (instance / "secret_key").write_text("x" * 40)
    (instance / "release-server.db").touch()
    for path in (instance / "secret_key", instance / "release-server.db"):
        os.chmod(path, 0o644)
    os.chmod(instance, 0o755)
    app = create_app({"INSTANCE_PATH": str(instance)})
    close_app(app)
    assert stat.S_IMODE(instance.stat().st_mode) == 0o700
    assert stat.S_IMODE((instance / "secret_key").stat().st_mode) == 0o600
    assert stat.S_IMODE((instance / "release-server.db").stat().st_mode) == 0o600
