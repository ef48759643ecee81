"""Pure rules of the desk and the console forms: queue filters from a query, tags, windows, pin values."""
from __future__ import annotations

import pytest

from release_server.errors import ValidationError
from release_server.fleet.services import check_window, parse_tags
from release_server.rollouts.services import parse_pin_value
from release_server.support.desk import clean_query, filter_from_query


def test_filter_from_query_defaults_and_unknown_values() -> None:
    f = filter_from_query({}, "sue")
    assert f.status == ["new", "in_progress", "waiting_for_customer"] and f.sort == "updated" and f.descending
    f = filter_from_query({"status": "bogus", "kind": "nope", "sort": "x; drop", "dir": "up"}, "sue")
    assert f.status == [] and f.kind is None and f.sort == "updated"
    f = filter_from_query({"assignee": "me", "sort": "subject", "queue": "unassigned", "q": "  printer  "}, "sue")
    assert f.assignee == "sue" and f.sort == "subject" and not f.descending and f.unassigned_queue and f.q == "printer"
    assert filter_from_query({"sort": "priority"}, None).descending  # urgent first unless asked otherwise
    assert not filter_from_query({"sort": "priority", "dir": "asc"}, None).descending


def test_clean_query_keeps_known_keys_only() -> None:
    assert clean_query({"status": "open", "evil": "1", "q": "", "customer": "3" * 500}) == {
        "status": "open", "customer": "3" * 200}


def test_tags_and_windows() -> None:
    assert parse_tags("pilot, Moscow;pilot  test") == ["moscow", "pilot", "test"]
    assert parse_tags("") == []
    with pytest.raises(ValidationError) as e:
        parse_tags("ok, not/a/tag")
    assert e.value.field == "tags"
    assert check_window("") is None and check_window(" Sat-Sun 02:00-06:00 ") == "sat-sun 02:00-06:00"
    with pytest.raises(ValidationError):
        check_window("whenever")


def test_pin_values() -> None:
    assert parse_pin_value("2.4.", exact=False) == "2.4"
    assert parse_pin_value("2.4.1", exact=True) == "2.4.1"
    for bad, exact in (("2.x", False), ("", False), ("not a version", True), ("2.4-", False)):
        with pytest.raises(ValidationError) as e:
            parse_pin_value(bad, exact)
        assert e.value.field == "pin"
