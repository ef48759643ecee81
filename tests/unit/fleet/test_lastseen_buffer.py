"""The last-seen buffer: what a failed flush keeps, merging, and the credential LRU's change feed rules."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import create_engine

from release_server.fleet.auth import InstallationAuthCache, InstallationPrincipal
from release_server.fleet.lastseen import SeenBuffer

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=timezone.utc)


def test_a_failed_flush_keeps_every_row_and_newer_notes_win(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'empty.db'}")  # no tables: every write fails
    buf = SeenBuffer(engine, interval=3600)
    buf.note("a", installed={"server": "1.0"}, now=T0)
    buf.note("b", installed={"server": "2.0"}, known=frozenset({("server", "2.0")}), now=T0)
    with pytest.raises(Exception):  # noqa: B017 - whatever the database says
        buf.flush()
    assert len(buf) == 2
    buf.note("a", installed={"server": "1.1"}, agent_version="3", now=T0 + timedelta(seconds=5))
    pending = buf._pending["a"]
    assert pending.seen_at == T0 + timedelta(seconds=5) and pending.agent_version == "3"
    assert pending.components["server"][0] == "1.1"
    assert buf._pending["b"].components == {}  # unchanged inventory is not rewritten
    buf._pending.clear()  # nothing left for the flush at exit
    engine.dispose()


def _p(inst: str) -> InstallationPrincipal:
    return InstallationPrincipal(inst, 1, "stable", frozenset(), None, None)


def test_lru_evicts_the_least_recently_used_and_forgets_exactly():
    cache = InstallationAuthCache(capacity=2)
    cache._put("d1", _p("i1"))
    cache._put("d2", _p("i2"))
    cache._entries.move_to_end("d1")  # i1 used last
    cache._put("d3", _p("i3"))
    assert set(cache._entries) == {"d1", "d3"} and set(cache._digest_of) == {"i1", "i3"}
    cache.forget("i3")
    assert set(cache._entries) == {"d1"}
    cache._put("d1b", _p("i1"))  # a new token of the same installation replaces the old one
    assert set(cache._entries) == {"d1b"} and cache._digest_of == {"i1": "d1b"}
