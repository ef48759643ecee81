"""Configuration: defaults < instance file < environment.

The instance file is ``<instance>/config.toml``; environment variables are
``RELEASE_SERVER_<KEY>`` (and the conventional ``DATABASE_URL``). Each value is
parsed to the type of its default, so ``RELEASE_SERVER_MAX_ARTIFACT_SIZE=abc`` fails
at start-up with a message naming the variable instead of failing later. Sizes (the keys
in :data:`SIZE_KEYS`) are bytes, written as an integer or with a unit: ``500MB``
(powers of 1000), ``2GiB`` (powers of 1024), ``25 MiB``.
"""
from __future__ import annotations

import os
import re
import secrets
import tomllib
from pathlib import Path
from typing import Any

from .errors import ConfigError

ENV_PREFIX = "RELEASE_SERVER_"

#: Every setting with its default and therefore its type. ``None`` defaults are strings.
DEFAULTS: dict[str, Any] = {
    "SECRET_KEY": None,
    "DATABASE_URL": None,  # default: sqlite under the instance folder
    "DATABASE_ECHO": False,
    "REQUEST_THREADS": 1,  # request threads of this process (gunicorn_conf sets it per worker from --threads)
    "DATABASE_POOL_SIZE": 10,  # connections kept open per process; at most REQUEST_THREADS + DATABASE_POOL_EXTRA
    "DATABASE_POOL_EXTRA": 4,  # connections beyond one per request thread (background writers)
    "STORAGE_BACKEND": "local",  # "local" or "s3"
    "STORAGE_PATH": None,  # default: <instance>/blobs
    "UPLOAD_TMP_DIR": None,  # default: <instance>/uploads (same filesystem as blobs)
    "STORAGE_SWEEP_GRACE_SECONDS": 86400,  # partial uploads and unreferenced blobs older than this are removed
    "STORAGE_SWEEP_INTERVAL": 3600,  # seconds between the worker's sweeps
    "S3_BUCKET": "release-server",
    "S3_ENDPOINT_URL": None,
    "S3_REGION": "us-east-1",
    "S3_ACCESS_KEY_ID": None,
    "S3_SECRET_ACCESS_KEY": None,
    "S3_PREFIX": "",
    "S3_PRESIGNED_DOWNLOADS": False,
    "S3_PRESIGNED_TTL": 300,
    "S3_MULTIPART_CHUNK_SIZE": 8 * 1024 * 1024,
    # behind nginx: local-disk downloads answer "X-Accel-Redirect: <prefix>/<storage key>" and the proxy
    # sends the file from an internal location aliased to STORAGE_PATH (README, "Downloads")
    "DOWNLOAD_ACCEL_REDIRECT": None,
    # behind proxies: how many of them append to X-Forwarded-For / set X-Forwarded-Proto (0: none, the
    # client is the peer). nginx in front of every node: 1, so login throttling sees the real address.
    "TRUSTED_PROXIES": 0,
    "MAX_ARTIFACT_SIZE": 2 * 1024 * 1024 * 1024,
    "MAX_CHANGELOG_CHARS": 200_000,
    "PUBLIC_URL": "http://127.0.0.1:8000",
    "PAGE_SIZE_MAX": 200,
    # operations: logs, metrics, readiness (see release_server/logs.py, metrics.py, health.py)
    "LOG_FORMAT": "text",  # "text" or "json" (one object per line)
    "LOG_LEVEL": "INFO",
    "LOG_LIBRARIES": False,  # true: libraries (python-tuf, Alembic, ...) log below warning too
    "METRICS_TOKEN": None,  # set: /metrics needs "Authorization: Bearer <token>"; unset: loopback only
    "READY_TUF_MARGIN": 0.1,  # /readyz fails when a TUF role is within this share of its lifetime of expiry
    # fleet and the check endpoint
    "POLL_INTERVAL_SECONDS": 3600,
    "STALE_AFTER_HOURS": 48,
    "LAST_SEEN_FLUSH_SECONDS": 10.0,  # checks' last-seen and inventory are written in batches this often
    "LAST_SEEN_PROMPT_SECONDS": 0.05,  # a changed inventory is written this soon
    "INSTALLATION_AUTH_CACHE_SIZE": 20_000,  # installation credentials cached per process
    "CATALOG_RECHECK_SECONDS": 1.0,
    "WARM_CACHES": True,  # the app factory loads the catalog and compiles the check's queries (warmup.py)
    "ROLLOUT_ADVANCE_SECONDS": 60.0,
    "ADOPTION_COUNT_INTERVAL": 900.0,  # the worker looks this often for ended days of adoption not counted yet
    # web console and portal: login throttling
    "LOGIN_MAX_FAILURES": 5,  # per (account, address) before delays start
    "LOGIN_WINDOW_SECONDS": 900,  # failures are forgotten this long after the last one
    "LOGIN_MAX_FAILURES_PER_ADDRESS": 30,  # per address over all accounts before delays start
    "LOGIN_DELAY_SECONDS": 30.0,  # the first delay; doubles with each further failure
    "LOGIN_MAX_DELAY_SECONDS": 900.0,
    # TUF repository (see README "Signing (TUF)"); expiries in seconds
    "TUF_KEY_DIR": None,  # default: <instance>/keys
    "TUF_TARGETS_KEY_URI": None,
    "TUF_SNAPSHOT_KEY_URI": None,
    "TUF_TIMESTAMP_KEY_URI": None,
    "TUF_ROOT_EXPIRY": 31_536_000,
    "TUF_TARGETS_EXPIRY": 7_776_000,
    "TUF_SNAPSHOT_EXPIRY": 604_800,
    "TUF_TIMESTAMP_EXPIRY": 86_400,
    "TUF_REFRESH_MARGIN": 0.25,
    "TUF_REFRESH_INTERVAL": 600,
    "TUF_BIN_BITS": 8,
    "TUF_EXPORT_DEST": None,
    "TUF_EXPORT_INTERVAL": 60,
    "TUF_METADATA_CACHE_BYTES": 32 * 1024 * 1024,  # per process: versioned metadata kept in memory
    # support desk: tickets, attachments, mail (see release_server/support/__init__.py)
    "TICKET_PREFIX": "OTK",
    "REOPEN_DAYS": 14,  # a reply within this many days of 'processed' reopens; later ones open a linked ticket
    "AUTO_CLOSE_DAYS": 7,  # processed tickets close themselves after this many days
    "MAX_ATTACHMENT_SIZE": 25 * 1024 * 1024,
    "MAX_ATTACHMENTS_PER_TICKET": 50,
    "MAX_MAIL_SIZE": 40 * 1024 * 1024,  # inbound raw message limit
    "MAIL_BACKEND": "console",  # "console" (development: written to the log) or "smtp"
    "SMTP_HOST": "localhost",
    "SMTP_PORT": 25,
    "SMTP_STARTTLS": False,
    "SMTP_TLS": False,  # implicit TLS (SMTPS, usually port 465)
    "SMTP_USER": None,
    "SMTP_PASSWORD": None,
    "SMTP_TIMEOUT": 30.0,  # each network operation
    "SMTP_DEADLINE": 0.0,  # the whole SMTP conversation (0: four times SMTP_TIMEOUT, at least 60 s)
    "SMTP_CA_FILE": None,  # certificates that verify the SMTP server (default: the system's)
    "MAIL_FROM": None,  # default: SUPPORT_ADDRESS
    "SUPPORT_ADDRESS": "support@localhost",
    "MAIL_OUTBOX_INTERVAL": 30.0,  # worker job period (seconds)
    "MAIL_MAX_ATTEMPTS": 12,  # then the outbound mail is marked failed
    "AUTO_REPLY_LIMIT_PER_HOUR": 10,  # automatic mails to one address per hour (mail-loop brake)
    "IMAP_HOST": None,
    "IMAP_PORT": 993,
    "IMAP_SSL": True,
    "IMAP_STARTTLS": False,
    "IMAP_USER": None,
    "IMAP_PASSWORD": None,
    "IMAP_FOLDER": "INBOX",
    "IMAP_BATCH": 50,
    "IMAP_CA_FILE": None,  # certificates that verify the IMAP server (default: the system's)
    "IMAP_DONE_FOLDER": None,  # processed mail moves here; unset: it gets IMAP_DONE_KEYWORD instead
    "IMAP_DONE_KEYWORD": "$SupportIngested",
    "IMAP_TIMEOUT": 60.0,
    "IMAP_POLL_INTERVAL": 60.0,  # worker job period (seconds), when IMAP_HOST is set
}


#: Settings that are sizes in bytes and accept units.
SIZE_KEYS = frozenset({"MAX_ARTIFACT_SIZE", "MAX_ATTACHMENT_SIZE", "MAX_MAIL_SIZE", "S3_MULTIPART_CHUNK_SIZE"})

_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3, "t": 1000**4, "tb": 1000**4,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")


def parse_size(text: str) -> int:
    """``"2GiB"`` -> 2147483648, ``"500MB"`` -> 500000000, ``"1024"`` -> 1024; ValueError otherwise."""
    m = _SIZE_RE.match(text.replace("_", ""))
    if not m or m.group(2).lower() not in _SIZE_UNITS:
        raise ValueError(f"not a size: {text!r}")
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])


def _size_error(key: str, raw: Any, source: str) -> ConfigError:
    return ConfigError(f"{source}: expected a size in bytes such as 2GiB, 500MB or 1048576, got {raw!r}; "
                       f"fix {key}", field=key)


def parse_value(key: str, raw: str, default: Any) -> Any:
    """Parse an environment string to the type of ``default``; raise ConfigError if it won't."""
    if key in SIZE_KEYS:
        try:
            return parse_size(raw)
        except ValueError:
            raise _size_error(key, raw, f"{ENV_PREFIX}{key}") from None
    if isinstance(default, bool):
        lowered = raw.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off", ""}:
            return False
        raise ConfigError(f"{ENV_PREFIX}{key}: expected a boolean (true/false), got {raw!r}", field=key)
    if isinstance(default, int):
        try:
            return int(raw.strip().replace("_", ""))
        except ValueError:
            raise ConfigError(f"{ENV_PREFIX}{key}: expected an integer, got {raw!r}", field=key) from None
    if isinstance(default, float):
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"{ENV_PREFIX}{key}: expected a number, got {raw!r}", field=key) from None
    return raw


def _check_type(key: str, value: Any, default: Any, source: str) -> Any:
    if default is None or value is None:
        return value
    if key in SIZE_KEYS and isinstance(value, str):
        try:
            return parse_size(value)
        except ValueError:
            raise _size_error(key, value, f"{source}: {key}") from None
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: {key} must be true or false, got {value!r}", field=key)
    elif isinstance(default, int) and (not isinstance(value, int) or isinstance(value, bool)):
        raise ConfigError(f"{source}: {key} must be an integer, got {value!r}", field=key)
    return value


def load_config(instance_path: str | os.PathLike, environ: dict[str, str] | None = None) -> dict[str, Any]:
    """Build the configuration for an instance folder: defaults, then file, then environment."""
    environ = dict(os.environ if environ is None else environ)
    instance = Path(instance_path)
    config: dict[str, Any] = dict(DEFAULTS)

    config_file = instance / "config.toml"
    if config_file.exists():
        try:
            with config_file.open("rb") as fh:
                data = tomllib.load(fh)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{config_file}: not valid TOML: {e}") from e
        for key, value in data.items():
            key = key.upper()
            config[key] = _check_type(key, value, DEFAULTS.get(key), str(config_file))

    if environ.get("DATABASE_URL"):
        config["DATABASE_URL"] = environ["DATABASE_URL"]
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        key = name[len(ENV_PREFIX):]
        config[key] = parse_value(key, raw, DEFAULTS.get(key))
    return config


def finalise(config: dict[str, Any], instance_path: str) -> None:
    """Fill the defaults that depend on the instance folder and check cross-field rules."""
    instance = Path(instance_path)
    if not config.get("DATABASE_URL"):
        config["DATABASE_URL"] = f"sqlite:///{instance / 'release-server.db'}"
    if not config.get("STORAGE_PATH"):
        config["STORAGE_PATH"] = str(instance / "blobs")
    if not config.get("UPLOAD_TMP_DIR"):
        config["UPLOAD_TMP_DIR"] = str(Path(config["STORAGE_PATH"]) / "incoming")
    if config["STORAGE_BACKEND"] not in ("local", "s3"):
        raise ConfigError(
            f"STORAGE_BACKEND must be 'local' or 's3', got {config['STORAGE_BACKEND']!r}", field="STORAGE_BACKEND")
    if str(config.get("LOG_FORMAT", "text")).lower() not in ("text", "json"):
        raise ConfigError(f"LOG_FORMAT must be 'text' or 'json', got {config['LOG_FORMAT']!r}", field="LOG_FORMAT")
    if config["MAX_ARTIFACT_SIZE"] <= 0:
        raise ConfigError("MAX_ARTIFACT_SIZE must be positive", field="MAX_ARTIFACT_SIZE")
    if not config.get("SECRET_KEY"):
        config["SECRET_KEY"] = _instance_secret(instance)
    # Multipart overhead (metadata part, boundaries) on top of the artifact itself.
    config["MAX_CONTENT_LENGTH"] = config["MAX_ARTIFACT_SIZE"] + 4 * 1024 * 1024


def _instance_secret(instance: Path) -> str:
    """A per-instance secret kept in ``<instance>/secret_key`` (created on first use, mode 0600)."""
    path = instance / "secret_key"
    if path.exists():
        return path.read_text().strip()
    from .private_files import private_dirs

    private_dirs(instance)
    value = secrets.token_urlsafe(48)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it first
        return path.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(value)
    return value
