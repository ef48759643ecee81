"""``release-server mail poll`` and the worker's ``support-mail-poll`` job: fetch the messages of
an IMAP folder that the desk has not processed yet, and ingest them.

The poll loop (:func:`poll`) is separate from IMAP itself (:class:`ImapFetcher`, over
:mod:`imaplib`), so its rules are tested with an in-memory fetcher: a message is marked
done only after it was stored and committed; one that fails to store stays pending and
is tried again on the next poll, while the others go on. Messages are read with
``BODY.PEEK[]`` so reading never changes their flags.

What "done" means does not depend on ``\\Seen``, which belongs to the people who read
the mailbox in their own clients: with ``IMAP_DONE_FOLDER`` set, processed messages are
moved there (``MOVE``, or ``COPY`` + ``\\Deleted`` + ``EXPUNGE`` on servers without it);
otherwise they get the private keyword ``IMAP_DONE_KEYWORD`` (``$SupportIngested``) and
the poll asks for messages without it. A message fetched twice is stored once all the
same (:func:`~.mailin.ingest` deduplicates on the Message-ID, else the raw bytes).

Folder names travel in IMAP's modified UTF-7 (RFC 3501, 5.1.3), so non-ASCII names work;
a non-ASCII user name or password is sent with ``AUTHENTICATE PLAIN`` in UTF-8 (RFC 4616),
which ``LOGIN`` cannot carry. ``IMAP_CA_FILE`` names the certificates that verify the
server. Only one poll runs at a time across all nodes (:func:`poll_configured` holds a
lease in the database while it runs).
"""
from __future__ import annotations

import base64
import imaplib
import logging
import os
import socket
import ssl
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

from sqlalchemy import or_, update

from ..errors import ConfigError
from .errors import MailFetchError

log = logging.getLogger(__name__)

DEFAULT_DONE_KEYWORD = "$SupportIngested"
POLL_LEASE = "imap-poll"


class Fetcher(Protocol):
    def pending(self, limit: int) -> list[bytes]: ...

    def fetch(self, uid: bytes) -> bytes: ...

    def mark_done(self, uid: bytes) -> None: ...


@dataclass
class PollResult:
    stored: int = 0
    failed: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    skipped: bool = False

    def __str__(self) -> str:
        if self.skipped:
            return "another poll is running; nothing done"
        detail = ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items()))
        return f"{self.stored} stored ({detail or 'none'}), {self.failed} failed"


def poll(fetcher: Fetcher, store: Callable[[bytes], str], *, limit: int = 50) -> PollResult:
    """Ingest up to ``limit`` pending messages; ``store`` commits one and returns its outcome."""
    result = PollResult()
    for uid in fetcher.pending(limit):
        try:
            raw = fetcher.fetch(uid)
            outcome = store(raw)
        except Exception:  # noqa: BLE001 - one message's failure must not stop the others
            log.exception("IMAP message %s could not be stored; it stays pending", uid)
            result.failed += 1
            continue
        fetcher.mark_done(uid)
        result.stored += 1
        result.outcomes[outcome] = result.outcomes.get(outcome, 0) + 1
    return result


# ---------------------------------------------------------------- modified UTF-7

def encode_mailbox_name(name: str) -> str:
    """A folder name in IMAP's modified UTF-7: printable ASCII stays, ``&`` is ``&-``, the rest is
    UTF-16BE in modified base64 (``,`` for ``/``) between ``&`` and ``-``."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            data = "".join(pending).encode("utf-16-be")
            out.append("&" + base64.b64encode(data).decode("ascii").rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return "".join(out)


def decode_mailbox_name(name: str) -> str:
    """The inverse of :func:`encode_mailbox_name`."""
    out: list[str] = []
    i = 0
    while i < len(name):
        ch = name[i]
        end = name.find("-", i + 1) if ch == "&" else -1
        if ch != "&" or end < 0:
            out.append(ch)
            i += 1
            continue
        chunk = name[i + 1:end]
        if not chunk:
            out.append("&")
        else:
            data = chunk.replace(",", "/")
            out.append(base64.b64decode(data + "=" * (-len(data) % 4)).decode("utf-16-be", "replace"))
        i = end + 1
    return "".join(out)


def _quote(folder: str) -> str:
    encoded = encode_mailbox_name(folder)
    return '"' + encoded.replace("\\", "\\\\").replace('"', '\\"') + '"'


# ---------------------------------------------------------------- IMAP

class ImapFetcher:
    """A logged-in IMAP connection with one folder selected (use as a context manager)."""

    def __init__(self, host: str, port: int, user: str, password: str, *, folder: str = "INBOX",
                 use_ssl: bool = True, starttls: bool = False, timeout: float = 60.0,
                 ssl_context: ssl.SSLContext | None = None, ca_file: str | None = None,
                 done_folder: str | None = None, done_keyword: str = DEFAULT_DONE_KEYWORD) -> None:
        self.host, self.port, self.user, self.password = host, port, user, password
        self.folder, self.use_ssl, self.starttls, self.timeout = folder, use_ssl, starttls, timeout
        self.ssl_context, self.ca_file = ssl_context, ca_file
        self.done_folder, self.done_keyword = done_folder or None, done_keyword or DEFAULT_DONE_KEYWORD
        if not all(0x21 <= ord(c) <= 0x7E and c not in '(){%*"\\]' for c in self.done_keyword):
            raise ConfigError(f"IMAP_DONE_KEYWORD must be an IMAP atom, got {done_keyword!r}",
                              field="IMAP_DONE_KEYWORD")
        self.conn: imaplib.IMAP4 | None = None

    @classmethod
    def from_config(cls, config: Any) -> ImapFetcher:
        if not config.get("IMAP_HOST") or not config.get("IMAP_USER"):
            raise ConfigError("IMAP_HOST and IMAP_USER must be set to poll a mailbox", field="IMAP_HOST")
        return cls(config["IMAP_HOST"], int(config.get("IMAP_PORT") or 993), config["IMAP_USER"],
                   config.get("IMAP_PASSWORD") or "", folder=config.get("IMAP_FOLDER") or "INBOX",
                   use_ssl=bool(config.get("IMAP_SSL", True)), starttls=bool(config.get("IMAP_STARTTLS")),
                   ca_file=config.get("IMAP_CA_FILE") or None,
                   done_folder=config.get("IMAP_DONE_FOLDER") or None,
                   done_keyword=config.get("IMAP_DONE_KEYWORD") or DEFAULT_DONE_KEYWORD,
                   timeout=float(config.get("IMAP_TIMEOUT") or 60.0))

    def _context(self) -> ssl.SSLContext:
        if self.ssl_context is not None:
            return self.ssl_context
        try:
            return ssl.create_default_context(cafile=self.ca_file or None)
        except (OSError, ssl.SSLError) as e:
            raise ConfigError(f"cannot read IMAP_CA_FILE {self.ca_file!r}: {e}", field="IMAP_CA_FILE") from e

    def __enter__(self) -> ImapFetcher:
        try:
            if self.use_ssl:
                self.conn = imaplib.IMAP4_SSL(self.host, self.port, ssl_context=self._context(),
                                              timeout=self.timeout)
            else:
                self.conn = imaplib.IMAP4(self.host, self.port, timeout=self.timeout)
                if self.starttls:
                    self.conn.starttls(ssl_context=self._context())
            self._login()
            if self.done_folder:
                self._ensure_folder(self.done_folder)
            typ, data = self.conn.select(_quote(self.folder))
            if typ != "OK":
                raise MailFetchError(f"cannot select IMAP folder {self.folder!r}: {_text(data)}")
        except (imaplib.IMAP4.error, OSError, socket.timeout) as e:
            self.close()
            raise MailFetchError(f"IMAP {self.host}:{self.port}: {_text(e)}") from e
        except BaseException:
            self.close()
            raise
        return self

    def _login(self) -> None:
        assert self.conn is not None
        if self.user.isascii() and self.password.isascii() and "AUTH=PLAIN" not in self.conn.capabilities:
            self.conn.login(self.user, self.password)
            self._refresh_capabilities()
            return
        if "AUTH=PLAIN" not in self.conn.capabilities:
            raise MailFetchError(f"IMAP server {self.host} offers no AUTHENTICATE PLAIN, which a non-ASCII "
                                 "user name or password needs")
        secret = b"\0" + self.user.encode("utf-8") + b"\0" + self.password.encode("utf-8")
        self.conn.authenticate("PLAIN", lambda _challenge: secret)
        self._refresh_capabilities()

    def _refresh_capabilities(self) -> None:
        """Servers announce more (MOVE, UIDPLUS) once logged in; imaplib keeps the first list."""
        assert self.conn is not None
        typ, data = self.conn.capability()
        if typ == "OK" and data and data[-1]:
            self.conn.capabilities = tuple(_text(data[-1]).upper().split())

    def _ensure_folder(self, folder: str) -> None:
        assert self.conn is not None
        typ, data = self.conn.list('""', _quote(folder))
        if typ == "OK" and any(item for item in data if item):
            return
        typ, data = self.conn.create(_quote(folder))
        if typ != "OK":
            raise MailFetchError(f"cannot create IMAP folder {folder!r}: {_text(data)}")

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
            raise MailFetchError(f"IMAP {what} failed: {_text(data)}")
        return data

    def pending(self, limit: int) -> list[bytes]:
        """UIDs of the messages not processed yet (whatever their ``\\Seen`` flag), oldest first."""
        assert self.conn is not None
        criteria = ("ALL",) if self.done_folder else ("UNKEYWORD", self.done_keyword)
        data = self._ok(*self.conn.uid("SEARCH", *criteria), "SEARCH")
        uids = data[0].split() if data and data[0] else []
        return sorted(uids, key=int)[:limit]

    def fetch(self, uid: bytes) -> bytes:
        assert self.conn is not None
        data = self._ok(*self.conn.uid("FETCH", uid, "(BODY.PEEK[])"), "FETCH")
        for item in data:
            if isinstance(item, tuple) and len(item) == 2:
                return bytes(item[1])
        raise MailFetchError(f"IMAP FETCH {uid!r} returned no message")

    def mark_done(self, uid: bytes) -> None:
        assert self.conn is not None
        if not self.done_folder:
            self._ok(*self.conn.uid("STORE", uid, "+FLAGS", f"({self.done_keyword})"), "STORE")
            return
        target = _quote(self.done_folder)
        if "MOVE" in self.conn.capabilities:
            self._ok(*self.conn.uid("MOVE", uid, target), "MOVE")
            return
        self._ok(*self.conn.uid("COPY", uid, target), "COPY")
        self._ok(*self.conn.uid("STORE", uid, "+FLAGS", "(\\Deleted)"), "STORE")
        if "UIDPLUS" in self.conn.capabilities:
            self._ok(*self.conn.uid("EXPUNGE", uid), "UID EXPUNGE")
        else:
            self._ok(*self.conn.expunge(), "EXPUNGE")


def _text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(_text(v) for v in value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


# ---------------------------------------------------------------- one poll at a time

def _take_lease(holder: str, ttl_seconds: float) -> bool:
    from ..db import db
    from ..models_common import utcnow
    from ..worker import WorkerLease

    now = utcnow()
    session = db.new_session(write=True)
    try:
        if session.get(WorkerLease, POLL_LEASE) is None:
            session.add(WorkerLease(name=POLL_LEASE, holder=None, expires_at=None))
            try:
                session.flush()
            except Exception:  # noqa: BLE001 - another node created it at the same moment
                session.rollback()
        taken = session.execute(
            update(WorkerLease)
            .where(WorkerLease.name == POLL_LEASE,
                   or_(WorkerLease.holder.is_(None), WorkerLease.expires_at.is_(None),
                       WorkerLease.expires_at < now))
            .values(holder=holder, expires_at=now + timedelta(seconds=ttl_seconds))).rowcount
        session.commit()
        return taken == 1
    finally:
        session.close()


def _release_lease(holder: str) -> None:
    from ..db import db
    from ..worker import WorkerLease

    session = db.new_session(write=True)
    try:
        session.execute(update(WorkerLease).where(WorkerLease.name == POLL_LEASE, WorkerLease.holder == holder)
                        .values(holder=None, expires_at=None))
        session.commit()
    finally:
        session.close()


def poll_configured(config: Any, store: Callable[[bytes], str], *, limit: int | None = None,
                    fetcher: Fetcher | None = None) -> PollResult:
    """One poll of the configured mailbox, unless another node or process is polling it now."""
    holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    timeout = float(config.get("IMAP_TIMEOUT") or 60.0)
    batch = limit or int(config.get("IMAP_BATCH", 50))
    if not _take_lease(holder, ttl_seconds=max(600.0, timeout * (batch + 2))):
        return PollResult(skipped=True)
    try:
        if fetcher is not None:
            return poll(fetcher, store, limit=batch)
        with ImapFetcher.from_config(config) as imap:
            return poll(imap, store, limit=batch)
    finally:
        _release_lease(holder)
