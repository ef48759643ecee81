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
from email.message import EmailMessage
from typing import Any, TextIO

from ..errors import ConfigError
from .errors import MailDeliveryError


class MailBackend(abc.ABC):
    name: str = "abstract"

    @abc.abstractmethod
    def send(self, message: EmailMessage) -> None:
        """Deliver one message to every recipient in its To/Cc headers.

        Raises :class:`MailDeliveryError` (``temporary`` True when a retry may succeed).
        """


class ConsoleBackend(MailBackend):
    """Writes each message, as it would go on the wire, to a text stream."""

    name = "console"

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream
        self._lock = threading.Lock()

    def send(self, message: EmailMessage) -> None:
        if not message.get_all("To"):
            raise MailDeliveryError("message has no recipient", temporary=False)
        out = self.stream if self.stream is not None else sys.stderr
        text = message.as_string()
        with self._lock:
            out.write(f"-------- mail to {message['To']} --------\n{text}\n-------- end of mail --------\n")
            out.flush()


class SMTPBackend(MailBackend):
    """SMTP submission: ``tls`` for implicit TLS (port 465), ``starttls`` to upgrade, login if a user is set."""

    name = "smtp"

    def __init__(self, host: str, port: int = 25, *, starttls: bool = False, tls: bool = False,
                 user: str | None = None, password: str | None = None, timeout: float = 30.0,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        if starttls and tls:
            raise ConfigError("SMTP_STARTTLS and SMTP_TLS exclude each other", field="SMTP_TLS")
        self.host, self.port, self.starttls, self.tls = host, port, starttls, tls
        self.user, self.password, self.timeout = user, password, timeout
        self.ssl_context = ssl_context

    def _connect(self) -> smtplib.SMTP:
        ctx = self.ssl_context or ssl.create_default_context()
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

    def send(self, message: EmailMessage) -> None:
        if not message.get_all("To"):
            raise MailDeliveryError("message has no recipient", temporary=False)
        try:
            conn = self._connect()
            try:
                refused = conn.send_message(message)
            finally:
                try:
                    conn.quit()
                except (smtplib.SMTPException, OSError):
                    conn.close()
        except smtplib.SMTPAuthenticationError as e:
            raise MailDeliveryError(f"SMTP login refused: {e.smtp_code} {_text(e.smtp_error)}") from e
        except smtplib.SMTPRecipientsRefused as e:
            codes = [code for code, _ in e.recipients.values()]
            raise MailDeliveryError(f"recipients refused: {e.recipients!r}",
                                    temporary=all(400 <= c < 500 for c in codes)) from e
        except smtplib.SMTPResponseException as e:
            raise MailDeliveryError(f"SMTP error {e.smtp_code}: {_text(e.smtp_error)}",
                                    temporary=e.smtp_code < 500) from e
        except (smtplib.SMTPException, OSError, socket.timeout) as e:
            raise MailDeliveryError(f"cannot reach SMTP server {self.host}:{self.port}: {e}") from e
        if refused:
            codes = [code for code, _ in refused.values()]
            raise MailDeliveryError(f"some recipients refused: {refused!r}",
                                    temporary=all(400 <= c < 500 for c in codes))


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def backend_from_config(config: Any) -> MailBackend:
    kind = config.get("MAIL_BACKEND", "console")
    if kind == "smtp":
        return SMTPBackend(config.get("SMTP_HOST") or "localhost", int(config.get("SMTP_PORT") or 25),
                           starttls=bool(config.get("SMTP_STARTTLS")), tls=bool(config.get("SMTP_TLS")),
                           user=config.get("SMTP_USER"), password=config.get("SMTP_PASSWORD"),
                           timeout=float(config.get("SMTP_TIMEOUT") or 30.0))
    if kind == "console":
        return ConsoleBackend()
    raise ConfigError(f"MAIL_BACKEND must be 'console' or 'smtp', got {kind!r}", field="MAIL_BACKEND")
