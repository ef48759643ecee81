"""``release-server mail poll``: fetch unseen messages from an IMAP folder and ingest them.

The poll loop (:func:`poll`) is separate from IMAP itself (:class:`ImapFetcher`, over
:mod:`imaplib`), so its rules are tested with an in-memory fetcher: a message is
marked seen only after it was stored and committed; one that fails to store stays
unseen and is tried again on the next poll, while the others go on. Messages are read
with ``BODY.PEEK[]`` so reading alone never marks them seen.
"""
from __future__ import annotations

import imaplib
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import ConfigError
from .errors import MailFetchError

log = logging.getLogger(__name__)


class Fetcher(Protocol):
    def unseen(self, limit: int) -> list[bytes]: ...

    def fetch(self, uid: bytes) -> bytes: ...

    def mark_seen(self, uid: bytes) -> None: ...


@dataclass
class PollResult:
    stored: int = 0
    failed: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)

    def __str__(self) -> str:
        detail = ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items()))
        return f"{self.stored} stored ({detail or 'none'}), {self.failed} failed"


def poll(fetcher: Fetcher, store: Callable[[bytes], str], *, limit: int = 50) -> PollResult:
    """Ingest up to ``limit`` unseen messages; ``store`` commits one and returns its outcome."""
    result = PollResult()
    for uid in fetcher.unseen(limit):
        try:
            raw = fetcher.fetch(uid)
            outcome = store(raw)
        except Exception:  # noqa: BLE001 - one message's failure must not stop the others
            log.exception("IMAP message %s could not be stored; it stays unseen", uid)
            result.failed += 1
            continue
        fetcher.mark_seen(uid)
        result.stored += 1
        result.outcomes[outcome] = result.outcomes.get(outcome, 0) + 1
    return result


class ImapFetcher:
    """A logged-in IMAP connection with one folder selected (use as a context manager)."""

    def __init__(self, host: str, port: int, user: str, password: str, *, folder: str = "INBOX",
                 use_ssl: bool = True, starttls: bool = False, timeout: float = 60.0,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.host, self.port, self.user, self.password = host, port, user, password
        self.folder, self.use_ssl, self.starttls, self.timeout = folder, use_ssl, starttls, timeout
        self.ssl_context = ssl_context
        self.conn: imaplib.IMAP4 | None = None

    @classmethod
    def from_config(cls, config: Any) -> ImapFetcher:
        if not config.get("IMAP_HOST") or not config.get("IMAP_USER"):
            raise ConfigError("IMAP_HOST and IMAP_USER must be set to poll a mailbox", field="IMAP_HOST")
        return cls(config["IMAP_HOST"], int(config.get("IMAP_PORT") or 993), config["IMAP_USER"],
                   config.get("IMAP_PASSWORD") or "", folder=config.get("IMAP_FOLDER") or "INBOX",
                   use_ssl=bool(config.get("IMAP_SSL", True)), starttls=bool(config.get("IMAP_STARTTLS")))

    def __enter__(self) -> ImapFetcher:
        ctx = self.ssl_context or ssl.create_default_context()
        try:
            if self.use_ssl:
                self.conn = imaplib.IMAP4_SSL(self.host, self.port, ssl_context=ctx, timeout=self.timeout)
            else:
                self.conn = imaplib.IMAP4(self.host, self.port, timeout=self.timeout)
                if self.starttls:
                    self.conn.starttls(ssl_context=ctx)
            self.conn.login(self.user, self.password)
            typ, _ = self.conn.select(_quote(self.folder))
            if typ != "OK":
                raise MailFetchError(f"cannot select IMAP folder {self.folder!r}")
        except (imaplib.IMAP4.error, OSError) as e:
            self.close()
            raise MailFetchError(f"IMAP {self.host}:{self.port}: {e}") from e
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.conn is None:
            return
        try:
            try:
                self.conn.close()
            except (imaplib.IMAP4.error, OSError):
                pass
            self.conn.logout()
        except (imaplib.IMAP4.error, OSError):
            pass
        self.conn = None

    def _ok(self, typ: str, data: Any, what: str) -> Any:
        if typ != "OK":
            raise MailFetchError(f"IMAP {what} failed: {data!r}")
        return data

    def unseen(self, limit: int) -> list[bytes]:
        assert self.conn is not None
        data = self._ok(*self.conn.uid("SEARCH", None, "UNSEEN"), "SEARCH")
        uids = data[0].split() if data and data[0] else []
        return uids[:limit]

    def fetch(self, uid: bytes) -> bytes:
        assert self.conn is not None
        data = self._ok(*self.conn.uid("FETCH", uid, "(BODY.PEEK[])"), "FETCH")
        for item in data:
            if isinstance(item, tuple) and len(item) == 2:
                return bytes(item[1])
        raise MailFetchError(f"IMAP FETCH {uid!r} returned no message")

    def mark_seen(self, uid: bytes) -> None:
        assert self.conn is not None
        self._ok(*self.conn.uid("STORE", uid, "+FLAGS", "(\\Seen)"), "STORE")


def _quote(folder: str) -> str:
    return folder if folder.isalnum() else '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'
