"""Inbound mail: store the raw message, then thread it onto a ticket or open one.

:func:`ingest` is what ``POST /api/v1/support/mail`` (fed by ``release-server mailgate``)
and ``release-server mail poll`` call. In order:

1. The duplicate check comes first and is cheap: the Message-ID is read from the top
   header without parsing (:func:`~.mailparse.peek_message_id`), and a message without
   one is known by the SHA-256 of its raw bytes. A message seen before (an MTA retry, an
   IMAP message fetched again) costs one indexed lookup: it is neither stored nor parsed.
2. The raw bytes go to blob storage, parseable or not.
3. :func:`~.mailparse.parse_message` reads them (in time linear in their size); input
   that is not a message at all is recorded as ``unparseable``, listed for staff in the
   console with the raw message to download, and the caller answers so the MTA does not
   retry.
4. Bounces are matched to the ticket of the message they return (by its Message-ID,
   else by the ``[PREFIX-n]`` in its subject) and attached as internal notes.
5. Threading: ``[PREFIX-n]`` in the subject, else In-Reply-To/References naming a
   Message-ID we sent or received. A number alone only threads when the sender belongs
   to the ticket's customer (or is its requester), so a guessed number cannot write
   into someone else's ticket.
6. Otherwise a new ticket: for the customer whose contact address, customer user,
   earlier request or mail domain matches the sender; an unknown sender's ticket waits
   in the unassigned queue (no customer).
7. Loop guard: auto-submitted messages, bounces and mail from mailer-daemon/postmaster
   never get an automatic answer; an automatic reply on an existing ticket is an internal
   note and does not reopen anything.

The timeline shows the reply with quoted history trimmed; the raw message stays in storage.
"""
from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import dataclass
from datetime import datetime
from email.utils import parseaddr

from flask import current_app, has_app_context
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..errors import ValidationError
from ..fleet.models import Customer, CustomerMailDomain
from ..messages import M, size
from ..storage import BlobStorage, StoredBlob
from . import mailout, services
from .errors import AttachmentTooLargeError, MailTooLargeError, TooManyAttachmentsError
from .mailparse import MailParseError, ParsedMail, find_ticket_numbers, parse_message, peek_message_id
from .models import CustomerUser, MailMessage, Ticket
from .services import Actor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestResult:
    mail_id: int
    outcome: str  # created | appended | follow_up | auto_reply | bounce | bounce_unmatched | duplicate | unparseable
    ticket: str | None
    auto_answer: bool
    detail: str = ""


def _cfg(key: str, default: object) -> object:
    return current_app.config.get(key, default) if has_app_context() else default


def ingest(session: Session, storage: BlobStorage, raw: bytes) -> IngestResult:
    """Store and process one inbound message (see the module docstring). The caller commits."""
    limit = int(_cfg("MAX_MAIL_SIZE", 40 * 1024 * 1024))
    if len(raw) > limit:
        raise MailTooLargeError(len(raw), limit)
    if not raw.strip():
        raise ValidationError("the message is empty", field="message")
    key = dedupe_key(raw)
    seen = _duplicate(session, key)
    if seen is not None:
        return seen
    blob = storage.put_stream(io.BytesIO(raw))
    prefix = str(_cfg("TICKET_PREFIX", "OTK"))
    try:
        parsed = parse_message(raw, ticket_prefix=prefix)
    except MailParseError as e:
        mail = MailMessage(direction="in", status="unparseable", outcome="unparseable", blob_key=blob.key,
                           size=blob.size, subject="", last_error=str(e), dedupe_key=key)
        if not _insert(session, mail):
            return _duplicate(session, key) or IngestResult(0, "duplicate", None, False)
        log.warning("inbound mail %s cannot be parsed (%s); kept as %s", mail.id, e, blob.key)
        return IngestResult(mail.id, "unparseable", None, False, str(e))

    mail = MailMessage(direction="in", message_id=parsed.message_id[:998], from_addr=parsed.from_addr[:254],
                       to_addr=(parsed.to[0] if parsed.to else "")[:254], subject=parsed.subject,
                       status="stored", blob_key=blob.key, size=blob.size, dedupe_key=key,
                       in_reply_to=parsed.in_reply_to[:998],
                       references=[r[:998] for r in parsed.references[-_KEPT_REFERENCES:]])
    if not _insert(session, mail):
        return _duplicate(session, key) or IngestResult(0, "duplicate", None, False)

    sender = parsed.from_addr.strip().lower()
    system_sender = mailout.is_system_address(sender)
    loop = bool(parsed.auto_submitted_reason) or parsed.is_bounce or system_sender
    actor = Actor(sender or "unknown sender", "customer", email=sender or None)

    if parsed.is_bounce:
        return _bounce(session, mail, parsed, prefix)

    ticket, by_header = _thread(session, parsed, prefix)
    if ticket is not None and not by_header and not _sender_belongs(session, ticket, sender):
        log.info("mail %s names %s but %s is not one of its customer's addresses; opening a new ticket",
                 mail.id, ticket.number, sender)
        ticket = None
    if ticket is not None:
        ticket = services.visible_root(session, ticket)
        actor = Actor(actor.name, "customer", customer_id=ticket.customer_id, email=actor.email)
        if loop:
            reason = parsed.auto_submitted_reason or "sent by a mail system"
            services.add_note(session, ticket, actor, parsed.reply_text or parsed.text or M("ticket.empty_message"),
                              kind="auto_reply", mail_id=mail.id, data={"reason": reason})
            mail.status, mail.outcome, mail.ticket_id = "auto", "auto_reply", ticket.id
            _attachments(session, storage, ticket, actor, parsed, public=False)
            return IngestResult(mail.id, "auto_reply", ticket.number, False, reason)
        before = ticket.id
        ticket, event = services.customer_message(session, ticket, actor,
                                                  parsed.reply_text or parsed.text or "(no text)", mail_id=mail.id)
        mail.ticket_id = ticket.id
        mail.outcome = "appended" if ticket.id == before else "follow_up"
        _attachments(session, storage, ticket, actor, parsed, public=True)
        return IngestResult(mail.id, mail.outcome, ticket.number, ticket.id != before)

    customer = identify_customer(session, sender) if not system_sender else None
    actor = Actor(actor.name, "customer", customer_id=customer.id if customer else None, email=actor.email)
    ticket = services.create_ticket(session, actor,
                                    subject=parsed.subject, description=parsed.text or "(no text)",
                                    kind="incident", customer=customer, requester_email=sender or None,
                                    requester_name=parsed.from_name, source="mail", mail_id=mail.id, notify=not loop)
    mail.ticket_id = ticket.id
    mail.outcome = "created"
    if loop:
        mail.status = "auto"
    _attachments(session, storage, ticket, actor, parsed, public=True)
    return IngestResult(mail.id, "created", ticket.number, not loop,
                        "" if customer else "unknown sender: in the unassigned queue")


#: Ids of an inbound References header kept on its row (for the References of our answer).
_KEPT_REFERENCES = 20


def dedupe_key(raw: bytes) -> str:
    """What makes two inbound messages the same: their Message-ID, else their exact bytes."""
    message_id = peek_message_id(raw).strip().lower()
    if message_id:
        return "in:" + hashlib.sha256(message_id).hexdigest()
    return "raw:" + hashlib.sha256(raw).hexdigest()


def _duplicate(session: Session, key: str) -> IngestResult | None:
    first = session.scalar(select(MailMessage).where(MailMessage.dedupe_key == key))
    if first is None:
        return None
    number = session.get(Ticket, first.ticket_id).number if first.ticket_id else None
    return IngestResult(first.id, "duplicate", number, False)


def _insert(session: Session, mail: MailMessage) -> bool:
    """Add the row; False when a concurrent delivery of the same message got there first."""
    try:
        with session.begin_nested():
            session.add(mail)
            session.flush()
    except IntegrityError:
        return False
    return True


def _bounce(session: Session, mail: MailMessage, parsed: ParsedMail, prefix: str) -> IngestResult:
    mail.status = "bounce"
    ticket = None
    original = None
    if parsed.bounce_original_message_id:
        original = session.scalar(select(MailMessage).where(
            MailMessage.message_id == parsed.bounce_original_message_id.strip("<> "),
            MailMessage.ticket_id.is_not(None)).limit(1))
        if original is not None:
            ticket = session.get(Ticket, original.ticket_id)
    if ticket is None:
        for number in find_ticket_numbers(parsed.bounce_original_subject or "", prefix) + parsed.ticket_numbers:
            ticket = services.find_ticket(session, number)
            if ticket is not None:
                break
    if ticket is None:
        mail.outcome = "bounce_unmatched"
        return IngestResult(mail.id, "bounce_unmatched", None, False)
    ticket = services.root_of(session, ticket)
    if original is not None and original.direction == "out":
        original.outcome = "bounced"
    text = parsed.text.strip() or parsed.subject
    services.add_note(session, ticket, services.SYSTEM,
                      M("mail.bounce", sender=parsed.from_addr or M("mail.bounce.mail_system"),
                        subject=parsed.subject, text=text[:4000]),
                      kind="bounce", mail_id=mail.id,
                      data={"original_message_id": parsed.bounce_original_message_id})
    mail.ticket_id = ticket.id
    mail.outcome = "bounce"
    return IngestResult(mail.id, "bounce", ticket.number, False)


def _thread(session: Session, parsed: ParsedMail, prefix: str) -> tuple[Ticket | None, bool]:
    """The ticket a message continues: (ticket, matched by its headers rather than by the number alone)."""
    ids = [i.strip("<> ") for i in ([parsed.in_reply_to] if parsed.in_reply_to else []) + list(parsed.references)]
    ids = [i for i in ids if i]
    if ids:
        row = session.scalar(select(MailMessage.ticket_id).where(MailMessage.message_id.in_(ids[-50:]),
                                                                 MailMessage.ticket_id.is_not(None))
                             .order_by(MailMessage.id.desc()).limit(1))
        if row is not None:
            return session.get(Ticket, row), True
    for number in parsed.ticket_numbers:
        ticket = services.find_ticket(session, number)
        if ticket is not None and not ticket.internal:
            return ticket, False
    return None, False


def _sender_belongs(session: Session, ticket: Ticket, sender: str) -> bool:
    if not sender:
        return False
    if ticket.requester_email and ticket.requester_email.lower() == sender:
        return True
    if ticket.customer_id is None:
        return False
    customer = identify_customer(session, sender)
    return customer is not None and customer.id == ticket.customer_id


def identify_customer(session: Session, sender: str) -> Customer | None:
    """The customer a sender belongs to: customer user, contact address, earlier requester, then mail domain.

    Each step is one indexed lookup, so the cost does not grow with the number of customers or tickets.
    """
    written = parseaddr(sender)[1].strip()
    sender = written.lower()
    if not sender or "@" not in sender:
        return None
    spellings = sorted({written, sender})  # as stored: lower case, or as the sender wrote it
    user = session.scalar(select(CustomerUser).where(CustomerUser.email == sender, CustomerUser.active.is_(True)))
    if user is not None:
        return user.customer
    customer = session.scalar(select(Customer).where(Customer.contact_email.in_(spellings))
                              .order_by(Customer.id).limit(1))
    if customer is not None:
        return customer
    cid = session.scalar(select(Ticket.customer_id).where(Ticket.requester_email.in_(spellings),
                                                         Ticket.customer_id.is_not(None))
                         .order_by(Ticket.id.desc()).limit(1))
    if cid is not None:
        return session.get(Customer, cid)
    domain = sender.rpartition("@")[2]
    cid = session.scalar(select(CustomerMailDomain.customer_id).where(CustomerMailDomain.domain == domain)
                         .order_by(CustomerMailDomain.customer_id).limit(1))
    return session.get(Customer, cid) if cid is not None else None


def _attachments(session: Session, storage: BlobStorage, ticket: Ticket, actor: Actor, parsed: ParsedMail, *,
                 public: bool) -> None:
    """Store the message's attachments on the ticket; ones over the limits are skipped with a note."""
    skipped = []
    for att in parsed.attachments:
        try:
            services.check_attachment_allowed(session, ticket, att.filename, att.size)
        except AttachmentTooLargeError as e:
            skipped.append(M("mail.attachment_skipped.too_large", filename=att.filename, size=size(att.size),
                             limit=size(e.limit)))
            continue
        except TooManyAttachmentsError as e:
            skipped.append(M("mail.attachment_skipped.too_many", filename=att.filename, limit=e.limit))
            continue
        except ValidationError:
            skipped.append(M("mail.attachment_skipped.empty", filename=att.filename))
            continue
        blob: StoredBlob = storage.put_stream(io.BytesIO(att.data))
        services.add_attachment(session, ticket, actor, blob, att.filename, att.content_type, public=public)
    if skipped:
        services.add_note(session, ticket, services.SYSTEM, M("mail.attachments_skipped", files=skipped))


# ---------------------------------------------------------------- mail that could not be read

@dataclass(frozen=True)
class UnreadableMail:
    """An inbound message that is not a message at all, kept raw for staff to look at."""

    id: int
    received_at: datetime
    size: int
    reason: str
    blob_key: str | None


def list_unparseable(session: Session, *, limit: int = 50, offset: int = 0) -> tuple[list[UnreadableMail], int]:
    """Inbound mail that could not be parsed, newest first, and how many there are."""
    where = (MailMessage.direction == "in", MailMessage.status == "unparseable")
    total = session.scalar(select(func.count()).select_from(MailMessage).where(*where)) or 0
    rows = session.scalars(select(MailMessage).where(*where).order_by(MailMessage.id.desc())
                           .limit(limit).offset(offset))
    return [_unreadable(m) for m in rows], total


def get_unparseable(session: Session, mail_id: int) -> UnreadableMail:
    """One unparseable inbound message; :class:`~..errors.NotFoundError` for any other id."""
    from ..errors import NotFoundError

    mail = session.get(MailMessage, mail_id) if 0 < mail_id < 2 ** 31 else None
    if mail is None or mail.direction != "in" or mail.status != "unparseable":
        raise NotFoundError(f"no unreadable mail {mail_id}")
    return _unreadable(mail)


def _unreadable(mail: MailMessage) -> UnreadableMail:
    return UnreadableMail(id=mail.id, received_at=mail.created_at, size=mail.size, reason=mail.last_error or "",
                          blob_key=mail.blob_key)
