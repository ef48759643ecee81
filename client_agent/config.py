"""The agent's configuration and the files of its state directory.

Everything the agent knows lives in one private (0700) state directory, each
file written atomically (temporary file, ``os.replace``)::

    config.json       AgentConfig: the server URL (its only home), install dir, polling, window, log files
    enrollment.json   installation id, its own token, the TUF URLs and trusted root (0600); a
                      ``server_url`` left in it by an older agent is ignored
    status.json       last check: when, result, offers, next check
    releases.json     TUF target path of each installed release (for the yanked check)
    tuf/              TUF metadata cache of the Updater
    downloads/        partial and verified artifacts
    outbox/           reports waiting for the server's acknowledgement
    agent.log         the agent's own log; hooks.log the hooks' output
    installed.json, history.json, journal.json   the installer's state
    agent.lock        single-instance lock

The state directory defaults to ``/var/lib/client-agent`` and can be changed
with ``--state-dir`` or ``CLIENT_AGENT_STATE_DIR``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from client_agent.errors import AgentError, StateError
from client_agent.fsutil import atomic_write_json, make_private_dir, read_json

DEFAULT_STATE_DIR = "/var/lib/client-agent"
STATE_DIR_ENV = "CLIENT_AGENT_STATE_DIR"
CONFIG_NAME = "config.json"
ENROLLMENT_NAME = "enrollment.json"
STATUS_NAME = "status.json"
RELEASES_NAME = "releases.json"
LOG_NAME = "agent.log"
LOCK_NAME = "agent.lock"
AGENT_COMPONENT = "client-agent"


class ConfigError(AgentError):
    """The configuration file or a command-line setting is invalid."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"invalid setting {field!r}: {reason}")
        self.field = field
        self.reason = reason


class NotEnrolledError(AgentError):
    """The state directory holds no enrollment (run ``client-agent enroll`` first)."""

    def __init__(self, state_dir: Path | str) -> None:
        super().__init__(f"this machine is not enrolled (no {ENROLLMENT_NAME} in {str(state_dir)!r}); "
                         "run 'client-agent enroll' first")
        self.state_dir = str(state_dir)


class AlreadyEnrolledError(AgentError):
    """``enroll`` was run on a state directory that is already enrolled, without ``--force``."""

    def __init__(self, state_dir: Path | str, installation_id: str) -> None:
        super().__init__(f"already enrolled as installation {installation_id} in {str(state_dir)!r}; "
                         "use --force to enroll again")
        self.state_dir = str(state_dir)
        self.installation_id = installation_id


@dataclass
class AgentConfig:
    """Settings of the agent, stored as ``config.json`` in the state directory.

    server_url:          base URL of the release server (``https://updates.example.com``).
    install_dir:         where components are installed (``<install_dir>/<component>/current``).
    channel:             release channel asked for at enrollment (the server decides afterwards).
    components:          components this installation runs; those not installed yet get
                         their first release (installed ones are always checked).
    self_update:         also update the agent itself (the component ``client-agent``).
    poll_interval:       seconds between checks; None follows the server's answer.
    backoff_base:        first retry delay after an error, in seconds.
    backoff_cap:         largest retry delay, in seconds.
    request_timeout:     seconds to wait for the server to answer (connect and each read).
    maintenance_window:  None follows the server; "any" installs at any time; otherwise a
                         window like "01:00-05:00" or "sat-sun 00:00-06:00" (local time).
    keep_releases:       releases kept on disk per component.
    log_files:           files of the application collected when support asks for logs.
    """

    server_url: str
    install_dir: str
    channel: str = "stable"
    components: list[str] = field(default_factory=list)
    self_update: bool = True
    poll_interval: float | None = None
    backoff_base: float = 30.0
    backoff_cap: float = 3600.0
    request_timeout: float = 30.0
    maintenance_window: str | None = None
    keep_releases: int = 3
    log_files: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not isinstance(self.server_url, str) or not self.server_url.startswith(("http://", "https://")):
            raise ConfigError("server_url", f"expected an http(s) URL, got {self.server_url!r}")
        self.server_url = self.server_url.rstrip("/")
        if not isinstance(self.install_dir, str) or not os.path.isabs(self.install_dir):
            raise ConfigError("install_dir", f"expected an absolute path, got {self.install_dir!r}")
        for name in ("backoff_base", "backoff_cap", "request_timeout"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise ConfigError(name, f"expected a positive number, got {value!r}")
        if self.poll_interval is not None and (not isinstance(self.poll_interval, (int, float))
                                               or self.poll_interval <= 0):
            raise ConfigError("poll_interval", f"expected a positive number or null, got {self.poll_interval!r}")
        if not isinstance(self.keep_releases, int) or self.keep_releases < 2:
            raise ConfigError("keep_releases", f"expected an integer of at least 2, got {self.keep_releases!r}")
        if self.maintenance_window not in (None, "any"):
            from client_agent.agent import parse_window  # local: avoid an import cycle

            try:
                parse_window(self.maintenance_window)
            except ValueError as exc:
                raise ConfigError("maintenance_window", str(exc)) from exc
        if not isinstance(self.components, list) or not all(isinstance(c, str) for c in self.components):
            raise ConfigError("components", "expected a list of component names")
        if not isinstance(self.log_files, list) or not all(isinstance(c, str) for c in self.log_files):
            raise ConfigError("log_files", "expected a list of paths")

    @classmethod
    def from_dict(cls, data: Any) -> AgentConfig:
        if not isinstance(data, dict):
            raise ConfigError(CONFIG_NAME, "expected a JSON object")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(unknown[0], "unknown setting")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ConfigError(CONFIG_NAME, str(exc)) from exc

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Enrollment:
    """What enrollment gave this installation: its identity, its own token and the trusted root."""

    installation_id: str
    token: str
    customer: str
    channel: str
    tuf_metadata_url: str
    tuf_targets_url: str
    root_json: dict[str, Any] | None
    enrolled_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    @classmethod
    def from_dict(cls, data: Any, path: Path) -> Enrollment:
        try:
            return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})
        except (TypeError, KeyError) as exc:
            raise StateError(path, f"malformed enrollment: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class StateDir:
    """Paths and readers/writers of the files in the agent's state directory."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path).absolute()

    @classmethod
    def resolve(cls, explicit: str | None) -> StateDir:
        return cls(explicit or os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR)

    def ensure(self) -> Path:
        return make_private_dir(self.path)

    # paths
    @property
    def config_file(self) -> Path:
        return self.path / CONFIG_NAME

    @property
    def enrollment_file(self) -> Path:
        return self.path / ENROLLMENT_NAME

    @property
    def status_file(self) -> Path:
        return self.path / STATUS_NAME

    @property
    def releases_file(self) -> Path:
        return self.path / RELEASES_NAME

    @property
    def log_file(self) -> Path:
        return self.path / LOG_NAME

    @property
    def lock_file(self) -> Path:
        return self.path / LOCK_NAME

    @property
    def tuf_dir(self) -> Path:
        return self.path / "tuf"

    @property
    def downloads_dir(self) -> Path:
        return self.path / "downloads"

    @property
    def outbox_dir(self) -> Path:
        return self.path / "outbox"

    # config
    def load_config(self) -> AgentConfig:
        try:
            data = read_json(self.config_file)
        except FileNotFoundError:
            raise NotEnrolledError(self.path) from None
        return AgentConfig.from_dict(data)

    def save_config(self, config: AgentConfig) -> None:
        self.ensure()
        atomic_write_json(self.config_file, config.to_dict())

    # enrollment
    def load_enrollment(self) -> Enrollment:
        try:
            data = read_json(self.enrollment_file)
        except FileNotFoundError:
            raise NotEnrolledError(self.path) from None
        if not isinstance(data, dict):
            raise StateError(self.enrollment_file, "expected a JSON object")
        return Enrollment.from_dict(data, self.enrollment_file)

    def enrollment_or_none(self) -> Enrollment | None:
        try:
            return self.load_enrollment()
        except NotEnrolledError:
            return None

    def save_enrollment(self, enrollment: Enrollment) -> None:
        self.ensure()
        atomic_write_json(self.enrollment_file, enrollment.to_dict(), mode=0o600)

    # status
    def load_status(self) -> dict[str, Any]:
        data = read_json(self.status_file, default={})
        return data if isinstance(data, dict) else {}

    def update_status(self, **changes: Any) -> dict[str, Any]:
        status = self.load_status()
        status.update(changes)
        atomic_write_json(self.status_file, status)
        return status

    # installed releases' target paths
    def load_releases(self) -> dict[str, dict[str, str]]:
        data = read_json(self.releases_file, default={})
        if not isinstance(data, dict):
            return {}
        return {str(c): {str(v): str(p) for v, p in vs.items()} for c, vs in data.items() if isinstance(vs, dict)}

    def record_release(self, component: str, version: str, target_path: str) -> None:
        releases = self.load_releases()
        releases.setdefault(component, {})[version] = target_path
        atomic_write_json(self.releases_file, releases)
