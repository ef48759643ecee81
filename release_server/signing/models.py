"""Tables of the TUF repository.

* ``tuf_roles``: the current version and expiry of every signed role (root, targets,
  snapshot, timestamp and each hash bin). Bumping a version is always done under the
  repository lock, so concurrent nodes never skip or reuse a version.
* ``tuf_targets``: every signed target path, the bin that lists it, and where its bytes
  are (the release's artifact blob, or a changelog file in storage). Bins are rebuilt
  from these rows and the releases they point to.
* ``tuf_lock``: one row, locked (``SELECT ... FOR UPDATE`` on PostgreSQL; the
  immediate transaction on SQLite) by every metadata change.

Private keys are never stored here.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..db import Base
from ..models_common import UTCDateTime, utcnow
from ..releases.models import Release

LOCK_ID = 1


class TufRole(Base):
    __tablename__ = "tuf_roles"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    expires: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class TufTarget(Base):
    __tablename__ = "tuf_targets"

    path: Mapped[str] = mapped_column(String(512), primary_key=True)
    role: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # "artifact", "changelog" or "delta"
    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id", ondelete="CASCADE"), index=True)
    sha256: Mapped[str] = mapped_column(String(64))
    length: Mapped[int] = mapped_column(BigInteger)

    release: Mapped[Release] = relationship(lazy="joined")


class TufLock(Base):
    __tablename__ = "tuf_lock"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)

