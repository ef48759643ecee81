"""The agent updating itself as the component ``client-agent``.

A ``client-agent`` release is an ordinary artifact holding the agent package::

    client_agent/...      the package (pure Python)
    VERSION               the release's version
    update.toml           pre_install runs the self-check of the new code

and is installed like any other component under
``<install_dir>/client-agent/releases/<version>/`` with ``current`` pointing at
the one in use. Two rules make this safe:

* **A new agent takes effect on the next run.** At start, ``maybe_reexec``
  (called first thing by the CLI) re-executes the interpreter on
  ``<install_dir>/client-agent/current`` when that release exists and is not the
  code already running, so the running process never changes under its feet
  and the next start uses the new release. The daemon re-executes itself after
  a successful self-update.
* **An agent that fails its self-check is never switched to.** The release's
  ``pre_install`` hook runs ``python -m client_agent self-check`` with the new
  release directory as working directory, i.e. the *new* code: it imports every
  module and dependency and checks the version. A failure stops the
  installation before the switch, so ``current`` keeps the working agent.

``build_agent_artifact`` packs the running agent (or any copy of it) into such
an artifact for publishing.
"""

from __future__ import annotations

import importlib
import io
import os
import sys
import tarfile
from pathlib import Path

import client_agent

PACKAGE_DIR = Path(client_agent.__file__).resolve().parent
BASE_VERSION = "0.1.0"  # the version of the agent installed by the distribution package
LAUNCHED_ENV = "CLIENT_AGENT_LAUNCHED"
NO_REEXEC_ENV = "CLIENT_AGENT_NO_REEXEC"
PYTHON_ENV = "CLIENT_AGENT_PYTHON"
VERSION_FILE = "VERSION"

SELF_CHECK_MODULES = (
    "client_agent.errors", "client_agent.package", "client_agent.hooks", "client_agent.fsutil",
    "client_agent.journal", "client_agent.outbox", "client_agent.backoff", "client_agent.installer",
    "client_agent.config", "client_agent.client", "client_agent.trust", "client_agent.agent",
    "client_agent.selfupdate", "client_agent.cli",
)
DEPENDENCIES = ("requests", "tuf.ngclient", "securesystemslib", "packaging.version", "tqdm")

SELF_CHECK_MANIFEST = """\
# pre_install runs the new agent's own self-check; a failing agent is never switched to.
[hooks.pre_install]
command = ["sh", "-c", "exec \\"${CLIENT_AGENT_PYTHON:-python3}\\" -m client_agent self-check"]
timeout = 120
"""


def running_release_dir() -> Path | None:
    """The release directory the running agent was loaded from, if it is a self-updated release."""
    root = PACKAGE_DIR.parent
    return root if (root / VERSION_FILE).is_file() else None


def agent_version() -> str:
    """Version of the running agent: its release's VERSION file, else the packaged base version."""
    release = running_release_dir()
    if release is not None:
        text = (release / VERSION_FILE).read_text(encoding="utf-8").strip()
        if text:
            return text
    return BASE_VERSION


def current_release(install_dir: Path | str) -> Path | None:
    """The resolved ``<install_dir>/client-agent/current`` release, if it holds an agent."""
    link = Path(install_dir) / "client-agent" / "current"
    try:
        target = link.resolve(strict=True)
    except (FileNotFoundError, RuntimeError, OSError):
        return None
    return target if (target / "client_agent" / "__init__.py").is_file() else None


def reexec_command(release: Path, argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """Command and environment that run the agent from ``release`` with the same arguments."""
    env = dict(os.environ)
    env[LAUNCHED_ENV] = str(release)
    env["PYTHONPATH"] = os.pathsep.join([str(release)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep)
                                                          if p])
    # -P: do not put the working directory first on sys.path, so the release's package wins.
    return [sys.executable, "-P", "-m", "client_agent", *argv], env


def should_reexec(install_dir: Path | str) -> Path | None:
    """The release to re-execute on, or None to keep running this code."""
    if os.environ.get(NO_REEXEC_ENV):
        return None
    release = current_release(install_dir)
    if release is None or release == PACKAGE_DIR.parent:
        return None
    if os.environ.get(LAUNCHED_ENV) == str(release):
        return None  # already re-executed once for this release: never loop
    return release


def maybe_reexec(install_dir: Path | str, argv: list[str]) -> None:
    """Replace this process by the agent of ``<install_dir>/client-agent/current`` if it is another one."""
    release = should_reexec(install_dir)
    if release is None:
        return
    command, env = reexec_command(release, argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, command, env)


def self_check() -> list[str]:
    """Problems found in the agent as loaded (empty when it is fit to run)."""
    problems: list[str] = []
    if sys.version_info < (3, 11):
        problems.append(f"Python 3.11 or later is required, this is {sys.version.split()[0]}")
    for name in SELF_CHECK_MODULES + DEPENDENCIES:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - any failure to import is what we look for
            problems.append(f"cannot import {name}: {exc.__class__.__name__}: {exc}")
    release_dir = os.environ.get("UPDATE_RELEASE_DIR")
    if release_dir:
        expected = Path(release_dir).resolve()
        if PACKAGE_DIR.parent != expected:
            problems.append(f"the agent under test was loaded from {PACKAGE_DIR}, not from {expected}")
        want = os.environ.get("UPDATE_TO_VERSION")
        version_file = expected / VERSION_FILE
        have = version_file.read_text(encoding="utf-8").strip() if version_file.is_file() else None
        if want and have != want:
            problems.append(f"the release's VERSION file says {have!r}, expected {want!r}")
    if not problems:
        try:
            from client_agent.agent import parse_window
            from client_agent.backoff import BackoffPolicy

            parse_window("sat-sun 01:00-05:00")
            BackoffPolicy().delay(3)
        except Exception as exc:  # noqa: BLE001
            problems.append(f"smoke test failed: {exc!r}")
    return problems


def build_agent_artifact(version: str, *, source: Path = PACKAGE_DIR, manifest: str = SELF_CHECK_MANIFEST,
                         extra_files: dict[str, bytes] | None = None) -> bytes:
    """A ``client-agent`` release artifact (.tar.gz bytes) holding the package at ``source``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        def add_bytes(name: str, data: bytes, mode: int = 0o644) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = mode
            tar.addfile(info, io.BytesIO(data))

        for path in sorted(source.rglob("*")):
            rel = path.relative_to(source)
            if "__pycache__" in rel.parts or path.suffix == ".pyc" or not path.is_file():
                continue
            add_bytes(f"client_agent/{rel.as_posix()}", path.read_bytes())
        add_bytes(VERSION_FILE, f"{version}\n".encode())
        add_bytes("update.toml", manifest.encode())
        for name, data in (extra_files or {}).items():
            add_bytes(name, data)
    return buf.getvalue()
