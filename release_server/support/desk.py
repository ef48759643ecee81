"""The support desk's working aids: CC contacts, saved queue filters, canned replies, staff display names.

Rules:

* **CC.** A ticket of a customer may copy other contacts *of the same customer* (its portal
  users, its contact address, or an address in one of its mail domains); copies of every
  customer-facing mail (replies, requests for information, "processed", auto-close) go to
  each, in each person's language. An internal ticket or one in the unassigned queue has
  no CC. Adding and removing are internal timeline events.
* **Saved filters.** A staff member names a view of the queue; it stores only the list
  page's known query keys, and :func:`filter_from_query` turns it (or the page's own
  query) into a :class:`~release_server.support.services.TicketFilter`, so the count beside a
  saved filter is exactly what the list shows.
* **Canned replies.** Shared prepared answers (title, text) that the composer inserts.
* **Display names.** Customers never see a staff login name: replies show, and mails are
  signed with, the staff member's display name, or "Support team" when they chose none.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..accounts.models import User
from ..errors import ConflictError, NotFoundError, ValidationError
from ..fleet.models import Customer
from .models import DEPARTMENTS, KINDS, OPEN_STATUSES, STATUSES, CannedReply, CustomerUser, SavedFilter, Ticket, TicketCc

QUERY_KEYS = ("status", "kind", "customer", "assignee", "department", "q", "queue", "sort", "dir")
MAX_SAVED_FILTERS = 30


# ---------------------------------------------------------------- CC

def customer_contacts(session: Session, ticket: Ticket) -> list[str]:
    """Addresses the ticket may copy: the customer's portal users and contact address, not the requester."""
    if ticket.customer_id is None or ticket.internal:
        return []
    cust = session.get(Customer, ticket.customer_id)
    found = {u.email.lower() for u in session.scalars(select(CustomerUser).where(
        CustomerUser.customer_id == ticket.customer_id, CustomerUser.active.is_(True)))}
    if cust is not None and cust.contact_email:
        found.add(cust.contact_email.lower())
    found.discard((ticket.requester_email or "").lower())
    return sorted(found - set(cc_of(session, ticket)))


def cc_of(session: Session, ticket: Ticket) -> list[str]:
    return list(session.scalars(select(TicketCc.email).where(TicketCc.ticket_id == ticket.id).order_by(TicketCc.id)))


def add_cc(session: Session, ticket: Ticket, actor: Any, email: str) -> TicketCc:
    """Copy another contact of the ticket's customer on the ticket's mails."""
    from .customers import check_email
    from .services import _audit, add_event

    email = check_email((email or "").strip(), "email").lower()
    if ticket.customer_id is None or ticket.internal:
        raise ValidationError("only a customer's ticket has CC contacts", field="email")
    cust = session.get(Customer, ticket.customer_id)
    domain = email.rsplit("@", 1)[-1]
    known = session.scalar(select(CustomerUser.id).where(func.lower(CustomerUser.email) == email,
                                                         CustomerUser.customer_id == ticket.customer_id))
    if known is None and (cust is None or ((cust.contact_email or "").lower() != email
                                           and domain not in [d.lower() for d in cust.mail_domains or []])):
        raise ValidationError(f"{email} is not a contact of this ticket's customer", field="email")
    if email == (ticket.requester_email or "").lower() or email in cc_of(session, ticket):
        raise ConflictError(f"{email} already gets this ticket's mail", field="email")
    row = TicketCc(ticket_id=ticket.id, email=email, added_by=actor.name)
    session.add(row)
    add_event(session, ticket, "changed", actor, public=False, data={"field": "cc", "from": None, "to": email})
    _audit(session, actor, "ticket.cc.add", ticket, {"email": email})
    session.flush()
    return row


def remove_cc(session: Session, ticket: Ticket, actor: Any, email: str) -> None:
    from .services import _audit, add_event

    row = session.scalar(select(TicketCc).where(TicketCc.ticket_id == ticket.id,
                                                func.lower(TicketCc.email) == (email or "").strip().lower()))
    if row is None:
        raise NotFoundError(f"{email} is not copied on {ticket.number}", field="email")
    session.delete(row)
    add_event(session, ticket, "changed", actor, public=False, data={"field": "cc", "from": row.email, "to": None})
    _audit(session, actor, "ticket.cc.remove", ticket, {"email": row.email})
    session.flush()


# ---------------------------------------------------------------- saved filters

def clean_query(query: Mapping[str, Any]) -> dict[str, str]:
    """Only the list page's known keys, as short strings, empty ones left out."""
    return {k: str(query.get(k) or "")[:200] for k in QUERY_KEYS if str(query.get(k) or "").strip()}


def filter_from_query(query: Mapping[str, Any], me: str | None, *, page: int = 1, per_page: int = 30) -> Any:
    """The queue filter a list-page query (or a saved filter) stands for. Unknown values fall back to defaults."""
    from .services import SORTS, TicketFilter

    status_arg = query.get("status") or "open"
    statuses = list(OPEN_STATUSES) if status_arg == "open" else ([status_arg] if status_arg in STATUSES else [])
    kind = query.get("kind") if query.get("kind") in KINDS else None
    assignee = query.get("assignee") or None
    if assignee == "me":
        assignee = me
    sort = query.get("sort") if query.get("sort") in SORTS else "updated"
    descending = query.get("dir", "desc" if sort in ("updated", "created", "priority") else "asc") != "asc"
    q = (query.get("q") or "").strip()[:200]
    department = query.get("department") if query.get("department") in DEPARTMENTS else None
    return TicketFilter(status=statuses, kind=kind, customer=query.get("customer") or None, assignee=assignee,
                        q=q or None, page=page, per_page=per_page, unassigned_queue=query.get("queue") == "unassigned",
                        department=department, sort=sort, descending=descending)


def save_filter(session: Session, user: User, name: str, query: Mapping[str, Any]) -> SavedFilter:
    name = " ".join((name or "").split())
    if not name or len(name) > 80:
        raise ValidationError("a filter's name is 1 to 80 characters", field="name")
    existing = session.scalar(select(SavedFilter).where(SavedFilter.user_id == user.id, SavedFilter.name == name))
    if existing is not None:
        existing.query = clean_query(query)
        session.flush()
        return existing
    count = session.scalar(select(func.count()).select_from(SavedFilter).where(SavedFilter.user_id == user.id))
    if count >= MAX_SAVED_FILTERS:
        raise ValidationError(f"at most {MAX_SAVED_FILTERS} saved filters", field="name")
    row = SavedFilter(user_id=user.id, name=name, query=clean_query(query))
    session.add(row)
    session.flush()
    return row


def saved_filters(session: Session, user: User) -> list[SavedFilter]:
    return list(session.scalars(select(SavedFilter).where(SavedFilter.user_id == user.id).order_by(SavedFilter.name)))


def delete_filter(session: Session, user: User, filter_id: int) -> SavedFilter:
    row = session.get(SavedFilter, filter_id)
    if row is None or row.user_id != user.id:
        raise NotFoundError(f"no saved filter {filter_id}", field="filter")
    session.delete(row)
    session.flush()
    return row


def saved_filters_with_counts(session: Session, user: User, actor: Any) -> list[tuple[SavedFilter, int]]:
    from .services import count_tickets

    return [(f, count_tickets(session, actor, filter_from_query(f.query, user.username)))
            for f in saved_filters(session, user)]


# ---------------------------------------------------------------- canned replies

def canned_replies(session: Session) -> list[CannedReply]:
    return list(session.scalars(select(CannedReply).order_by(func.lower(CannedReply.title))))


def add_canned_reply(session: Session, title: str, body: str, actor: str) -> CannedReply:
    title = " ".join((title or "").split())
    if not title or len(title) > 120:
        raise ValidationError("a title is 1 to 120 characters", field="title")
    if not (body or "").strip():
        raise ValidationError("the text is empty", field="body")
    if len(body) > 20_000:
        raise ValidationError("at most 20000 characters", field="body")
    if session.scalar(select(CannedReply.id).where(func.lower(CannedReply.title) == title.lower())) is not None:
        raise ConflictError(f"a canned reply is already called {title!r}", field="title")
    row = CannedReply(title=title, body=body.strip(), created_by=actor)
    session.add(row)
    session.flush()
    return row


def get_canned_reply(session: Session, reply_id: int) -> CannedReply:
    row = session.get(CannedReply, reply_id)
    if row is None:
        raise NotFoundError(f"no canned reply {reply_id}", field="canned")
    return row


def delete_canned_reply(session: Session, reply_id: int) -> CannedReply:
    row = get_canned_reply(session, reply_id)
    session.delete(row)
    session.flush()
    return row


# ---------------------------------------------------------------- display names

def set_display_name(session: Session, user: User, name: str | None) -> User:
    name = " ".join((name or "").split()) or None
    if name is not None and len(name) > 120:
        raise ValidationError("at most 120 characters", field="display_name")
    user.display_name = name
    session.flush()
    return user


def public_names(session: Session, usernames: set[str]) -> dict[str, str]:
    """{login name: the name customers see} for the staff who wrote; those without a display name are left out."""
    if not usernames:
        return {}
    return {u: d for u, d in session.execute(select(User.username, User.display_name).where(
        User.username.in_(sorted(usernames)), User.display_name.is_not(None)))}
