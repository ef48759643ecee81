"""Rollout tables: staged rollouts, pins, restricted releases, the catalog version, adoption by day."""
from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Date, Float, ForeignKey, ForeignKeyConstraint, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..db import Base
from ..models_common import UTCDateTime, utcnow
from ..releases.models import Release

ROLLOUT_STATES = ("draft", "running", "paused", "halted", "completed")


class CatalogState(Base):
    """One row whose ``version`` grows with every change that can alter an offer."""

    __tablename__ = "catalog_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer, default=0)
    auth_version: Mapped[int] = mapped_column(Integer, default=0)


class Rollout(Base):
    """A staged rollout of one release on one channel."""

    __tablename__ = "rollouts"
    __table_args__ = (UniqueConstraint("release_id", "channel", name="uq_rollouts_release_channel"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id", ondelete="CASCADE"), index=True)
    channel: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(20), default="draft")
    share: Mapped[int] = mapped_column(Integer, default=0)  # buckets admitted, 0..10000
    schedule: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)  # [{"percent", "min_hours"}]
    phase: Mapped[int] = mapped_column(Integer, default=0)
    phase_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    failure_threshold: Mapped[float] = mapped_column(Float, default=0.05)
    min_attempts: Mapped[int] = mapped_column(Integer, default=20)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    successes: Mapped[int] = mapped_column(Integer, default=0)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    halted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    halt_reason: Mapped[str | None] = mapped_column(Text)
    halt_figures: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_by: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    release: Mapped[Release] = relationship(lazy="joined")


class Pin(Base):
    """Keeps a component of some installations on an exact version or a version prefix."""

    __tablename__ = "pins"
    __table_args__ = (UniqueConstraint("scope", "scope_value", "component", name="uq_pins_scope"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scope: Mapped[str] = mapped_column(String(20))  # installation | tag | customer
    scope_value: Mapped[str] = mapped_column(String(200))
    component: Mapped[str] = mapped_column(String(64))
    value: Mapped[str] = mapped_column(String(64))
    exact: Mapped[bool] = mapped_column(default=False)
    note: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ReleaseRestriction(Base):
    """A release offered only to the named customers or installations."""

    __tablename__ = "release_restrictions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id", ondelete="CASCADE"), index=True)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    installation_id: Mapped[str | None] = mapped_column(ForeignKey("installations.id", ondelete="CASCADE"))


class AdoptionDayCounted(Base):
    """A (day, component) whose adoption has been counted: its counts are in :class:`AdoptionCount`.

    The primary key is what keeps a day from being counted twice (two workers, a re-run):
    the second writer's insert fails and its whole batch is rolled back."""

    __tablename__ = "adoption_days"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    component: Mapped[str] = mapped_column(String(64), primary_key=True)
    counted_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class AdoptionCount(Base):
    """How many installations ran a version of a component at the end of a (UTC) day."""

    __tablename__ = "adoption_counts"
    __table_args__ = (ForeignKeyConstraint(["day", "component"], ["adoption_days.day", "adoption_days.component"],
                                           ondelete="CASCADE"),)

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    component: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    installations: Mapped[int] = mapped_column(Integer)
