"""Outbound mail transports behind one small contract.

:class:`MailBackend` has one job: hand a finished :class:`email.message.EmailMessage`
to something that delivers it, or raise :class:`MailDeliveryError` saying whether
trying again later may help. Two implementations, chosen by ``MAIL_BACKEND``:

* ``smtp`` - :class:`SMTPBackend`: plain, STARTTLS or implicit TLS, optional login;
* ``console`` - :class:`ConsoleBackend`: writes the message to a stream (standard
  error by default) for development; nothing leaves the machine.

The same contract tests run over both (tests/unit/support/test_support_mail_backends.py).
"""
from __future__ import annotations

import abc
import smtplib
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any, TextIO

from ..errors import ConfigError
from .errors import MailDeliveryError


#: Called once the transport has accepted the message, before the connection is closed.
OnAccepted = Callable[[], None]


class MailBackend(abc.ABC):
    name: str = "abstract"
    #: A send never takes longer than this (the outbox claims a message for longer).
    max_send_seconds: float = 30.0

    @abc.abstractmethod
    def send(self, message: EmailMessage, on_accepted: OnAccepted | None = None) -> None:
        """Deliver one message to every recipient in its To/Cc headers.

        ``on_accepted`` runs as soon as the transport has taken the message (for SMTP:
        the server's answer to the end of DATA), before anything else can fail or hang,
        so the caller records the hand-off then; an exception it raises propagates.
        Raises :class:`MailDeliveryError` (``temporary`` True when a retry may succeed,
        ``refused`` naming recipients refused by the server).
        """


class ConsoleBackend(MailBackend):
    """Writes each message, as it would go on the wire, to a text stream."""

    name = "console"

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream
        self._lock = threading.Lock()

    def send(self, message: EmailMessage, on_accepted: OnAccepted | None = None) -> None:
        if not message.get_all("To"):
            raise MailDeliveryError("message has no recipient", temporary=False)
        out = self.stream if self.stream is not None else sys.stderr
        text = message.as_string()
        with self._lock:
            out.write(f"-------- mail to {message['To']} --------\n{text}\n-------- end of mail --------\n")
            out.flush()
        if on_accepted is not None:
            on_accepted()


class SMTPBackend(MailBackend):
    """SMTP submission: ``tls`` for implicit TLS (port 465), ``starttls`` to upgrade, login if a user is set.

    ``timeout`` bounds each network operation and ``deadline`` the whole conversation: a
    server that answers byte by byte is cut off then, so a send always ends before the
    outbox's claim on the message does. ``ca_file`` names the certificates that verify
    the server (the system's when unset).
    """

    name = "smtp"

    def __init__(self, host: str, port: int = 25, *, starttls: bool = False, tls: bool = False,
                 user: str | None = None, password: str | None = None, timeout: float = 30.0,
                 ssl_context: ssl.SSLContext | None = None, deadline: float | None = None,
                 ca_file: str | None = None) -> None:
        if starttls and tls:
            raise ConfigError("SMTP_STARTTLS and SMTP_TLS exclude each other", field="SMTP_TLS")
        self.host, self.port, self.starttls, self.tls = host, port, starttls, tls
        self.user, self.password, self.timeout = user, password, timeout
        self.ssl_context = ssl_context
        self.ca_file = ca_file
        self.deadline = deadline if deadline is not None else max(4 * timeout, 60.0)
        self.max_send_seconds = self.deadline

    def _context(self) -> ssl.SSLContext:
        if self.ssl_context is not None:
            return self.ssl_context
        try:
            return ssl.create_default_context(cafile=self.ca_file or None)
        except (OSError, ssl.SSLError) as e:
            raise ConfigError(f"cannot read SMTP_CA_FILE {self.ca_file!r}: {e}", field="SMTP_CA_FILE") from e

    def _connect(self) -> smtplib.SMTP:
        ctx = self._context()
        if self.tls:
            conn: smtplib.SMTP = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=ctx)
        else:
            conn = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        try:
            conn.ehlo_or_helo_if_needed()
            if self.starttls:
                conn.starttls(context=ctx)
                conn.ehlo()
            if self.user:
                conn.login(self.user, self.password or "")
        except BaseException:
            conn.close()
            raise
        return conn

    def check_connection(self) -> None:
        """Connect (TLS and login as configured) and quit; raises what connecting raises."""
        conn = self._connect()
        try:
            conn.quit()
        except (smtplib.SMTPException, OSError):
            conn.close()

    def send(self, message: EmailMessage, on_accepted: OnAccepted | None = None) -> None:
        if not message.get_all("To"):
            raise MailDeliveryError("message has no recipient", temporary=False)
        watchdog = _Watchdog(self.deadline)
        try:
            try:
                conn = self._connect()
            except BaseException as e:
                raise _delivery_error(e, self, watchdog) from e
            watchdog.watch(conn)
            try:
                try:
                    refused = conn.send_message(message)
                except BaseException as e:
                    raise _delivery_error(e, self, watchdog) from e
                if refused:
                    raise MailDeliveryError(f"some recipients refused: {_describe(refused)}",
                                            temporary=all(400 <= c < 500 for c, _ in refused.values()),
                                            refused=_refused(refused))
                if on_accepted is not None:
                    on_accepted()
            finally:
                try:
                    conn.quit()
                except (smtplib.SMTPException, OSError):
                    conn.close()
        finally:
            watchdog.cancel()


class _Watchdog:
    """Shuts the connection's socket down when the deadline passes (a blocked read then returns)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._timer: threading.Timer | None = None
        self._started = time.monotonic()

    def watch(self, conn: smtplib.SMTP) -> None:
        def expire() -> None:
            self.expired = True
            sock = getattr(conn, "sock", None)
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        remaining = self.seconds - (time.monotonic() - self._started)
        self._timer = threading.Timer(max(remaining, 0.0), expire)
        self._timer.daemon = True
        self._timer.start()

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


def _delivery_error(e: BaseException, backend: SMTPBackend, watchdog: _Watchdog) -> BaseException:
    if isinstance(e, MailDeliveryError) or not isinstance(e, Exception) or isinstance(e, ConfigError):
        return e
    if watchdog.expired:
        return MailDeliveryError(f"SMTP server {backend.host}:{backend.port} did not finish within "
                                 f"{backend.deadline:g} s")
    if isinstance(e, smtplib.SMTPAuthenticationError):
        return MailDeliveryError(f"SMTP login refused: {e.smtp_code} {_text(e.smtp_error)}")
    if isinstance(e, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in e.recipients.values()]
        return MailDeliveryError(f"recipients refused: {_describe(e.recipients)}",
                                 temporary=all(400 <= c < 500 for c in codes), refused=_refused(e.recipients))
    if isinstance(e, smtplib.SMTPResponseException):
        return MailDeliveryError(f"SMTP error {e.smtp_code}: {_text(e.smtp_error)}", temporary=e.smtp_code < 500)
    if isinstance(e, (smtplib.SMTPException, OSError, socket.timeout)):
        return MailDeliveryError(f"cannot reach SMTP server {backend.host}:{backend.port}: {e}")
    return e


def _refused(recipients: dict[str, tuple[int, bytes | str]]) -> dict[str, tuple[int, str]]:
    return {addr: (int(code), _text(reply)) for addr, (code, reply) in recipients.items()}


def _describe(recipients: dict[str, tuple[int, bytes | str]]) -> str:
    return "; ".join(f"{addr}: {code} {_text(reply)}" for addr, (code, reply) in recipients.items())


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def backend_from_config(config: Any) -> MailBackend:
    kind = config.get("MAIL_BACKEND", "console")
    if kind == "smtp":
        return SMTPBackend(config.get("SMTP_HOST") or "localhost", int(config.get("SMTP_PORT") or 25),
                           starttls=bool(config.get("SMTP_STARTTLS")), tls=bool(config.get("SMTP_TLS")),
                           user=config.get("SMTP_USER"), password=config.get("SMTP_PASSWORD"),
                           timeout=float(config.get("SMTP_TIMEOUT") or 30.0),
                           deadline=float(config["SMTP_DEADLINE"]) if config.get("SMTP_DEADLINE") else None,
                           ca_file=config.get("SMTP_CA_FILE") or None)
    if kind == "console":
        return ConsoleBackend()
    raise ConfigError(f"MAIL_BACKEND must be 'console' or 'smtp', got {kind!r}", field="MAIL_BACKEND")
