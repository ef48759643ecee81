"""Outbound mail: notifications are written to a database outbox and delivered by the worker.

Queuing happens inside the transaction that changes the ticket, so a notification
exists exactly when the change does. :func:`deliver_outbox` (the ``support-mail-outbox``
worker job, and ``release-server mail send-outbox``) claims due messages one by one in
short transactions, hands them to the configured :class:`~.mailbackends.MailBackend`
outside any transaction, and records the result: sent, retried later with capped
exponential backoff, or failed after ``MAIL_MAX_ATTEMPTS``. An SMTP outage therefore
delays mail but loses none.

Delivery is at least once, and the window for a second copy is as small as it can be:
"sent" is committed the moment the SMTP server accepts the message (before QUIT), and
a claim outlasts the backend's whole conversation (``SMTP_DEADLINE``), so a slow
server never lets a second worker send the same row. Only a crash between the
server's acceptance and that commit sends it again, and then with the same
Message-ID and Date, so the receiving side can drop the copy. A recipient the server
refuses for good (5xx) marks the row ``failed``/``refused`` and leaves an internal
note on the ticket.

A claim made by the worker names its lease holder (``claimed_by``). When that worker dies
and another takes the lease over, the takeover hook (:func:`release_claims_of`) makes
the dead holder's claims due again at once, and the worker renews its lease between
messages and stops when it has lost it, so two workers never send from the outbox at
the same time. A copy sent twice across such a takeover has the same Message-ID.

Every message carries our own Message-ID (recorded for threading replies back to the
ticket), ``[PREFIX-000123]`` in its subject, In-Reply-To/References to the ticket's
earlier mail, and, when no person wrote it, ``Auto-Submitted: auto-generated``.
Loop brakes: nothing automatic goes to mailer-daemon/postmaster/no-reply addresses,
and at most ``AUTO_REPLY_LIMIT_PER_HOUR`` automatic mails go to one address per hour.
"""
from __future__ import annotations

import logging
import random
import uuid
from dataclasses import dataclass
from typing import Any
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, parseaddr

from flask import current_app, has_app_context
from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from ..messages import M, Message, render as render_message, text_of
from ..models_common import utcnow
from .errors import MailDeliveryError
from .mailbackends import MailBackend, backend_from_config
from .models import MailMessage, Ticket, TicketEvent

log = logging.getLogger(__name__)

#: Local parts that belong to mail systems, not people: never answered automatically.
SYSTEM_LOCALPARTS = frozenset({"mailer-daemon", "postmaster", "noreply", "no-reply", "donotreply", "do-not-reply",
                               "bounce", "bounces"})
#: References carried on an outgoing mail (the latest ones, ending with the mail it answers).
MAX_THREAD_REFERENCES = 20
CLAIM_SECONDS = 600  # a claimed message not finished within this is considered abandoned and retried


def _cfg(key: str, default: object = None) -> object:
    return current_app.config.get(key, default) if has_app_context() else default


def is_system_address(addr: str) -> bool:
    local = (addr or "").split("@", 1)[0].strip().lower()
    return not addr or "@" not in addr or local in SYSTEM_LOCALPARTS or local.startswith("mailer-daemon")


def support_domain() -> str:
    addr = str(_cfg("SUPPORT_ADDRESS", "support@localhost"))
    return parseaddr(addr)[1].rpartition("@")[2] or "localhost"


def new_message_id(number: str) -> str:
    """An RFC 5322 msg-id (without the angle brackets) that names the ticket."""
    return f"{number.lower()}.{uuid.uuid4().hex}@{support_domain()}"


def subject_for(ticket: Ticket, locale: str | None = None) -> str:
    return f"[{ticket.number}] {text_of(ticket, 'subject', locale)}"


# ---------------------------------------------------------------- the texts

def _signature(locale: str | None, signer: str | None = None) -> str:
    address = parseaddr(str(_cfg('SUPPORT_ADDRESS', 'support@localhost')))[1]
    who = f"{signer}\n" if signer else ""  # a staff member's display name, never their login name
    return "\n\n-- \n" + who + render_message(Message("mail.signature", {"address": address}), locale) + "\n"


def render(kind: str, ticket: Ticket, text: str | Message = "", locale: str | None = "en",
           signer: str | None = None) -> str:
    """The plain-text body of a notification of ``kind`` about ``ticket``, in ``locale``.

    Mail is rendered when it is queued, in the recipient's language
    (:func:`~release_server.support.customers.contact_locale`): the outbox row then holds
    exactly what is sent, and a retry sends the same words.
    """
    def t(code: str, **params: object) -> str:
        return render_message(Message(code, dict(params)), locale)

    if isinstance(text, Message):
        text = render_message(text, locale)
    n = ticket.number
    if kind == "registered":
        body = t("mail.registered", number=n, subject=text_of(ticket, "subject", locale))
        if text:
            body += f"\n{text}\n"
    elif kind == "failure_opened":
        body = t("mail.failure_opened", number=n) + f"\n\n{text}\n"
    elif kind == "request_info":
        body = t("mail.request_info", number=n) + f"\n\n{text}\n\n" + t("mail.request_info.hint") + "\n"
    elif kind == "processed":
        body = t("mail.processed", number=n) + "\n"
        if text:
            body += f"\n{text}\n"
        body += "\n" + t("mail.processed.reopen", days=_cfg("REOPEN_DAYS", 14)) + "\n"
    elif kind == "auto_closed":
        body = t("mail.auto_closed", number=n, days=_cfg("AUTO_CLOSE_DAYS", 7)) + "\n"
    else:  # reply
        body = f"{text}\n"
    return body + _signature(locale, signer)


# ---------------------------------------------------------------- queueing

#: Mails that go to a ticket's CC contacts too (see :mod:`release_server.support.desk`).
CC_KINDS = ("reply", "request_info", "processed", "auto_closed")


def queue_mail(session: Session, ticket: Ticket, *, to: str | None, kind: str, text: str | Message = "",
               auto: bool, signer: str | None = None, copies: bool = True) -> MailMessage | None:
    """Write one notification to the outbox (or record why it is suppressed); None when there is no recipient.

    Subject and body are rendered now, in the recipient's language; ``signer`` (a staff
    display name) signs it. Mails of :data:`CC_KINDS` are also queued, one each, to the
    ticket's CC contacts (each in their own language).
    """
    to = parseaddr(to or "")[1].strip()
    if copies and kind in CC_KINDS and not ticket.internal:
        from .desk import cc_of

        for cc in cc_of(session, ticket):
            if cc.lower() != to.lower():
                queue_mail(session, ticket, to=cc, kind=kind, text=text, auto=auto, signer=signer, copies=False)
    if not to or ticket.internal:
        return None
    from .customers import contact_locale

    locale = contact_locale(session, to, ticket.customer_id)
    in_reply_to, references = _thread_headers(session, ticket)
    mail = MailMessage(direction="out", message_id=new_message_id(ticket.number), ticket_id=ticket.id,
                       from_addr=_from_address()[1], to_addr=to, subject=subject_for(ticket, locale),
                       status="pending", kind=kind, body=render(kind, ticket, text, locale, signer), in_reply_to=in_reply_to,
                       references=references, auto_generated=auto, next_attempt_at=utcnow())
    if is_system_address(to):
        mail.status, mail.last_error = "suppressed", "recipient is a mail system address"
    elif auto:
        limit = int(_cfg("AUTO_REPLY_LIMIT_PER_HOUR", 10) or 0)
        recent = session.scalar(select(func.count()).select_from(MailMessage).where(
            MailMessage.direction == "out", MailMessage.auto_generated.is_(True), MailMessage.to_addr == to,
            MailMessage.status != "suppressed", MailMessage.created_at > utcnow() - timedelta(hours=1)))
        if limit and recent >= limit:
            mail.status, mail.last_error = "suppressed", f"more than {limit} automatic mails to {to} in an hour"
    session.add(mail)
    session.flush()
    return mail


def _thread_headers(session: Session, ticket: Ticket) -> tuple[str, list[str]]:
    """In-Reply-To and References for a new mail about ``ticket``.

    It answers the latest mail received about the ticket, found by the ticket's events
    too (the mail that opened a ticket is linked to it only after the acknowledgement is
    queued); References carry that mail's own References, then the ticket's mails.
    """
    previous = list(session.scalars(
        select(MailMessage.message_id).where(MailMessage.ticket_id == ticket.id, MailMessage.message_id != "")
        .order_by(MailMessage.id.desc()).limit(20)))
    by_event = select(TicketEvent.mail_id).where(TicketEvent.ticket_id == ticket.id,
                                                 TicketEvent.mail_id.is_not(None))
    last_in = session.scalar(
        select(MailMessage).where(MailMessage.direction == "in", MailMessage.message_id != "",
                                  or_(MailMessage.ticket_id == ticket.id, MailMessage.id.in_(by_event)))
        .order_by(MailMessage.id.desc()).limit(1))
    if last_in is None:
        return (previous[0] if previous else ""), list(reversed(previous))
    chain = list(last_in.references or []) + list(reversed(previous)) + [last_in.message_id]
    references = list(dict.fromkeys(r for r in chain if r))
    references = [r for r in references if r != last_in.message_id][-(MAX_THREAD_REFERENCES - 1):] \
        + [last_in.message_id]
    return last_in.message_id, references


def _from_address() -> tuple[str, str]:
    raw = str(_cfg("MAIL_FROM") or _cfg("SUPPORT_ADDRESS", "support@localhost"))
    name, addr = parseaddr(raw)
    return name or "Support", addr or "support@localhost"


def build_message(mail: MailMessage) -> EmailMessage:
    """The RFC 5322 message for an outbox row."""
    msg = EmailMessage()
    msg["From"] = formataddr(_from_address())
    msg["To"] = mail.to_addr
    reply_to = parseaddr(str(_cfg("SUPPORT_ADDRESS", "")))[1]
    if reply_to:
        msg["Reply-To"] = reply_to
    msg["Subject"] = mail.subject
    msg["Date"] = format_datetime(mail.created_at or utcnow())
    msg["Message-ID"] = f"<{mail.message_id}>"
    if mail.in_reply_to:
        msg["In-Reply-To"] = f"<{mail.in_reply_to}>"
    if mail.references:
        msg["References"] = " ".join(f"<{r}>" for r in mail.references)
    if mail.auto_generated:
        msg["Auto-Submitted"] = "auto-generated"
        msg["X-Auto-Response-Suppress"] = "All"
    msg.set_content(mail.body)
    return msg


# ---------------------------------------------------------------- delivery

def get_backend() -> MailBackend:
    app = current_app
    backend = app.extensions.get("mail_backend")
    if backend is None:
        backend = app.extensions["mail_backend"] = backend_from_config(app.config)
    return backend


def backoff_seconds(attempts: int) -> float:
    """1, 2, 4 ... minutes, capped at an hour, with 10 % jitter."""
    base = min(60.0 * 2 ** max(attempts - 1, 0), 3600.0)
    return base * random.uniform(0.9, 1.1)


@dataclass
class OutboxResult:
    sent: int = 0
    retried: int = 0
    failed: int = 0

    def __str__(self) -> str:
        return f"{self.sent} sent, {self.retried} to retry, {self.failed} failed"


def deliver_outbox(*, limit: int = 200, now: datetime | None = None, backend: MailBackend | None = None) -> \
        OutboxResult:
    """Send the due outbox messages. Runs in an app context; commits in short transactions of its own."""
    from ..db import db

    now = now or utcnow()
    backend = backend or get_backend()
    result = OutboxResult()
    max_attempts = int(_cfg("MAIL_MAX_ATTEMPTS", 12))
    reader = db.new_session(write=False)
    try:
        due = list(reader.scalars(
            select(MailMessage.id).where(MailMessage.direction == "out",
                                         MailMessage.status.in_(("pending", "sending")),
                                         MailMessage.next_attempt_at <= now)
            .order_by(MailMessage.id).limit(limit)))
    finally:
        reader.close()
    from ..worker import current_holder, renew_current

    claim = timedelta(seconds=max(CLAIM_SECONDS, 2 * float(backend.max_send_seconds) + 60))
    claimer = current_holder()
    for mail_id in due:
        if not renew_current():  # another worker has the outbox now
            log.warning("worker lease lost: outbox delivery stops here")
            break
        session = db.new_session(write=True)
        try:
            claimed = session.execute(
                update(MailMessage).where(MailMessage.id == mail_id,
                                          or_(MailMessage.status == "pending",
                                              MailMessage.status == "sending"),
                                          MailMessage.next_attempt_at <= now)
                .values(status="sending", next_attempt_at=now + claim, claimed_by=claimer)
                .execution_options(synchronize_session=False)).rowcount
            mail = session.get(MailMessage, mail_id) if claimed else None
            message = build_message(mail) if mail is not None else None
            session.commit()
        finally:
            session.close()
        if message is None:
            continue
        accepted = False

        def record_sent(mail_id: int = mail_id) -> None:
            # The server has the message: say so at once, before QUIT can hang or the process die.
            nonlocal accepted
            _finish(db, mail_id, None, max_attempts)
            accepted = True

        error: MailDeliveryError | None = None
        try:
            backend.send(message, on_accepted=record_sent)
        except MailDeliveryError as e:
            error = e
        if accepted:
            result.sent += 1
            continue
        outcome = _finish(db, mail_id, error, max_attempts)
        if outcome == "sent":
            result.sent += 1
        elif outcome == "failed":
            result.failed += 1
        else:
            result.retried += 1
    return result


def release_claims_of(session: Session, holder: str) -> int:
    """A dead worker's claims: due again now (a takeover hook; the caller commits). Returns how many."""
    return session.execute(
        update(MailMessage).where(MailMessage.direction == "out", MailMessage.status == "sending",
                                  MailMessage.claimed_by == holder)
        .values(status="pending", next_attempt_at=utcnow(), claimed_by=None)
        .execution_options(synchronize_session=False)).rowcount


def _finish(db: Any, mail_id: int, error: MailDeliveryError | None, max_attempts: int) -> str:
    """Record one attempt in its own transaction: "sent", "failed" or "retry"."""
    session = db.new_session(write=True)
    try:
        mail = session.get(MailMessage, mail_id)
        mail.attempts += 1
        mail.claimed_by = None
        if error is None:
            mail.status, mail.sent_at, mail.last_error = "sent", utcnow(), ""
            outcome = "sent"
        elif not error.temporary or mail.attempts >= max_attempts:
            mail.status, mail.last_error = "failed", error.message
            outcome = "failed"
            if error.refused and not error.temporary:
                mail.outcome = "refused"
                _note_refusal(session, mail, error)
            log.warning("mail %s to %s failed for good: %s", mail.id, mail.to_addr, error.message)
        else:
            mail.status, mail.last_error = "pending", error.message
            mail.next_attempt_at = utcnow() + timedelta(seconds=backoff_seconds(mail.attempts))
            outcome = "retry"
            log.info("mail %s to %s will be retried: %s", mail.id, mail.to_addr, error.message)
        session.commit()
        return outcome
    finally:
        session.close()


def _note_refusal(session: Session, mail: MailMessage, error: MailDeliveryError) -> None:
    """An internal note on the ticket: the mail server refused a recipient for good."""
    from . import services

    ticket = session.get(Ticket, mail.ticket_id) if mail.ticket_id else None
    if ticket is None:
        return
    lines = [f"{addr}: {code} {reply}".strip() for addr, (code, reply) in sorted(error.refused.items())]
    services.add_note(session, ticket, services.SYSTEM,
                      M("mail.refused", subject=mail.subject, recipients="\n".join(lines)),
                      kind="mail_refused", mail_id=mail.id,
                      data={"recipients": {a: [c, r] for a, (c, r) in error.refused.items()},
                            "message_id": mail.message_id})
