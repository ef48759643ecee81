"""Where each installation on a rollout's channel stands in that rollout (read-only).

The states, decided by :func:`member_state` from what the server already holds (no
write on any request path):

``installed``
    the installation runs the release (its inventory says so, or it reported success);
``failed`` / ``rolled_back``
    its latest attempt at the release ended so;
``downloading``
    inside the share, no outcome yet, and its last check was answered with an offer
    (the installation's state is ``updating``: the agent fetches an offer right after its
    check and installs it in its maintenance window). The state is noted in memory by the
    check and written in the batched last-seen flush (see :mod:`release_server.fleet.lastseen`);
``offered``
    inside the share (or the release is critical), not seen fetching yet;
``not_in_share``
    its bucket is at or above the share.

:func:`rollout_members` is linear in the channel's installations plus the release's
reports, read in three queries.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..fleet.models import Installation, InstalledComponent, UpdateReport
from .models import Rollout
from .policy import bucket

STATES = ("installed", "failed", "rolled_back", "downloading", "offered", "not_in_share")


def member_state(*, runs_release: bool, latest_outcome: str | None, in_share: bool,
                 installation_state: str | None) -> str:
    """The rollout state of one installation (see the module docstring for the meaning of each)."""
    if runs_release or latest_outcome == "success":
        return "installed"
    if latest_outcome in ("failed", "rolled_back"):
        return latest_outcome
    if not in_share:
        return "not_in_share"
    if installation_state == "updating":
        return "downloading"
    return "offered"


@dataclass
class Member:
    installation: Installation
    bucket: int
    state: str
    attempts: list[UpdateReport] = field(default_factory=list)  # oldest first

    @property
    def report(self) -> UpdateReport | None:
        """The latest attempt."""
        return self.attempts[-1] if self.attempts else None

    def __getitem__(self, key: str) -> Any:  # templates read m.state and m["state"] alike
        return getattr(self, key)


def rollout_members(session: Session, ro: Rollout) -> list[Member]:
    """Every live installation on the rollout's channel with its state and its attempts at the release."""
    release = ro.release
    component = release.component.name.lower()
    insts = list(session.scalars(select(Installation).where(Installation.channel == ro.channel,
                                                            Installation.revoked_at.is_(None))
                                 .order_by(Installation.name, Installation.id)))
    versions = dict(session.execute(select(InstalledComponent.installation_id, InstalledComponent.version)
                                    .where(func.lower(InstalledComponent.component) == component)).all())
    attempts: dict[str, list[UpdateReport]] = {}
    for r in session.scalars(select(UpdateReport).where(UpdateReport.release_id == release.id)
                             .order_by(UpdateReport.received_at, UpdateReport.id)):
        attempts.setdefault(r.installation_id, []).append(r)
    rows = []
    for inst in insts:
        b = bucket(inst.id, release.id)
        mine = attempts.get(inst.id, [])
        state = member_state(runs_release=versions.get(inst.id) == release.version,
                             latest_outcome=mine[-1].outcome if mine else None,
                             in_share=release.critical or b < ro.share, installation_state=inst.state)
        rows.append(Member(inst, b, state, mine))
    return rows


def count_by_state(members: list[Member]) -> dict[str, int]:
    return {s: sum(1 for m in members if m.state == s) for s in STATES}
