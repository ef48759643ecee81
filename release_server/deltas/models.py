"""The table of delta patches between releases.

One row per (from release, to release) pair the server tried, whatever came of it:
``ready`` (stored and signed as a TUF target), ``too_large`` (not at least the
configured saving smaller than the full artifact, so not kept), ``unsupported`` (an
artifact that is not a tar stream) or ``failed``. The row stops the worker from trying
the same pair again; ``release-server deltas generate --force`` tries again.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..db import Base
from ..models_common import UTCDateTime, utcnow
from ..releases.models import Release

READY = "ready"


class ReleaseDelta(Base):
    __tablename__ = "release_deltas"
    __table_args__ = (UniqueConstraint("from_release_id", "to_release_id", name="uq_release_deltas_pair"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    from_release_id: Mapped[int] = mapped_column(ForeignKey("releases.id", ondelete="CASCADE"), index=True)
    to_release_id: Mapped[int] = mapped_column(ForeignKey("releases.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(20))  # ready | too_large | unsupported | failed
    reason: Mapped[str | None] = mapped_column(Text)
    method: Mapped[str] = mapped_column(String(32))
    target_path: Mapped[str | None] = mapped_column(String(512), unique=True)
    sha256: Mapped[str | None] = mapped_column(String(64))
    length: Mapped[int | None] = mapped_column(BigInteger)
    base_tar_sha256: Mapped[str | None] = mapped_column(String(64))
    base_tar_length: Mapped[int | None] = mapped_column(BigInteger)
    tar_sha256: Mapped[str | None] = mapped_column(String(64))
    tar_length: Mapped[int | None] = mapped_column(BigInteger)
    generation_seconds: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    from_release: Mapped[Release] = relationship(foreign_keys=[from_release_id], lazy="joined")
    to_release: Mapped[Release] = relationship(foreign_keys=[to_release_id], lazy="joined")
