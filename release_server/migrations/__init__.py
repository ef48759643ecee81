"""Alembic migrations: the only way the schema changes.

Besides upgrading and downgrading, this module answers where a database stands:
:func:`current_heads` (every revision the database is at; a schema merged from
several branches has several), :func:`script_heads` (the newest revisions shipped) and
:func:`pending` (shipped revisions the database has not applied).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine


def alembic_config(engine: Engine | None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", "release_server:migrations")
    cfg.attributes["engine"] = engine
    return cfg


@lru_cache(maxsize=1)
def script_directory() -> ScriptDirectory:
    """The shipped migrations (read once per process: they do not change while it runs)."""
    return ScriptDirectory.from_config(alembic_config(None))


def upgrade(engine: Engine, revision: str = "heads") -> None:
    command.upgrade(alembic_config(engine), revision)


def downgrade(engine: Engine, revision: str) -> None:
    command.downgrade(alembic_config(engine), revision)


def current_heads(engine: Engine) -> tuple[str, ...]:
    """Every revision the database is at (empty for a database never migrated)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return tuple(sorted(MigrationContext.configure(conn).get_current_heads()))


def current_revision(engine: Engine) -> str | None:
    """The revisions the database is at, comma-separated (None when never migrated)."""
    heads = current_heads(engine)
    return ", ".join(heads) if heads else None


def script_heads() -> tuple[str, ...]:
    return tuple(sorted(script_directory().get_heads()))


def pending(engine: Engine) -> list[str]:
    """Revisions shipped with this version that the database has not applied, oldest first."""
    script = script_directory()
    applied: set[str] = set()
    for head in current_heads(engine):
        applied.update(rev.revision for rev in script.iterate_revisions(head, "base"))
    return [rev.revision for rev in reversed(list(script.walk_revisions())) if rev.revision not in applied]


@dataclass(frozen=True)
class HistoryEntry:
    revision: str
    down_revisions: tuple[str, ...]
    message: str
    is_head: bool
    applied: bool
    current: bool


def history(engine: Engine | None) -> list[HistoryEntry]:
    """Every shipped revision, newest first, marked applied/current when ``engine`` is given."""
    script = script_directory()
    heads = set(current_heads(engine)) if engine is not None else set()
    applied: set[str] = set()
    for head in heads:
        applied.update(rev.revision for rev in script.iterate_revisions(head, "base"))
    out = []
    for rev in script.walk_revisions():
        down = rev.down_revision
        downs = tuple(down) if isinstance(down, (tuple, list)) else ((down,) if down else ())
        out.append(HistoryEntry(rev.revision, downs, (rev.doc or "").strip().splitlines()[0] if rev.doc else "",
                                rev.is_head, rev.revision in applied, rev.revision in heads))
    return out
