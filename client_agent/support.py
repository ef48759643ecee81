"""Support requests from an installation: diagnostic bundles and filing requests.

``collect-logs`` answers a vendor's request for information: it packs what support
usually asks for — the agent's log, the hooks' output, the installed versions and the
update history, the application's configured log files (their last part only), and
facts about the system — into one ``.tar.gz`` and attaches it to the ticket.
``report-issue`` files a new request (incident, problem, service or development) for
this installation's customer, with an optional screenshot and bundle, and prints its
number. Secrets never go into a bundle: the enrollment file (with the installation's
token) and the trusted root are left out, and so is the agent's configuration.
"""
from __future__ import annotations

import io
import json
import os
import platform
import shutil
import socket
import sys
import tarfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from client_agent.errors import AgentError

#: Each collected log file contributes at most its last this many bytes.
LOG_TAIL_BYTES = 2 * 1024 * 1024
#: State files worth sending (never enrollment.json: it holds the token).
STATE_FILES = ("agent.log", "agent.log.1", "hooks.log", "hooks.log.1", "installed.json", "history.json",
               "journal.json", "status.json", "releases.json")
KINDS = ("incident", "problem", "service", "development")


class SupportRequestError(AgentError):
    """A support request cannot be made as asked (bad file, bad kind)."""


@dataclass(frozen=True)
class Bundle:
    path: Path
    members: list[str]
    size: int


def system_facts(install_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "collected_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": sys.version.split()[0],
        "cpu_count": os.cpu_count(),
    }
    try:
        facts["load_average"] = os.getloadavg()
    except OSError:
        pass
    try:
        with open("/proc/uptime") as fh:
            facts["uptime_seconds"] = float(fh.read().split()[0])
    except OSError:
        pass
    if install_dir is not None and os.path.isdir(install_dir):
        usage = shutil.disk_usage(install_dir)
        facts["disk"] = {"path": str(install_dir), "total": usage.total, "free": usage.free}
    return facts


def _tail(path: Path, limit: int) -> bytes:
    size = path.stat().st_size
    with path.open("rb") as fh:
        if size > limit:
            fh.seek(size - limit)
        return fh.read(limit)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(time.time())
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def build_bundle(state_dir: Path, dest: Path, *, install_dir: str | None, log_files: list[str],
                 extra: dict[str, Any] | None = None) -> Bundle:
    """Write the diagnostic bundle to ``dest`` (a .tar.gz); missing files are noted, not fatal."""
    members: list[str] = []
    notes: list[str] = []
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(dest, "w:gz") as tar:
        for name in STATE_FILES:
            path = state_dir / name
            if path.is_file():
                _add_bytes(tar, f"agent/{name}", _tail(path, LOG_TAIL_BYTES))
                members.append(f"agent/{name}")
        for i, raw in enumerate(log_files):
            path = Path(raw)
            if not path.is_file():
                notes.append(f"log file not found: {raw}")
                continue
            try:
                data = _tail(path, LOG_TAIL_BYTES)
            except OSError as exc:
                notes.append(f"log file not readable: {raw}: {exc.strerror}")
                continue
            name = f"logs/{i:02d}-{path.name}"
            _add_bytes(tar, name, data)
            members.append(name)
        facts = {**system_facts(install_dir), **(extra or {}), "notes": notes}
        _add_bytes(tar, "system.json", json.dumps(facts, indent=2, sort_keys=True, default=str).encode())
        members.append("system.json")
    return Bundle(dest, members, dest.stat().st_size)


def check_attachment(path: str | os.PathLike, *, limit: int = 25 * 1024 * 1024) -> Path:
    p = Path(path)
    if not p.is_file():
        raise SupportRequestError(f"{p}: no such file")
    if p.stat().st_size > limit:
        raise SupportRequestError(f"{p}: larger than {limit} bytes")
    return p


def guess_type(path: Path) -> str:
    import mimetypes

    return mimetypes.guess_type(path.name)[0] or "application/octet-stream"
