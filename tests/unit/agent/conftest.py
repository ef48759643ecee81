"""Fixtures for the client agent tests: building release artifacts and installers."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from pathlib import Path
from typing import Callable

import pytest

from client_agent.installer import Installer, InstallerConfig

PAYLOAD_SIZE = 256 * 1024


def release_files(version: str) -> dict[str, tuple[bytes, int]]:
    """The files every test release contains: path -> (content, mode)."""
    return {
        "VERSION": (version.encode(), 0o644),
        "bin/app": (f"#!/bin/sh\necho app {version}\n".encode(), 0o755),
        "data/payload.bin": ((version.encode() * PAYLOAD_SIZE)[:PAYLOAD_SIZE], 0o644),
    }


def hooks_toml(hooks: dict[str, str], timeout: float = 30) -> str:
    """A manifest running each hook's shell script with ``sh -c``."""
    lines = []
    for name, script in hooks.items():
        lines.append(f"[hooks.{name}]")
        lines.append(f"command = {json.dumps(['sh', '-c', script])}")
        lines.append(f"timeout = {timeout}")
    return "\n".join(lines) + "\n"


def write_tar(path: Path, files: dict[str, tuple[bytes, int]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, (data, mode) in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = mode
            tar.addfile(info, io.BytesIO(data))
    return path


def write_zip(path: Path, files: dict[str, tuple[bytes, int]]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, (data, mode) in files.items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return path


@pytest.fixture
def make_artifact(tmp_path: Path) -> Callable[..., Path]:
    """Factory: make_artifact(version, hooks={name: script}, fmt="tar.gz") -> artifact path."""
    out = tmp_path / "artifacts"
    out.mkdir()

    def make(version: str, hooks: dict[str, str] | None = None, *, fmt: str = "tar.gz",
             timeout: float = 30) -> Path:
        files = release_files(version)
        if hooks:
            files["update.toml"] = (hooks_toml(hooks, timeout).encode(), 0o644)
        if fmt == "zip":
            return write_zip(out / f"app-{version}.zip", files)
        return write_tar(out / f"app-{version}.tar.gz", files)

    return make


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    """(state_dir, install_dir)"""
    return tmp_path / "state", tmp_path / "install"


@pytest.fixture
def installer(dirs: tuple[Path, Path]) -> Installer:
    state_dir, install_dir = dirs
    return Installer(InstallerConfig(state_dir, install_dir, hook_kill_grace=0.5))


def assert_complete_release(release_dir: Path, version: str) -> None:
    """``release_dir`` holds every file of release ``version`` with the right content."""
    for name, (data, mode) in release_files(version).items():
        path = release_dir / name
        assert path.read_bytes() == data, name
        assert bool(path.stat().st_mode & 0o111) == bool(mode & 0o111), name


@pytest.fixture
def check_release() -> Callable[[Path, str], None]:
    return assert_complete_release
