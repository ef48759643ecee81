"""Journal of the update in progress, the basis of crash recovery.

Before each installation step the installer atomically rewrites one journal
file in the state directory naming the component, the versions involved and
the step about to run. A journal left behind at start-up therefore tells the
recovery code exactly how far an interrupted installation got. The journal is
deleted once an installation has finished (successfully or not).
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal, get_args

from client_agent.errors import StateError
from client_agent.fsutil import atomic_write_json, fsync_dir, read_json

JOURNAL_NAME = "journal.json"

Step = Literal[
    "downloaded", "extracted", "pre_install", "switched", "post_install", "health_check", "committed"
]
STEPS: tuple[Step, ...] = get_args(Step)
# Steps at which the `current` link may already point at the new release.
SWITCHED_STEPS: frozenset[Step] = frozenset({"switched", "post_install", "health_check"})


@dataclass(frozen=True)
class Journal:
    """The update in progress; ``step`` is the step that was about to run (or running)."""

    component: str
    from_version: str | None
    to_version: str
    step: Step
    started_at: float
    report_id: str

    @classmethod
    def start(cls, component: str, from_version: str | None, to_version: str,
              report_id: str | None = None, now: float | None = None) -> Journal:
        return cls(component, from_version, to_version, "downloaded",
                   time.time() if now is None else now, report_id or str(uuid.uuid4()))

    def at(self, step: Step) -> Journal:
        """A copy of this journal positioned at ``step``."""
        if step not in STEPS:
            raise ValueError(f"unknown step {step!r}")
        return replace(self, step=step)


def journal_path(state_dir: Path | str) -> Path:
    return Path(state_dir) / JOURNAL_NAME


def write_journal(state_dir: Path | str, journal: Journal) -> None:
    """Atomically replace the journal file with ``journal``."""
    atomic_write_json(journal_path(state_dir), asdict(journal))


def read_journal(state_dir: Path | str) -> Journal | None:
    """Return the journal left in ``state_dir``, or None if there is none."""
    path = journal_path(state_dir)
    data = read_json(path, default=None)
    if data is None:
        return None
    try:
        journal = Journal(
            component=str(data["component"]),
            from_version=None if data["from_version"] is None else str(data["from_version"]),
            to_version=str(data["to_version"]),
            step=data["step"],
            started_at=float(data["started_at"]),
            report_id=str(data["report_id"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise StateError(path, f"malformed journal: {exc!r}") from exc
    if journal.step not in STEPS:
        raise StateError(path, f"unknown step {journal.step!r}")
    return journal


def clear_journal(state_dir: Path | str) -> None:
    """Remove the journal (durably); a missing journal is fine."""
    path = journal_path(state_dir)
    try:
        os.unlink(path)
    except FileNotFoundError:
        return
    fsync_dir(path.parent)
