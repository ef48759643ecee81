"""Support tables: tickets and their timeline, attachments, failure groups, mail, customer users.

A ticket's number is ``<TICKET_PREFIX>-<seq>`` where ``seq`` comes from the database:
a PostgreSQL SEQUENCE (``ticket_number_seq``, owned by ``tickets.seq``), or on SQLite
the ``ticket_counters`` row incremented inside the writer's ``BEGIN IMMEDIATE``
transaction. Either way two server processes never hand out the same number.

Failure grouping relies on unique constraints, not on application locks:
``failure_groups.fingerprint`` and ``tickets (failure_group_id, customer_id)`` make
concurrent inserts of the same group or ticket collide, and the loser reads the
winner's row (insert-or-get, see :mod:`.failures`).
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..db import Base
from ..fleet.models import Customer
from ..models_common import UTCDateTime, utcnow
# the desk's fixed words, still imported from here by most of the package
from .vocabulary import DEPARTMENTS, KINDS, OPEN_STATUSES, PRIORITIES, REVIEW_OUTCOMES, SOURCES, STATUSES  # noqa: F401


class TicketCounter(Base):
    """Named counters for SQLite (PostgreSQL uses a SEQUENCE instead)."""

    __tablename__ = "ticket_counters"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)


class Ticket(Base):
    """One request: an incident, a problem, a service request or a development request."""

    __tablename__ = "tickets"
    __table_args__ = (
        UniqueConstraint("failure_group_id", "customer_id", name="uq_tickets_failure_group_customer"),
        Index("ix_tickets_status_updated", "status", "updated_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    number: Mapped[str] = mapped_column(String(40), unique=True)
    kind: Mapped[str] = mapped_column(String(20), index=True)
    subject: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(24), default="new")
    priority: Mapped[str] = mapped_column(String(10), default="normal")
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id", ondelete="RESTRICT"), index=True)
    requester_email: Mapped[str | None] = mapped_column(String(254), index=True)
    requester_name: Mapped[str] = mapped_column(String(200), default="")
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    source: Mapped[str] = mapped_column(String(20))
    internal: Mapped[bool] = mapped_column(Boolean, default=False)  # never shown to customers (rollout halts)
    installation_id: Mapped[str | None] = mapped_column(ForeignKey("installations.id", ondelete="SET NULL"),
                                                        index=True)
    release_id: Mapped[int | None] = mapped_column(ForeignKey("releases.id", ondelete="SET NULL"))
    rollout_id: Mapped[int | None] = mapped_column(ForeignKey("rollouts.id", ondelete="SET NULL"), index=True)
    failure_group_id: Mapped[int | None] = mapped_column(ForeignKey("failure_groups.id", ondelete="SET NULL"),
                                                         index=True)
    previous_ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id", ondelete="SET NULL"))
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id", ondelete="SET NULL"))
    regression: Mapped[bool] = mapped_column(Boolean, default=False)
    department: Mapped[str] = mapped_column(String(20), default="support", server_default="support", index=True)
    review: Mapped[str | None] = mapped_column(String(12))  # accepted | declined (development requests)
    review_reason: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # a subject/description the system wrote: message code and parameters (see release_server.messages)
    subject_code: Mapped[str | None] = mapped_column(String(80))
    subject_params: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    description_code: Mapped[str | None] = mapped_column(String(80))
    description_params: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    customer: Mapped[Customer | None] = relationship(lazy="joined")
    previous_ticket: Mapped[Ticket | None] = relationship(remote_side="Ticket.id",
                                                          foreign_keys=[previous_ticket_id])
    merged_into: Mapped[Ticket | None] = relationship(remote_side="Ticket.id", foreign_keys=[merged_into_id])


class TicketEvent(Base):
    """One entry of a ticket's timeline: a message, a note, a change, a failure report, a mail."""

    __tablename__ = "ticket_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    kind: Mapped[str] = mapped_column(String(30))
    public: Mapped[bool] = mapped_column(Boolean, default=False)
    author: Mapped[str] = mapped_column(String(254), default="")
    author_kind: Mapped[str] = mapped_column(String(20), default="system")  # staff|customer|installation|system
    body: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    mail_id: Mapped[int | None] = mapped_column(ForeignKey("mail_messages.id", ondelete="SET NULL"))
    body_code: Mapped[str | None] = mapped_column(String(80))  # a body the system wrote (release_server.messages)
    body_params: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class TicketAttachment(Base):
    """A file on a ticket, stored content-addressed in blob storage."""

    __tablename__ = "ticket_attachments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    event_id: Mapped[int | None] = mapped_column(ForeignKey("ticket_events.id", ondelete="SET NULL"))
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(255), default="application/octet-stream")
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    blob_key: Mapped[str] = mapped_column(String(255))
    public: Mapped[bool] = mapped_column(Boolean, default=True)
    uploaded_by: Mapped[str] = mapped_column(String(254), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class FailureGroup(Base):
    """Failure reports that share a fingerprint: one cause, seen across installations."""

    __tablename__ = "failure_groups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    component: Mapped[str] = mapped_column(String(64), index=True)
    target_version: Mapped[str] = mapped_column(String(64))
    stage: Mapped[str] = mapped_column(String(40), default="")
    error_code: Mapped[str] = mapped_column(String(80), default="")
    message_pattern: Mapped[str] = mapped_column(Text, default="")
    sample_message: Mapped[str] = mapped_column(Text, default="")
    regressions: Mapped[int] = mapped_column(Integer, default=0)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # unresolved | resolved (optionally "in version X") | ignored (until a time or N more reports)
    state: Mapped[str] = mapped_column(String(12), default="unresolved", server_default="unresolved", index=True)
    resolved_in_version: Mapped[str | None] = mapped_column(String(64))
    state_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    state_changed_by: Mapped[str | None] = mapped_column(String(120))
    ignored_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ignored_until_reports: Mapped[int | None] = mapped_column(Integer)  # total report count that ends the ignore
    #: the fingerprint without the target version (:func:`.fingerprint.cause_of`): the same failure on a later
    #: release, which reopens a group resolved in that release or an older one as a regression
    cause: Mapped[str | None] = mapped_column(String(64), index=True)
    # Counts and last seen are aggregates over failure_group_reports/_installations (see failures.stats):
    # no per-report update of this row, so concurrent reports of one cause never queue on it.


class FailureGroupInstallation(Base):
    """An installation affected by a failure group (one row per pair)."""

    __tablename__ = "failure_group_installations"

    group_id: Mapped[int] = mapped_column(ForeignKey("failure_groups.id", ondelete="CASCADE"), primary_key=True)
    installation_id: Mapped[str] = mapped_column(ForeignKey("installations.id", ondelete="CASCADE"),
                                                 primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    #: when the installation reported success on a release that fixes the group (None: not fixed there yet)
    fixed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    fixed_version: Mapped[str | None] = mapped_column(String(64))


Index("ix_failure_group_installations_installation_id", FailureGroupInstallation.installation_id)


class FailureGroupReport(Base):
    """Which group (and ticket) a failure report joined."""

    __tablename__ = "failure_group_reports"

    report_id: Mapped[str] = mapped_column(ForeignKey("update_reports.id", ondelete="CASCADE"), primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("failure_groups.id", ondelete="CASCADE"), index=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id", ondelete="SET NULL"), index=True)
    installation_id: Mapped[str] = mapped_column(String(36))
    outcome: Mapped[str] = mapped_column(String(20))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class TicketFailureGroup(Base):
    """Links a ticket to failure groups beyond its own (a rollout-halt ticket lists its causes)."""

    __tablename__ = "ticket_failure_groups"

    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("failure_groups.id", ondelete="CASCADE"), primary_key=True)


class ReleaseFixedGroup(Base):
    """A release that fixes a failure group (linked at publish or afterwards, audited)."""

    __tablename__ = "release_fixed_groups"

    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id", ondelete="CASCADE"), primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("failure_groups.id", ondelete="CASCADE"), primary_key=True,
                                          index=True)
    linked_by: Mapped[str] = mapped_column(String(120), default="")
    linked_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ReleaseFixedTicket(Base):
    """A release that fixes (or implements) a ticket: shown on both, the customer sees only their own."""

    __tablename__ = "release_fixed_tickets"

    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id", ondelete="CASCADE"), primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), primary_key=True,
                                           index=True)
    linked_by: Mapped[str] = mapped_column(String(120), default="")
    linked_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class MailMessage(Base):
    """A mail received (raw bytes kept in blob storage) or to be sent (the outbox)."""

    __tablename__ = "mail_messages"
    __table_args__ = (Index("ix_mail_messages_outbox", "direction", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    direction: Mapped[str] = mapped_column(String(3))  # "in" | "out"
    message_id: Mapped[str] = mapped_column(String(998), default="", index=True)
    # inbound: "in:" + sha256 of the Message-ID, else "raw:" + sha256 of the raw bytes
    dedupe_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id", ondelete="SET NULL"), index=True)
    from_addr: Mapped[str] = mapped_column(String(254), default="")
    to_addr: Mapped[str] = mapped_column(String(254), default="", index=True)
    subject: Mapped[str] = mapped_column(Text, default="")
    # in: stored | unparseable | bounce | auto | duplicate ; out: pending | sending | sent | failed | suppressed
    status: Mapped[str] = mapped_column(String(20))
    outcome: Mapped[str] = mapped_column(String(40), default="")
    blob_key: Mapped[str | None] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    # outbound only
    kind: Mapped[str] = mapped_column(String(30), default="")  # registered | reply | request_info | ...
    body: Mapped[str] = mapped_column(Text, default="")
    in_reply_to: Mapped[str] = mapped_column(String(998), default="")
    references: Mapped[list[str]] = mapped_column(JSON, default=list)
    auto_generated: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    claimed_by: Mapped[str | None] = mapped_column(String(255))  # the worker lease holder sending it now
    last_error: Mapped[str] = mapped_column(Text, default="")
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)


class CustomerUser(Base):
    """A person at a customer who files and follows that customer's requests."""

    __tablename__ = "customer_users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    locale: Mapped[str | None] = mapped_column(String(8))  # interface language chosen by the person
    timezone: Mapped[str | None] = mapped_column(String(64))  # IANA zone the person reads times in
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    #: Raised by logout, a password change and disabling: every portal session of the user ends.
    session_generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    customer: Mapped[Customer] = relationship(lazy="joined")


class CustomerToken(Base):
    """A customer user's API token: ``rsc_<prefix>_<secret>``; only a SHA-256 of it is kept."""

    __tablename__ = "customer_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(120))
    customer_user_id: Mapped[int] = mapped_column(ForeignKey("customer_users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    user: Mapped[CustomerUser] = relationship(lazy="joined")


class TicketCc(Base):
    """Another contact who gets copies of a ticket's mails (a colleague of the requester)."""

    __tablename__ = "ticket_cc"
    __table_args__ = (UniqueConstraint("ticket_id", "email", name="uq_ticket_cc_ticket_email"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    email: Mapped[str] = mapped_column(String(254))
    added_by: Mapped[str] = mapped_column(String(200), default="")
    added_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class SavedFilter(Base):
    """A staff member's named view of the ticket queue (the query string of the list page)."""

    __tablename__ = "saved_ticket_filters"
    __table_args__ = (UniqueConstraint("user_id", "name", name="uq_saved_ticket_filters_user_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(80))
    query: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class CannedReply(Base):
    """A prepared answer staff insert into the composer and adapt."""

    __tablename__ = "canned_replies"
    __table_args__ = (UniqueConstraint("title", name="uq_canned_replies_title"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(120))
    body: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
