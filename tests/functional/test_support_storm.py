"""A failure storm against a real server: 2,000 reports from 500 installations of 20 customers with
5 causes, from 8 concurrent HTTP clients, some batches sent twice. Exactly 5 groups, exactly one
ticket per (group, customer) affected, exact counts; on SQLite and on PostgreSQL."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _bench():
    name = "failure_storm_bench"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / "bench" / "failure_storm.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while the file executes
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture
def storm_server(app, app_config, tmp_path):
    from conftest import LiveServer

    server = LiveServer(app_config, tmp_path / "server.log", workers=4).start()
    yield server
    server.stop()


def test_failure_storm_groups_exactly(app, storm_server, tmp_path):
    bench = _bench()
    from release_server.db import db

    with app.app_context():
        fleet = bench.build_fleet(db.session, customers=20, installations=500)
    plan = bench.make_plan(fleet, reports=2000, causes=5, duplicate_share=0.1)
    # each customer's installations meet 4 of the 5 causes: 80 (group, customer) pairs
    assert len(plan.expected_groups) == 5 and len(plan.expected_tickets) == 80 and plan.duplicates > 0

    result = bench.run_storm(storm_server.url, plan, clients=8)

    assert result.errors == []
    assert result.accepted == 2000 and result.duplicates == plan.duplicates * 2
    with app.app_context():
        assert bench.verify(db.session, plan) == []
        from sqlalchemy import func, select

        from release_server.support.models import Ticket

        # one ticket per (group, customer), all of them failure tickets; nothing else was opened
        assert db.session.scalar(select(func.count()).select_from(Ticket)) == 80
    print(f"\nstorm: {result.rate(2000 + result.duplicates):.0f} reports/s, {result.seconds:.1f}s, "
          f"{result.retries} retried requests")
