"""End-to-end harness: a real server process with a bootstrapped TUF repository, and the
real agent run as a subprocess (``python -m client_agent``) against it.

``e2e`` bundles what a scenario needs: ``e2e.publish(...)`` (through the in-process
test client, which shares the live server's database and storage), ``e2e.enroll()``
(the agent's own ``enroll`` command with a fresh enrollment token), ``e2e.agent(...)``
(run one agent command), ``e2e.reports()`` (what the server stored), and paths into
the agent's state and install folders.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from factories import create_component, make_tarball, publish

ROOT = Path(__file__).resolve().parents[2]
CUSTOMER = "Acme GmbH"


def hooks_manifest(hooks: dict[str, str], timeout: float = 60) -> str:
    lines = []
    for name, script in hooks.items():
        lines += [f"[hooks.{name}]", f"command = {json.dumps(['sh', '-c', script])}", f"timeout = {timeout}"]
    return "\n".join(lines) + "\n"


def app_artifact(version: str, *, health: str = "test -f VERSION", extra: dict[str, str | bytes] | None = None,
                 hooks: dict[str, str] | None = None) -> bytes:
    """A small application release whose health check runs ``health``."""
    files = {"VERSION": version, "bin/app.sh": f"#!/bin/sh\necho app {version}\n", **(extra or {})}
    return make_tarball(files, manifest=hooks_manifest({"health_check": health, **(hooks or {})}))


@dataclass
class E2E:
    app: Any
    client: Any
    headers: dict[str, str]
    server: Any
    tmp: Path
    customer: str = CUSTOMER
    state_dir: Path = field(init=False)
    install_dir: Path = field(init=False)

    def __post_init__(self) -> None:
        self.state_dir = self.tmp / "agent-state"
        self.install_dir = self.tmp / "installed"
        self._components: set[str] = set()

    def machine(self, name: str, customer: str | None = None) -> E2E:
        """Another installation (its own agent state and install folders) on the same server, of ``customer``."""
        folder = self.tmp / "machines" / name
        folder.mkdir(parents=True, exist_ok=True)
        other = E2E(self.app, self.client, self.headers, self.server, folder, customer or self.customer)
        other._components = self._components
        return other

    # ---------------------------------------------------------------- server side

    def publish(self, component: str, version: str, artifact: bytes | None = None, *,
                changelog: str | None = None, channels: list[str] | None = None, **meta: Any) -> dict[str, Any]:
        if component not in self._components:
            resp = create_component(self.client, self.headers, component)
            assert resp.status_code in (201, 409), resp.json
            self._components.add(component)
        resp = publish(self.client, self.headers, component, version,
                       artifact=artifact if artifact is not None else app_artifact(version),
                       channels=channels or ["stable"],
                       changelog=changelog if changelog is not None else f"* Changes in {version}", **meta)
        assert resp.status_code == 201, resp.json
        return resp.json

    def enrollment_token(self, **body: Any) -> str:
        resp = self.client.post(f"/api/v1/customers/{self.customer}/enrollment-tokens", json=body,
                                headers=self.headers)
        assert resp.status_code == 201, resp.json
        return resp.json["token"]

    def reports(self, installation_id: str | None = None) -> list[dict[str, Any]]:
        inst = installation_id or self.installation_id
        resp = self.client.get(f"/api/v1/installations/{inst}/reports", headers=self.headers)
        assert resp.status_code == 200, resp.json
        return resp.json["items"]

    def installation(self) -> dict[str, Any]:
        resp = self.client.get(f"/api/v1/installations/{self.installation_id}", headers=self.headers)
        assert resp.status_code == 200, resp.json
        return resp.json

    def release_blob_key(self, component: str, version: str) -> str:
        from sqlalchemy import select

        from release_server.db import db
        from release_server.releases.models import Component, Release

        with self.app.app_context():
            return db.session.scalar(select(Release.blob_key).join(Component)
                                     .where(Component.name == component, Release.version == version))

    def replace_blob(self, key: str, data: bytes) -> None:
        from release_server.storage import get_storage

        with self.app.app_context():
            get_storage().write(key, data)

    # ---------------------------------------------------------------- the agent

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLIENT_AGENT_")}
        env["PYTHONPATH"] = str(ROOT)
        env.update(extra)
        return env

    def agent(self, *args: str, env: dict[str, str] | None = None, timeout: float = 120,
              check: int | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([sys.executable, "-m", "client_agent", "--state-dir", str(self.state_dir), *args],
                              capture_output=True, text=True, timeout=timeout, cwd=str(self.tmp),
                              env=self.env(**(env or {})))
        if check is not None:
            assert proc.returncode == check, (f"exit {proc.returncode}, expected {check}\n"
                                              f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}\n"
                                              f"log:\n{self.agent_log()[-4000:]}\n"
                                              f"server log:\n{self.server_log()[-6000:]}")
        return proc

    def spawn(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "client_agent", "--state-dir", str(self.state_dir), *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(self.tmp),
                                env=self.env(**(env or {})))

    def enroll(self, *extra: str, components: tuple[str, ...] = ("app",), name: str = "test machine") -> str:
        args = ["enroll", "--server", self.server.url, "--token", self.enrollment_token(),
                "--install-dir", str(self.install_dir), "--name", name]
        for c in components:
            args += ["--component", c]
        self.agent(*args, *extra, check=0)
        self.installation_id = json.loads((self.state_dir / "enrollment.json").read_text())["installation_id"]
        return self.installation_id

    def status(self) -> dict[str, Any]:
        return json.loads(self.agent("status", "--json", check=0).stdout)

    def set_config(self, **changes: Any) -> None:
        path = self.state_dir / "config.json"
        config = json.loads(path.read_text())
        config.update(changes)
        path.write_text(json.dumps(config))

    def current(self, component: str = "app") -> str | None:
        link = self.install_dir / component / "current"
        return os.readlink(link).rsplit("/", 1)[-1] if link.is_symlink() else None

    def running_version(self, component: str = "app") -> str:
        return (self.install_dir / component / "current" / "VERSION").read_text().strip()

    def server_log(self) -> str:
        path = self.server.log_path
        return "\n".join(line for line in path.read_text(errors="replace").splitlines()
                         if "GET /tuf/" not in line) if path.exists() else ""

    def agent_log(self) -> str:
        path = self.state_dir / "agent.log"
        return path.read_text() if path.exists() else ""


