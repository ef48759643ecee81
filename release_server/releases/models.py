"""Release tables: components, channels, releases and their channel membership."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, ForeignKey, Integer, String, Table, Text, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..db import Base
from ..models_common import UTCDateTime, utcnow

release_channels = Table(
    "release_channels",
    Base.metadata,
    Column("release_id", ForeignKey("releases.id", ondelete="CASCADE"), primary_key=True),
    Column("channel_id", ForeignKey("channels.id", ondelete="RESTRICT"), primary_key=True),
)


class Component(Base):
    __tablename__ = "components"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    releases: Mapped[list[Release]] = relationship(back_populates="component")


class Channel(Base):
    __tablename__ = "channels"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    #: every release published on this channel must start as a staged rollout
    require_staged_rollout: Mapped[bool] = mapped_column(default=False, server_default=false())


class Release(Base):
    __tablename__ = "releases"
    __table_args__ = (UniqueConstraint("component_id", "version", name="uq_releases_component_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    component_id: Mapped[int] = mapped_column(ForeignKey("components.id", ondelete="RESTRICT"), index=True)
    version: Mapped[str] = mapped_column(String(64))  # PEP 440, normalised
    artifact_filename: Mapped[str] = mapped_column(String(255))
    artifact_sha256: Mapped[str] = mapped_column(String(64))
    artifact_size: Mapped[int] = mapped_column(BigInteger)
    blob_key: Mapped[str] = mapped_column(String(255), index=True)
    changelog: Mapped[str] = mapped_column(Text, default="")
    #: the changelog rendered and sanitised once, at publish
    changelog_html: Mapped[str] = mapped_column(Text, default="", server_default="")
    critical: Mapped[bool] = mapped_column(default=False)
    min_from_version: Mapped[str | None] = mapped_column(String(64))
    requires: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_by: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    yanked: Mapped[bool] = mapped_column(default=False)
    yank_reason: Mapped[str | None] = mapped_column(Text)
    yanked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: a release of a claimed component below its publishers' signature threshold: never offered
    signatures_pending: Mapped[bool] = mapped_column(default=False, server_default=false())

    component: Mapped[Component] = relationship(back_populates="releases", lazy="joined")
    channels: Mapped[list[Channel]] = relationship(secondary=release_channels, lazy="selectin")

    @property
    def channel_names(self) -> list[str]:
        return sorted(c.name for c in self.channels)
