"""Pure scheduling rules of the daemon: maintenance windows and sleep times; report shape."""
from __future__ import annotations

from datetime import datetime

import pytest

from client_agent.agent import CycleResult, next_sleep, parse_window, server_report
from client_agent.client import ServerBusyError
from client_agent.config import AgentConfig, ConfigError

SAT_2330 = datetime(2024, 6, 1, 23, 30)  # a Saturday
SUN_0300 = datetime(2024, 6, 2, 3, 0)
MON_0300 = datetime(2024, 6, 3, 3, 0)
MON_1200 = datetime(2024, 6, 3, 12, 0)


def test_windows():
    w = parse_window("01:00-05:00")
    assert w.contains(MON_0300) and not w.contains(MON_1200)
    assert w.seconds_until_open(MON_1200) == 13 * 3600
    night = parse_window("22:00-04:00")
    assert night.contains(SAT_2330) and night.contains(SUN_0300) and not night.contains(MON_1200)
    weekend = parse_window("sat-sun 22:00-04:00")
    assert weekend.contains(SAT_2330) and weekend.contains(SUN_0300)
    assert weekend.contains(MON_0300)  # Sunday night's window runs into Monday morning
    assert not weekend.contains(datetime(2024, 6, 4, 3, 0))  # but Monday night's does not exist
    weekend_day = parse_window("sat-sun 00:00-24:00")
    assert weekend_day.contains(SUN_0300) and not weekend_day.contains(MON_0300)
    assert parse_window("fri-mon 01:00-02:00").days == frozenset({4, 5, 6, 0})


def test_window_after_midnight_belongs_to_its_start_day():
    w = parse_window("sun 22:00-04:00")
    assert w.contains(MON_0300)  # Sunday night's window runs into Monday morning
    assert not parse_window("sat 22:00-04:00").contains(MON_0300)


@pytest.mark.parametrize("spec", ["1:00-2:00", "25:00-26:00", "xyz 01:00-02:00", "01:00", "mon tue 01:00-02:00"])
def test_bad_windows(spec):
    with pytest.raises(ValueError):
        parse_window(spec)
    with pytest.raises(ConfigError):
        AgentConfig(server_url="http://x", install_dir="/opt/x", maintenance_window=spec)


def config(**kw):
    return AgentConfig(server_url="http://x", install_dir="/opt/x", backoff_base=10, backoff_cap=300, **kw)


def test_sleep_follows_poll_interval_with_jitter():
    ok = CycleResult(poll_interval=600)
    assert next_sleep(ok, config=config(), failures=0, next_report_due=None, rng=lambda: 0.5) == 600
    assert 540 <= next_sleep(ok, config=config(), failures=0, next_report_due=None, rng=lambda: 0.0) <= 660
    assert next_sleep(ok, config=config(poll_interval=60), failures=0, next_report_due=None,
                      rng=lambda: 0.5) == 60
    assert next_sleep(ok, config=config(), failures=0, next_report_due=30, rng=lambda: 0.5) == 30
    waiting = CycleResult(poll_interval=3600, window_wait=100)
    assert next_sleep(waiting, config=config(), failures=0, next_report_due=None, rng=lambda: 0.0) == 100


def test_errors_back_off_exponentially_capped_and_honour_retry_after():
    err = CycleResult(error=ServerBusyError("http://x", 503, None))
    delays = [next_sleep(err, config=config(), failures=n, next_report_due=None, rng=lambda: 1.0)
              for n in range(1, 8)]
    assert delays == [10, 20, 40, 80, 160, 300, 300]
    assert next_sleep(err, config=config(), failures=1, next_report_due=None, rng=lambda: 0.0) == 5
    busy = CycleResult(error=ServerBusyError("http://x", 429, 120.0), retry_after=120.0)
    assert next_sleep(busy, config=config(), failures=1, next_report_due=None, rng=lambda: 1.0) == 120


def test_installer_reports_are_shaped_for_the_server():
    report = {"id": "5f0c4f4e-0d9e-4a4e-9d7e-3f1c2b8a9e01", "component": "app", "from_version": "1.0",
              "to_version": "1.1", "outcome": "rolled_back", "failed_stage": "health_check",
              "error_code": "health_check_failed", "error_message": "x" * 9000, "duration": 2.5,
              "log_tail": "h" * 70_000}
    shaped = server_report(report, agent_log_tail="agent says hi", details={"agent_version": "1"})
    assert shaped["stage"] == "health_check" and shaped["duration_seconds"] == 2.5
    assert "failed_stage" not in shaped and "duration" not in shaped
    assert len(shaped["log_tail"]) <= 64 * 1024
    assert shaped["log_tail"].endswith("--- agent log ---\nagent says hi")
    assert len(shaped["error_message"]) == 4000
    assert shaped["details"] == {"agent_version": "1"}
    assert shaped["started_at"]
    assert server_report(shaped) == shaped  # idempotent


def test_a_busy_server_makes_the_daemon_wait_at_least_its_retry_after(tmp_path):
    from client_agent.agent import Agent
    from client_agent.config import Enrollment, StateDir

    class BusyApi:
        def check(self, *a, **kw):
            raise ServerBusyError("http://x/api/v1/updates/check", 429, 90.0)

        def send_reports(self, reports):
            raise ServerBusyError("http://x/api/v1/reports", 503, 45.0)

        def close(self):
            pass

    state = StateDir(tmp_path / "state")
    cfg = config()
    enrollment = Enrollment("inst", "rsi_x", "Acme", "stable", "http://x/tuf/metadata/",
                            "http://x/tuf/targets/", None)
    agent = Agent(state, cfg, enrollment, api=BusyApi())
    agent.outbox.add({"id": "5f0c4f4e-0d9e-4a4e-9d7e-3f1c2b8a9e01", "component": "app", "to_version": "1.0",
                      "outcome": "success", "duration": 1.0})
    result = agent.cycle()
    assert isinstance(result.error, ServerBusyError) and result.retry_after == 90.0
    assert next_sleep(result, config=cfg, failures=1, next_report_due=agent.next_report_due(),
                      rng=lambda: 0.0) >= 90.0
    (pending,) = agent.outbox.pending()
    assert pending.attempts == 1 and pending.next_try_at - agent.clock() >= 44  # the reports' Retry-After
    assert state.load_status()["last_check_ok"] is False


def test_the_agent_sends_its_outbox_in_batches_and_sets_aside_only_a_refused_report(tmp_path):
    from client_agent.agent import Agent
    from client_agent.config import Enrollment, StateDir
    from client_agent.client import ApiError

    bad = "5f0c4f4e-0d9e-4a4e-9d7e-3f1c2b8a9e03"
    calls = []

    class Api:
        def send_reports(self, reports):
            calls.append([r["id"] for r in reports])
            if any(r["id"] == bad for r in reports):
                raise ApiError("http://x/api/v1/reports", 400, "invalid", "bad report", "reports.0")
            return {"accepted": [r["id"] for r in reports], "duplicates": []}

        def close(self):
            pass

    state = StateDir(tmp_path / "state")
    enrollment = Enrollment("inst", "rsi_x", "Acme", "stable", "http://x", "http://x/tuf/metadata/",
                            "http://x/tuf/targets/", None)
    agent = Agent(state, config(), enrollment, api=Api())
    ids = [f"5f0c4f4e-0d9e-4a4e-9d7e-3f1c2b8a9e0{n}" for n in range(1, 6)]
    for rid in ids:
        agent.outbox.add({"id": rid, "component": "app", "to_version": "1.0", "outcome": "success", "duration": 1.0})
    result = agent.flush_reports()
    assert calls[0] == ids  # one request for the whole outbox
    assert calls[1:] == [[rid] for rid in ids]  # refused as a batch: sent one by one
    assert sorted(result.sent) == sorted(ids) and agent.outbox.pending() == []
    assert bad in (state.path / "rejected-reports.jsonl").read_text()
