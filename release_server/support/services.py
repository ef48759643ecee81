"""Ticket rules: numbers, the status life cycle, messages and notes, attachments, merging.

Life cycle (``support-process.md``)::

    new -> in_progress -> waiting_for_customer -> processed -> closed
                 ^                 |                  |
                 +-- customer -----+                  |
                 +-- customer reply within REOPEN_DAYS +

* A customer's message on a ticket *waiting for the customer* puts it back *in progress*.
* A customer's message on a *processed* (or closed) ticket reopens it when it was
  processed less than ``REOPEN_DAYS`` ago; later, it opens a new ticket linked to the old.
* Processed tickets close themselves after ``AUTO_CLOSE_DAYS`` (:func:`auto_close`, a worker job).

Every change is an event on the ticket's timeline; events are public (the customer sees
them) or internal. Every staff action that changes a ticket is also written to the
audit log. Who may see what is decided here, from an :class:`Actor`: staff see every
ticket, customer users and installations only their own customer's non-internal tickets
and their public events. Services add and flush; the caller commits.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from flask import current_app, has_app_context
from sqlalchemy import and_, case, exists, func, or_, select, text, update
from sqlalchemy.orm import Session

from ..accounts.models import User
from ..accounts.services import audit
from ..errors import ValidationError
from ..messages import M, Message, pct, stored
from ..fleet.models import Customer, Installation
from ..models_common import utcnow
from ..rollouts.models import Rollout
from ..storage import StoredBlob
from . import mailout
from .errors import (AttachmentTooLargeError, InvalidTicketFieldError, MergeError, StatusTransitionError,
                     TooManyAttachmentsError, UnknownAttachmentError, UnknownStaffUserError, UnknownTicketError)
from .models import (DEPARTMENTS, KINDS, OPEN_STATUSES, PRIORITIES, REVIEW_OUTCOMES, SOURCES, STATUSES, FailureGroup,
                     Ticket, TicketAttachment, TicketCounter, TicketEvent, TicketFailureGroup)

#: Which statuses staff may move a ticket to from each status.
TRANSITIONS: dict[str, frozenset[str]] = {
    "new": frozenset({"in_progress", "waiting_for_customer", "processed", "closed"}),
    "in_progress": frozenset({"waiting_for_customer", "processed", "closed"}),
    "waiting_for_customer": frozenset({"in_progress", "processed", "closed"}),
    "processed": frozenset({"in_progress", "closed"}),
    "closed": frozenset({"in_progress"}),
}
NUMBER_RE = re.compile(r"[ \t]*\[?[ \t]*(?:([A-Za-z][A-Za-z0-9]*)[ \t]*[-#][ \t]*)?0*([0-9]{1,18})[ \t]*\]?[ \t]*")


def _cfg(key: str, default: Any) -> Any:
    return current_app.config.get(key, default) if has_app_context() else default


# ---------------------------------------------------------------- who is acting

@dataclass(frozen=True)
class Actor:
    """Who does something to tickets: staff, a customer user, an installation or the system."""

    name: str
    kind: str  # staff | customer | installation | system
    customer_id: int | None = None
    installation_id: str | None = None
    user_id: int | None = None
    email: str | None = None

    @property
    def staff(self) -> bool:
        return self.kind in ("staff", "system")

    def may_see(self, ticket: Ticket) -> bool:
        return self.staff or (ticket.customer_id is not None and ticket.customer_id == self.customer_id
                              and not ticket.internal)


SYSTEM = Actor("system", "system")


def actor_of(principal: Any) -> Actor:
    """The actor behind an API principal (staff token, customer token or installation token)."""
    kind = getattr(principal, "kind", "token")
    if kind == "installation":
        return Actor(principal.actor, "installation", customer_id=principal.customer_id,
                     installation_id=principal.installation_id)
    if kind == "customer":
        return Actor(principal.actor, "customer", customer_id=principal.customer_id,
                     user_id=principal.customer_user_id, email=principal.email)
    return Actor(principal.actor, "staff", user_id=getattr(principal, "user_id", None))


def _audit(session: Session, actor: Actor, action: str, ticket: Ticket, details: dict[str, Any] | None = None) -> None:
    if actor.kind == "staff":
        audit(session, actor.name, action, f"ticket:{ticket.number}", details or {})


# ---------------------------------------------------------------- numbers

def next_number(session: Session) -> tuple[int, str]:
    """Allocate the next ticket number from the database: (sequence value, "OTK-000123")."""
    if session.get_bind().dialect.name == "postgresql":
        seq = int(session.scalar(text("SELECT nextval('ticket_number_seq')")))
    else:
        # SQLite: writers hold the database lock (BEGIN IMMEDIATE), so read-increment is atomic.
        table = TicketCounter.__table__
        seq = session.execute(table.update().where(table.c.name == "ticket")
                              .values(value=table.c.value + 1).returning(table.c.value)).scalar()
        if seq is None:
            session.execute(table.insert().values(name="ticket", value=1))
            seq = 1
    return seq, format_number(seq)


def format_number(seq: int, prefix: str | None = None) -> str:
    from .mailparse import TICKET_NUMBER_DIGITS

    prefix = prefix or str(_cfg("TICKET_PREFIX", "OTK"))
    return f"{prefix}-{seq:0{TICKET_NUMBER_DIGITS}d}"


def parse_number(ref: str | int) -> int | None:
    """The sequence value in ``OTK-000123``, ``[OTK-123]``, ``otk#123`` or ``123``; None if not a number."""
    m = NUMBER_RE.fullmatch(str(ref))
    return int(m.group(2)) if m else None


# ---------------------------------------------------------------- lookup

def root_of(session: Session, ticket: Ticket) -> Ticket:
    """Follow merges to the ticket that now carries the conversation."""
    seen = {ticket.id}
    while ticket.merged_into_id is not None:
        nxt = session.get(Ticket, ticket.merged_into_id)
        if nxt is None or nxt.id in seen:
            break
        seen.add(nxt.id)
        ticket = nxt
    return ticket


def visible_root(session: Session, ticket: Ticket) -> Ticket:
    """``root_of`` within one audience: follow merges only to tickets seen by the same people.

    A merge chain that leads to a ticket of another customer, or from a customer-facing
    ticket to an internal one (left from before merges were restricted), stops at the last
    ticket with the same customer and the same internal flag as ``ticket``.
    """
    seen = {ticket.id}
    current = ticket
    while current.merged_into_id is not None:
        nxt = session.get(Ticket, current.merged_into_id)
        if (nxt is None or nxt.id in seen or nxt.customer_id != ticket.customer_id
                or nxt.internal != ticket.internal):
            break
        seen.add(nxt.id)
        current = nxt
    return current


def require_visible(ticket: Ticket, actor: Actor) -> Ticket:
    """``ticket`` when ``actor`` may see it; UnknownTicketError otherwise (the rule of every read)."""
    if not actor.may_see(ticket):
        raise UnknownTicketError(ticket.number)
    return ticket


def find_ticket(session: Session, ref: str | int) -> Ticket | None:
    seq = parse_number(ref)
    if seq is None:
        return None
    return session.scalar(select(Ticket).where(Ticket.seq == seq))


def get_ticket(session: Session, ref: str | int, actor: Actor | None = None) -> Ticket:
    """A ticket by number; UnknownTicketError also when ``actor`` may not see it (no existence leak)."""
    ticket = find_ticket(session, ref)
    if ticket is None or (actor is not None and not actor.may_see(ticket)):
        raise UnknownTicketError(str(ref))
    return ticket


@dataclass
class TicketFilter:
    number: str | None = None
    status: list[str] = field(default_factory=list)
    kind: str | None = None
    customer: str | None = None
    unassigned_queue: bool = False
    assignee: str | None = None
    source: str | None = None
    failure_group: int | None = None
    department: str | None = None
    q: str | None = None
    page: int = 1
    per_page: int = 50
    sort: str = "updated"  # one of SORTS
    descending: bool = True


#: The queue's sortable columns. Ties go newest ticket first; priority sorts by urgency, not by name.
SORTS = ("number", "subject", "kind", "status", "priority", "customer", "assignee", "updated", "created")


def _sort_key(sort: str) -> Any:
    if sort == "number":
        return Ticket.seq
    if sort == "subject":
        return func.lower(Ticket.subject)
    if sort == "kind":
        return case({k: i for i, k in enumerate(KINDS)}, value=Ticket.kind, else_=len(KINDS))
    if sort == "status":
        return case({s: i for i, s in enumerate(STATUSES)}, value=Ticket.status, else_=len(STATUSES))
    if sort == "priority":
        return case({p: i for i, p in enumerate(PRIORITIES)}, value=Ticket.priority, else_=-1)
    if sort == "customer":
        return select(func.lower(Customer.name)).where(Customer.id == Ticket.customer_id).scalar_subquery()
    if sort == "assignee":
        return select(func.lower(User.username)).where(User.id == Ticket.assignee_id).scalar_subquery()
    if sort == "created":
        return Ticket.created_at
    if sort == "updated":
        return Ticket.updated_at
    raise InvalidTicketFieldError("sort", sort, SORTS)


def _like(value: str) -> str:
    return "%" + value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def list_tickets(session: Session, actor: Actor, flt: TicketFilter) -> tuple[list[Ticket], int]:
    """Tickets the actor may see, filtered and searched, newest activity first."""
    conds: list[Any] = []
    if not actor.staff:
        conds += [Ticket.customer_id == actor.customer_id, Ticket.internal.is_(False)]
    if flt.number:
        seq = parse_number(flt.number)
        conds.append(Ticket.seq == (seq if seq is not None else -1))
    for status in flt.status:
        _check("status", status, STATUSES)
    if flt.status:
        conds.append(Ticket.status.in_(flt.status))
    if flt.kind:
        conds.append(Ticket.kind == _check("kind", flt.kind, KINDS))
    if flt.source:
        conds.append(Ticket.source == _check("source", flt.source, SOURCES))
    if flt.customer:
        from ..fleet.services import get_customer

        conds.append(Ticket.customer_id == get_customer(session, flt.customer).id)
    if flt.unassigned_queue:
        conds += [Ticket.customer_id.is_(None), Ticket.internal.is_(False)]
    if flt.assignee:
        user = session.scalar(select(User).where(User.username == flt.assignee))
        conds.append(Ticket.assignee_id == (user.id if user else -1))
    if flt.failure_group is not None:
        conds.append(or_(Ticket.failure_group_id == flt.failure_group,
                         Ticket.id.in_(select(TicketFailureGroup.ticket_id)
                                       .where(TicketFailureGroup.group_id == flt.failure_group))))
    if flt.department:
        conds.append(Ticket.department == _check("department", flt.department, DEPARTMENTS))
    if flt.q:
        like = _like(flt.q.strip())
        event_match = select(TicketEvent.id).where(TicketEvent.ticket_id == Ticket.id,
                                                   TicketEvent.body.ilike(like, escape="\\"))
        if not actor.staff:
            event_match = event_match.where(TicketEvent.public.is_(True))
        conds.append(or_(Ticket.subject.ilike(like, escape="\\"), Ticket.description.ilike(like, escape="\\"),
                         Ticket.number.ilike(like, escape="\\"), Ticket.requester_email.ilike(like, escape="\\"),
                         exists(event_match)))
    where = and_(*conds) if conds else True
    total = session.scalar(select(func.count()).select_from(Ticket).where(where)) or 0
    key = _sort_key(flt.sort)
    # empty values (no customer, nobody assigned) last in either direction
    order = [key.is_(None), key.desc() if flt.descending else key.asc(), Ticket.id.desc()]
    rows = list(session.scalars(select(Ticket).where(where).order_by(*order)
                                .limit(flt.per_page).offset((flt.page - 1) * flt.per_page)))
    return rows, total


def count_tickets(session: Session, actor: Actor, flt: TicketFilter) -> int:
    """How many tickets a filter finds (the counts beside saved filters)."""
    return list_tickets(session, actor, TicketFilter(**{**flt.__dict__, "per_page": 0}))[1]


@dataclass
class BulkResult:
    done: list[str] = field(default_factory=list)
    refused: list[tuple[str, Any]] = field(default_factory=list)  # (number, the ReleaseServerError)


def bulk_update(session: Session, actor: Actor, numbers: Iterable[str], changes: dict[str, Any]) -> BulkResult:
    """Apply the same change (assignee and/or status) to many tickets, each on its own.

    Each ticket goes through :func:`update_ticket` in a savepoint, so one that may not take
    the change (a closed ticket cannot become "waiting for the customer", an internal one
    never waits for a customer) is named in ``refused`` and the others still change.
    At most 200 tickets at a time.
    """
    from ..errors import ReleaseServerError

    wanted = [n for n in dict.fromkeys(numbers) if n][:200]
    allowed = {k: v for k, v in changes.items() if k in ("assignee", "status")}
    if not wanted:
        raise ValidationError("choose at least one ticket", field="tickets")
    if not allowed:
        raise ValidationError("choose what to change", field="action")
    result = BulkResult()
    for number in wanted:
        try:
            with session.begin_nested():
                ticket = get_ticket(session, number, actor)
                if allowed.get("status") == "waiting_for_customer" and ticket.internal:
                    raise StatusTransitionError(ticket.number, ticket.status, "waiting_for_customer")
                update_ticket(session, ticket, actor, allowed)
            result.done.append(ticket.number)
        except ReleaseServerError as e:
            result.refused.append((number, e))
    return result


def timeline(session: Session, ticket: Ticket, actor: Actor) -> list[TicketEvent]:
    stmt = select(TicketEvent).where(TicketEvent.ticket_id == ticket.id).order_by(TicketEvent.id)
    if not actor.staff:
        stmt = stmt.where(TicketEvent.public.is_(True))
    return list(session.scalars(stmt))


def attachments_of(session: Session, ticket: Ticket, actor: Actor) -> list[TicketAttachment]:
    stmt = select(TicketAttachment).where(TicketAttachment.ticket_id == ticket.id).order_by(TicketAttachment.id)
    if not actor.staff:
        stmt = stmt.where(TicketAttachment.public.is_(True))
    return list(session.scalars(stmt))


def linked_groups(session: Session, ticket: Ticket) -> list[int]:
    ids = set(session.scalars(select(TicketFailureGroup.group_id).where(TicketFailureGroup.ticket_id == ticket.id)))
    if ticket.failure_group_id is not None:
        ids.add(ticket.failure_group_id)
    return sorted(ids)


# ---------------------------------------------------------------- creating

def _check(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise InvalidTicketFieldError(name, value, allowed)
    return value


def add_event(session: Session, ticket: Ticket, kind: str, actor: Actor, *, public: bool,
              body: str | Message = "", data: dict[str, Any] | None = None, mail_id: int | None = None,
              touch: bool = True) -> TicketEvent:
    """One timeline entry; a body the system writes is a :class:`~release_server.messages.Message`."""
    event = TicketEvent(ticket_id=ticket.id, kind=kind, public=public, author=actor.email or actor.name,
                        author_kind=actor.kind, data=data or {}, mail_id=mail_id, at=utcnow(),
                        **stored(body, "body"))
    session.add(event)
    if touch:
        ticket.updated_at = event.at
    session.flush()
    return event


def create_ticket(session: Session, actor: Actor, *, subject: str | Message, description: str | Message = "",
                  kind: str = "incident",
                  priority: str = "normal", customer: Customer | None = None, requester_email: str | None = None,
                  requester_name: str = "", source: str = "api", installation_id: str | None = None,
                  release_id: int | None = None, rollout_id: int | None = None, failure_group_id: int | None = None,
                  internal: bool = False, previous: Ticket | None = None, mail_id: int | None = None,
                  notify: bool = True) -> Ticket:
    """Register a request: it gets its number now, a 'created' event and (unless told not to) a mail."""
    _check("kind", kind, KINDS)
    _check("priority", priority, PRIORITIES)
    _check("source", source, SOURCES)
    texts = {**stored(subject if isinstance(subject, Message) else
                      (" ".join((subject or "").split())[:300] or M("ticket.no_subject")), "subject"),
             **stored(description, "description")}
    texts["subject"] = texts["subject"][:300]
    if actor.kind in ("customer", "installation") and actor.customer_id is not None:
        if customer is None or customer.id != actor.customer_id:
            raise ValidationError("customers may only open tickets for themselves", field="customer")
    if installation_id is not None:
        inst = session.get(Installation, installation_id)
        if inst is None or (customer is not None and inst.customer_id != customer.id):
            raise ValidationError(f"installation {installation_id!r} does not belong to the customer",
                                  field="installation_id")
    seq, number = next_number(session)
    now = utcnow()
    ticket = Ticket(seq=seq, number=number, kind=kind, **texts, status="new", priority=priority, customer_id=customer.id if customer else None,
                    requester_email=(requester_email or None), requester_name=requester_name or "",
                    source=source, internal=internal, installation_id=installation_id, release_id=release_id,
                    rollout_id=rollout_id, failure_group_id=failure_group_id,
                    previous_ticket_id=previous.id if previous else None, created_by=actor.name,
                    created_at=now, updated_at=now)
    session.add(ticket)
    session.flush()
    data: dict[str, Any] = {"source": source, "kind": kind}
    if previous is not None:
        data["previous"] = previous.number
    add_event(session, ticket, "created", actor, public=not internal, body=description or "", data=data,
              mail_id=mail_id)
    if previous is not None:
        add_event(session, previous, "follow_up", actor, public=True, body=M("ticket.continued_in", ticket=number),
                  data={"ticket": number})
    _audit(session, actor, "ticket.create", ticket, {"kind": kind, "source": source})
    if notify and not internal:
        mailout.queue_mail(session, ticket, to=ticket.requester_email, kind="registered", auto=True)
    return ticket


# ---------------------------------------------------------------- messages

def _status_change(session: Session, ticket: Ticket, new: str, actor: Actor, *, reason: str | Message = "",
                   public: bool = True) -> None:
    old = ticket.status
    if old == new:
        return
    now = utcnow()
    ticket.status = new
    if new == "processed":
        ticket.processed_at = now
    if new == "closed":
        ticket.closed_at = now
    if new in OPEN_STATUSES:
        ticket.closed_at = None
    add_event(session, ticket, "status", actor, public=public, body=reason, data={"from": old, "to": new})


def reopen_status(ticket: Ticket) -> str:
    """Where a reopened ticket goes: back to whoever works on it, or to the queue."""
    return "in_progress" if ticket.assignee_id is not None else "new"


def staff_reply(session: Session, ticket: Ticket, actor: Actor, body: str) -> TicketEvent:
    """A public answer from staff; mailed to the requester."""
    _require_text(body)
    event = add_event(session, ticket, "reply", actor, public=not ticket.internal, body=body)
    if ticket.assignee_id is None and actor.kind == "staff" and actor.user_id is not None:
        ticket.assignee_id = actor.user_id  # whoever answers an unassigned ticket takes it
        add_event(session, ticket, "changed", actor, public=False,
                  data={"field": "assignee", "from": None, "to": actor.name})
    if ticket.status == "new":
        _status_change(session, ticket, "in_progress", actor)
    elif ticket.status == "closed":
        _status_change(session, ticket, "in_progress", actor, reason=M("ticket.reason.reopened_by_reply"))
    _audit(session, actor, "ticket.reply", ticket)
    mailout.queue_mail(session, ticket, to=ticket.requester_email, kind="reply", text=body, auto=False,
                       signer=signer_of(session, actor))
    return event


def signer_of(session: Session, actor: Actor) -> str | None:
    """The name a staff actor signs customer mail with (their display name), or None."""
    if actor.kind != "staff" or actor.user_id is None:
        return None
    user = session.get(User, actor.user_id)
    return user.display_name if user is not None and user.display_name else None


def add_note(session: Session, ticket: Ticket, actor: Actor, body: str | Message, *, kind: str = "note",
             mail_id: int | None = None, data: dict[str, Any] | None = None) -> TicketEvent:
    """An internal note: staff only, never mailed, never shown to the customer."""
    _require_text(body)
    event = add_event(session, ticket, kind, actor, public=False, body=body, mail_id=mail_id, data=data)
    _audit(session, actor, "ticket.note", ticket)
    return event


def request_information(session: Session, ticket: Ticket, actor: Actor, body: str) -> TicketEvent:
    """Ask the customer for clarification or logs: waiting for the customer, and a mail to the requester."""
    _require_text(body)
    if ticket.status == "closed":
        raise StatusTransitionError(ticket.number, ticket.status, "waiting_for_customer")
    event = add_event(session, ticket, "request_info", actor, public=True, body=body)
    _status_change(session, ticket, "waiting_for_customer", actor)
    _audit(session, actor, "ticket.request_info", ticket)
    mailout.queue_mail(session, ticket, to=ticket.requester_email, kind="request_info", text=body, auto=False,
                       signer=signer_of(session, actor))
    return event


def customer_message(session: Session, ticket: Ticket, actor: Actor, body: str, *, mail_id: int | None = None,
                     now: datetime | None = None) -> tuple[Ticket, TicketEvent]:
    """A message from the customer's side on ``ticket``; returns the ticket that took it and the event.

    Waiting for the customer -> in progress. Processed or closed: reopened within
    ``REOPEN_DAYS`` of processing, otherwise a new ticket linked to this one takes the message.
    """
    now = now or utcnow()
    ticket = visible_root(session, ticket)
    if ticket.status in ("processed", "closed"):
        since = ticket.processed_at or ticket.closed_at or ticket.updated_at
        if since is not None and now - since <= timedelta(days=int(_cfg("REOPEN_DAYS", 14))):
            event = add_event(session, ticket, "customer_message", actor, public=True, body=body, mail_id=mail_id)
            _status_change(session, ticket, reopen_status(ticket), actor, reason=M("ticket.reason.reopened_by_customer"))
            return ticket, event
        customer = session.get(Customer, ticket.customer_id) if ticket.customer_id else None
        subject = Message(ticket.subject_code, ticket.subject_params or {}) if ticket.subject_code else ticket.subject
        new = create_ticket(session, actor, subject=subject, description=body, kind=ticket.kind,
                            priority=ticket.priority, customer=customer,
                            requester_email=actor.email or ticket.requester_email,
                            source=_source_of(actor, mail_id), installation_id=ticket.installation_id,
                            previous=ticket, mail_id=mail_id, notify=actor.kind != "installation")
        return new, session.scalar(select(TicketEvent).where(TicketEvent.ticket_id == new.id)
                                   .order_by(TicketEvent.id).limit(1))
    event = add_event(session, ticket, "customer_message", actor, public=True, body=body, mail_id=mail_id)
    if ticket.status == "waiting_for_customer":
        _status_change(session, ticket, "in_progress", actor, reason=M("ticket.reason.customer_answered"))
    return ticket, event


def _source_of(actor: Actor, mail_id: int | None) -> str:
    if mail_id is not None:
        return "mail"
    return {"installation": "agent", "customer": "api"}.get(actor.kind, "api")


def _require_text(body: str | Message) -> None:
    if not isinstance(body, Message) and not (body or "").strip():
        raise ValidationError("the text is empty", field="body")


# ---------------------------------------------------------------- staff changes

def update_ticket(session: Session, ticket: Ticket, actor: Actor, changes: dict[str, Any]) -> Ticket:
    """Apply staff changes: status (with an optional public ``comment``), kind, priority, assignee,
    customer (taking a ticket out of the unassigned queue) and subject. Each change is an event."""
    comment = (changes.get("comment") or "").strip()
    for name, allowed in (("kind", KINDS), ("priority", PRIORITIES)):
        if changes.get(name) is not None and changes[name] != getattr(ticket, name):
            old = getattr(ticket, name)
            setattr(ticket, name, _check(name, changes[name], allowed))
            add_event(session, ticket, "changed", actor, public=name == "kind",
                      data={"field": name, "from": old, "to": changes[name]})
    if changes.get("subject") is not None and changes["subject"].strip() != ticket.subject:
        old = ticket.subject
        ticket.subject = " ".join(changes["subject"].split())[:300]
        ticket.subject_code = ticket.subject_params = None  # a person's words now, shown as written
        add_event(session, ticket, "changed", actor, public=True, data={"field": "subject", "from": old,
                                                                         "to": ticket.subject})
    if "assignee" in changes:
        username = changes["assignee"]
        user = None
        if username:
            user = session.scalar(select(User).where(User.username == username, User.active.is_(True),
                                                     User.role.in_(("admin", "support"))))
            if user is None:
                raise UnknownStaffUserError(username)
        if (user.id if user else None) != ticket.assignee_id:
            old_user = session.get(User, ticket.assignee_id) if ticket.assignee_id else None
            ticket.assignee_id = user.id if user else None
            add_event(session, ticket, "changed", actor, public=False,
                      data={"field": "assignee", "from": old_user.username if old_user else None,
                            "to": user.username if user else None})
    if changes.get("customer") is not None:
        from ..fleet.services import get_customer

        cust = get_customer(session, changes["customer"])
        if cust.id != ticket.customer_id:
            old_cust = session.get(Customer, ticket.customer_id) if ticket.customer_id else None
            if ticket.failure_group_id is not None:
                raise ValidationError("a failure ticket's customer cannot change", field="customer")
            ticket.customer = cust
            add_event(session, ticket, "changed", actor, public=False,
                      data={"field": "customer", "from": old_cust.name if old_cust else None, "to": cust.name})
    status = changes.get("status")
    if status is not None and status != ticket.status:
        _check("status", status, STATUSES)
        if status not in TRANSITIONS[ticket.status]:
            raise StatusTransitionError(ticket.number, ticket.status, status)
        if comment:
            add_event(session, ticket, "reply", actor, public=True, body=comment, data={"with_status": status})
        _status_change(session, ticket, status, actor)
        if status == "processed":
            mailout.queue_mail(session, ticket, to=ticket.requester_email, kind="processed", text=comment,
                               auto=False, signer=signer_of(session, actor))
        elif comment:
            mailout.queue_mail(session, ticket, to=ticket.requester_email, kind="reply", text=comment, auto=False,
                               signer=signer_of(session, actor))
    elif comment:
        staff_reply(session, ticket, actor, comment)
    _audit(session, actor, "ticket.update", ticket,
           {k: v for k, v in changes.items() if k != "comment" and v is not None})
    session.flush()
    return ticket


def set_department(session: Session, ticket: Ticket, actor: Actor, department: str, note: str = "") -> Ticket:
    """Escalate to development or hand back to support: the ticket moves to that queue, on the timeline (internal)."""
    _check("department", department, DEPARTMENTS)
    if ticket.department == department:
        raise ValidationError(f"ticket {ticket.number} is already with {department}", field="department")
    old = ticket.department
    ticket.department = department
    code = "department.escalated" if department == "development" else "department.returned"
    body = M(code + ".note", note=note.strip()[:2000]) if note.strip() else M(code)
    add_event(session, ticket, "department", actor, public=False, body=body,
              data={"field": "department", "from": old, "to": department})
    _audit(session, actor, "ticket.department", ticket, {"from": old, "to": department})
    session.flush()
    return ticket


def recipient_of(session: Session, ticket: Ticket) -> str | None:
    """Who hears about a ticket: its requester, else its customer's contact address."""
    if ticket.requester_email:
        return ticket.requester_email
    customer = session.get(Customer, ticket.customer_id) if ticket.customer_id else None
    return customer.contact_email if customer else None


def review_request(session: Session, ticket: Ticket, actor: Actor, outcome: str, reason: str = "") -> Ticket:
    """The outcome of reviewing a development request, told to the customer in their language (and mailed).

    Accepted: the customer is told that it will be built and, later, in which version (a
    release linked to the ticket, see :mod:`.fixes`). Declined: the reason is required and
    told to the customer; the request is then processed.
    """
    _check("outcome", outcome, REVIEW_OUTCOMES)
    if ticket.kind != "development":
        raise ValidationError(f"ticket {ticket.number} is not a development request", field="kind")
    reason = (reason or "").strip()
    if outcome == "declined" and not reason:
        raise ValidationError("say why the request is declined", field="reason")
    if ticket.status == "closed":
        raise StatusTransitionError(ticket.number, ticket.status, "processed")
    ticket.review, ticket.review_reason = outcome, reason or None
    body = (M("review.declined", number=ticket.number, reason=reason) if outcome == "declined"
            else (M("review.accepted.reason", number=ticket.number, reason=reason) if reason
                  else M("review.accepted", number=ticket.number)))
    add_event(session, ticket, "review", actor, public=not ticket.internal, body=body,
              data={"outcome": outcome, "reason": reason})
    if outcome == "declined":
        _status_change(session, ticket, "processed", actor)
    elif ticket.status == "new":
        _status_change(session, ticket, "in_progress", actor)
    _audit(session, actor, "ticket.review", ticket, {"outcome": outcome})
    mailout.queue_mail(session, ticket, to=recipient_of(session, ticket),
                       kind="processed" if outcome == "declined" else "reply", text=body, auto=False)
    session.flush()
    return ticket


def merge(session: Session, source: Ticket, target: Ticket, actor: Actor) -> Ticket:
    """Merge a duplicate into ``target``: its timeline and attachments move there, it is closed and points there.

    Later mail, replies and failure reports addressed to the duplicate reach the target. Only
    tickets of the same customer (or both in the unassigned queue) merge, and an internal
    ticket only with another internal one, so a merge never shows anyone a ticket they could
    not see before.
    """
    target = root_of(session, target)
    if source.id == target.id:
        raise MergeError(f"cannot merge {source.number} into itself")
    if source.merged_into_id is not None:
        raise MergeError(f"{source.number} is already merged into another ticket")
    if source.customer_id != target.customer_id:
        raise MergeError(f"{source.number} and {target.number} do not belong to the same customer; give both "
                         "the same customer first")
    if source.internal != target.internal:
        raise MergeError(f"{source.number} and {target.number} are not both internal or both customer-facing")
    if target.status == "closed":
        raise MergeError(f"{target.number} is closed")
    session.execute(update(TicketEvent).where(TicketEvent.ticket_id == source.id)
                    .values(ticket_id=target.id).execution_options(synchronize_session=False))
    session.execute(update(TicketAttachment).where(TicketAttachment.ticket_id == source.id)
                    .values(ticket_id=target.id).execution_options(synchronize_session=False))
    from .models import MailMessage

    session.execute(update(MailMessage).where(MailMessage.ticket_id == source.id)
                    .values(ticket_id=target.id).execution_options(synchronize_session=False))
    for gid in linked_groups(session, source):
        if gid not in linked_groups(session, target):
            session.add(TicketFailureGroup(ticket_id=target.id, group_id=gid))
    source.merged_into_id = target.id
    _status_change(session, source, "closed", actor, reason=M("ticket.reason.merged", ticket=target.number))
    add_event(session, source, "merged", actor, public=True, body=M("ticket.merged_into", ticket=target.number),
              data={"into": target.number})
    add_event(session, target, "merged", actor, public=True, body=M("ticket.merged_from", ticket=source.number),
              data={"from": source.number})
    _audit(session, actor, "ticket.merge", source, {"into": target.number})
    session.flush()
    return target


def auto_close(session: Session, now: datetime | None = None) -> list[Ticket]:
    """Close tickets processed more than AUTO_CLOSE_DAYS ago; mail the requester."""
    now = now or utcnow()
    cutoff = now - timedelta(days=int(_cfg("AUTO_CLOSE_DAYS", 7)))
    tickets = list(session.scalars(select(Ticket).where(Ticket.status == "processed", Ticket.processed_at <= cutoff)
                                   .order_by(Ticket.id).limit(500)))
    for ticket in tickets:
        _status_change(session, ticket, "closed", SYSTEM, reason=M("ticket.reason.auto_closed"))
        mailout.queue_mail(session, ticket, to=ticket.requester_email, kind="auto_closed", auto=True)
    return tickets


# ---------------------------------------------------------------- attachments

def add_attachment(session: Session, ticket: Ticket, actor: Actor, blob: StoredBlob, filename: str,
                   content_type: str, *, public: bool = True, event: TicketEvent | None = None,
                   record_event: bool = True) -> TicketAttachment:
    """Attach a stored blob to a ticket, within MAX_ATTACHMENT_SIZE and MAX_ATTACHMENTS_PER_TICKET."""
    check_attachment_allowed(session, ticket, filename, blob.size)
    att = TicketAttachment(ticket_id=ticket.id, event_id=event.id if event else None, filename=filename[:255],
                           content_type=(content_type or "application/octet-stream")[:255], size=blob.size,
                           sha256=blob.sha256, blob_key=blob.key, public=public and actor.kind != "system",
                           uploaded_by=actor.email or actor.name)
    session.add(att)
    session.flush()
    if record_event:
        add_event(session, ticket, "attachment", actor, public=att.public, body=filename,
                  data={"attachment": att.id, "size": blob.size, "content_type": att.content_type})
    if actor.kind == "staff":
        _audit(session, actor, "ticket.attach", ticket, {"filename": filename, "size": blob.size})
    return att


def attach_uploads(session: Session, storage: Any, ticket: Ticket, actor: Actor, uploads: list[Any], *,
                   public: bool = True, field: str = "file") -> list[TicketAttachment]:
    """Store uploaded file parts (spooled and hashed while received) as the ticket's attachments.

    Each part is checked against the limits before it is stored; a refused part stores
    nothing of itself (earlier parts of the same request are undone with its transaction).
    """
    from ..uploads import HashingSpoolFile
    from .mailparse import safe_filename

    stored = []
    for i, upload in enumerate(uploads):
        spool = upload.stream
        if not isinstance(spool, HashingSpoolFile):  # pragma: no cover - only tiny in-memory parts
            raise ValidationError("attachments must be sent as file parts", field=field)
        content_type = upload.mimetype or "application/octet-stream"
        name = safe_filename(upload.filename or "", i, content_type)
        check_attachment_allowed(session, ticket, name, spool.size)
        spool.finish()
        blob = storage.put_file(spool.name, sha256=spool.sha256, size=spool.size, move=True)
        spool.claimed = True
        stored.append(add_attachment(session, ticket, actor, blob, name, content_type, public=public))
    return stored


def check_attachment_allowed(session: Session, ticket: Ticket, filename: str, size: int) -> None:
    limit = int(_cfg("MAX_ATTACHMENT_SIZE", 25 * 1024 * 1024))
    if size > limit:
        raise AttachmentTooLargeError(filename, size, limit)
    if size == 0:
        raise ValidationError(f"attachment {filename!r} is empty", field="file")
    max_count = int(_cfg("MAX_ATTACHMENTS_PER_TICKET", 50))
    count = session.scalar(select(func.count()).select_from(TicketAttachment)
                           .where(TicketAttachment.ticket_id == ticket.id)) or 0
    if count >= max_count:
        raise TooManyAttachmentsError(ticket.number, max_count)


def get_attachment(session: Session, ticket: Ticket, attachment_id: int, actor: Actor) -> TicketAttachment:
    att = session.get(TicketAttachment, attachment_id)
    if att is None or att.ticket_id != ticket.id or (not actor.staff and not att.public):
        raise UnknownAttachmentError(attachment_id)
    return att


# ---------------------------------------------------------------- rollout halts

def open_halt_ticket(session: Session, rollout: Rollout, group_ids: Iterable[int]) -> Ticket:
    """An internal problem ticket for a rollout that halted itself, linked to the failure groups behind it.

    A rollout that is halted again while its halt ticket is still open gets a note on that ticket instead.
    """
    release = rollout.release
    figures = dict(rollout.halt_figures or {})
    where = {"component": release.component.name, "version": release.version, "channel": rollout.channel}
    description = M("halt.description", **where, reason=halt_reason(rollout), attempts=figures.get("attempts", 0),
                    failures=figures.get("failures", 0), rate=pct(figures.get("failure_rate")),
                    threshold=pct(figures.get("threshold")), min_attempts=figures.get("min_attempts", 0),
                    percent=pct(figures.get("percent")))
    ticket = session.scalar(select(Ticket).where(Ticket.rollout_id == rollout.id, Ticket.internal.is_(True),
                                                 Ticket.status.in_(OPEN_STATUSES)).order_by(Ticket.id.desc()))
    if ticket is None:
        ticket = create_ticket(session, SYSTEM, subject=M("halt.subject", **where), description=description,
                               kind="problem", priority="high",
                               source="failure_report", release_id=release.id, rollout_id=rollout.id,
                               internal=True, notify=False)
    else:
        add_note(session, ticket, SYSTEM, M("halt.again", description=description))
    link_groups(session, ticket, group_ids)
    return ticket


def halt_reason(rollout: Rollout) -> Message | str:
    """Why a rollout halted: the rule's own words for an automatic halt, the person's text for a manual one."""
    figures = rollout.halt_figures or {}
    if figures.get("automatic") and figures.get("attempts"):
        return M("halt.reason.automatic", rate=pct(figures.get("failure_rate")), threshold=pct(figures.get("threshold")),
                 attempts=figures.get("attempts"))
    return rollout.halt_reason or M("halt.reason.default")


def link_groups(session: Session, ticket: Ticket, group_ids: Iterable[int]) -> list[int]:
    """Link failure groups to a ticket (idempotent); returns the ids newly linked."""
    have = set(linked_groups(session, ticket))
    added = []
    for gid in sorted(set(group_ids) - have):
        group = session.get(FailureGroup, gid)
        if group is None:
            continue
        session.add(TicketFailureGroup(ticket_id=ticket.id, group_id=gid))
        added.append(gid)
    if added:
        session.flush()
        add_event(session, ticket, "linked", SYSTEM, public=False,
                  body=M("ticket.groups_linked", groups=", ".join(f"#{g}" for g in added)),
                  data={"failure_groups": added})
    return added


def close_by_customer(session: Session, ticket: Ticket, actor: Actor) -> Ticket:
    """A customer closes their own request (nothing more to do); staff see it in the timeline."""
    if actor.kind != "customer" or not actor.may_see(ticket):
        raise UnknownTicketError(ticket.number)
    if ticket.status == "closed":
        raise StatusTransitionError(ticket.number, ticket.status, "closed")
    _status_change(session, ticket, "closed", actor, reason=M("ticket.reason.closed_by_customer"))
    session.flush()
    return ticket
