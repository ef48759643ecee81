"""Fleet tables: customers, enrollment tokens, installations, their inventory and reports."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Float, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..db import Base
from ..models_common import UTCDateTime, utcnow


class Customer(Base):
    """An organisation that runs one or more installations."""

    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    contact_email: Mapped[str | None] = mapped_column(String(254), index=True)
    mail_domains: Mapped[list[str]] = mapped_column(JSON, default=list)
    # defaults for the customer's contacts who chose nothing themselves (language of mails and pages, time zone)
    locale: Mapped[str | None] = mapped_column(String(8))
    timezone: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    installations: Mapped[list[Installation]] = relationship(back_populates="customer")


class CustomerMailDomain(Base):
    """A mail domain of a customer's users, one row each: incoming mail finds its customer by index."""

    __tablename__ = "customer_mail_domains"

    domain: Mapped[str] = mapped_column(String(253), primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True)


class EnrollmentToken(Base):
    """A secret that lets new installations of one customer register (``rse_<prefix>_<secret>``)."""

    __tablename__ = "enrollment_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    max_uses: Mapped[int | None] = mapped_column(Integer)
    uses: Mapped[int] = mapped_column(Integer, default=0)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    customer: Mapped[Customer] = relationship()


class Installation(Base):
    """One running copy of the application at a customer, identified by a UUID."""

    __tablename__ = "installations"
    __table_args__ = (
        Index("ix_installations_name_id", "name", "id"),  # the lists page by name
        # the few revoked ones, which the fleet's figures subtract (rollouts.figures)
        Index("ix_installations_revoked", "id", postgresql_where=text("revoked_at IS NOT NULL"),
              sqlite_where=text("revoked_at IS NOT NULL")),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="RESTRICT"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    hostname: Mapped[str] = mapped_column(String(255), default="")
    platform: Mapped[str] = mapped_column(String(120), default="")
    agent_version: Mapped[str] = mapped_column(String(64), default="")
    channel: Mapped[str] = mapped_column(String(64), default="stable")
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    maintenance_window: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(20), default="up_to_date")  # up_to_date | updating | failing
    token_prefix: Mapped[str] = mapped_column(String(16), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    enrolled_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)

    customer: Mapped[Customer] = relationship(back_populates="installations", lazy="joined")
    components: Mapped[list[InstalledComponent]] = relationship(back_populates="installation",
                                                                cascade="all, delete-orphan", lazy="selectin")

    @property
    def versions(self) -> dict[str, str]:
        return {c.component: c.version for c in self.components}


class InstalledComponent(Base):
    """The version of one component an installation last reported."""

    __tablename__ = "installed_components"

    installation_id: Mapped[str] = mapped_column(ForeignKey("installations.id", ondelete="CASCADE"),
                                                 primary_key=True)
    component: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    installation: Mapped[Installation] = relationship(back_populates="components")


class UpdateReport(Base):
    """The outcome of one update attempt, as the agent reported it. The agent's UUID is the key."""

    __tablename__ = "update_reports"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    installation_id: Mapped[str] = mapped_column(ForeignKey("installations.id", ondelete="CASCADE"), index=True)
    component: Mapped[str] = mapped_column(String(64), index=True)
    from_version: Mapped[str | None] = mapped_column(String(64))
    to_version: Mapped[str] = mapped_column(String(64))
    release_id: Mapped[int | None] = mapped_column(ForeignKey("releases.id", ondelete="SET NULL"), index=True)
    outcome: Mapped[str] = mapped_column(String(20), index=True)  # success | rolled_back | failed | refused | operator_rollback
    stage: Mapped[str | None] = mapped_column(String(40))
    error_code: Mapped[str | None] = mapped_column(String(80))
    error_message: Mapped[str | None] = mapped_column(Text)
    duration_seconds: Mapped[float | None] = mapped_column(Float)
    log_tail: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    bytes_downloaded: Mapped[int | None] = mapped_column(BigInteger)  # what the transfer cost
    bytes_full: Mapped[int | None] = mapped_column(BigInteger)  # what a full download would have cost

    installation: Mapped[Installation] = relationship()


class InstallationChange(Base):
    """The change feed of installations' credentials and settings.

    One row per revocation or settings change, keyed by the value that change gave
    ``catalog_state.auth_version``; every process asks for the rows after the last
    version it applied and forgets exactly those installations' cached credentials.
    ``installation_id`` NULL means "every installation" (a change of unknown scope).
    """

    __tablename__ = "installation_changes"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    installation_id: Mapped[str | None] = mapped_column(String(36))
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
