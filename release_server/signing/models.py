"""Tables of the TUF repository.

* ``tuf_roles``: the current version and expiry of every signed role (root, targets,
  snapshot, timestamp and each hash bin). Bumping a version is always done under the
  repository lock, so concurrent nodes never skip or reuse a version.
* ``tuf_targets``: every signed target path, the bin that lists it, and where its bytes
  are (the release's artifact blob, or a changelog file in storage). Bins are rebuilt
  from these rows and the releases they point to.
* ``tuf_claims``: claimed components: the publisher keys (public halves only) and the
  threshold of the delegated role named for the component (see :mod:`.claims`).
* ``tuf_pending``: a change of a claimed component's role waiting for publisher
  signatures (at most one per component): the proposed role with the signatures
  gathered so far, what it does once the threshold is met, and, for a key change, the
  offline-signed top-level targets published together with it.
* ``tuf_lock``: one row, locked (``SELECT ... FOR UPDATE`` on PostgreSQL; the
  immediate transaction on SQLite) by every metadata change.

Private keys are never stored here.
"""
from __future__ import annotations

from datetime import datetime

from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Integer, LargeBinary, String, Text
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



class TufClaim(Base):
    __tablename__ = "tuf_claims"

    component: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: keyid -> securesystemslib key dict (public keys only)
    keys: Mapped[dict[str, Any]] = mapped_column(JSON)
    threshold: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class TufPending(Base):
    __tablename__ = "tuf_pending"

    component: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: "publish", "yank", "unyank", "promote", "keys" or "renew"
    action: Mapped[str] = mapped_column(String(16))
    release_id: Mapped[int | None] = mapped_column(ForeignKey("releases.id", ondelete="CASCADE"), index=True)
    #: what the action changes once signed (yank reason, channel)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: the proposed role: canonical-JSON-serialisable Metadata dict with the signatures so far
    role_json: Mapped[str] = mapped_column(Text)
    #: for a key change: the new top-level targets, signed offline, published with the role
    targets_bytes: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_by: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    release: Mapped[Release | None] = relationship(lazy="joined")
