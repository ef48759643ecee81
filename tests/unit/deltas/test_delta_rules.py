"""The server's pure delta rules: which earlier releases, which patches are kept."""
from __future__ import annotations

from release_server.deltas.services import choose_from_versions, worth_keeping


def test_the_newest_n_earlier_versions_by_version_order_without_those_tried():
    versions = ["1.10", "1.9", "1.2", "2.0", "1.11", "0.9"]
    assert choose_from_versions(versions, "1.11", 3, set()) == ["1.10", "1.9", "1.2"]
    assert choose_from_versions(versions, "1.11", 3, {"1.9"}) == ["1.10", "1.2"]
    assert choose_from_versions(versions, "0.9", 3, set()) == []
    assert choose_from_versions(versions, "2.0", 0, set()) == []


def test_a_patch_must_save_at_least_the_minimum():
    assert worth_keeping(80, 100, 0.2)
    assert not worth_keeping(81, 100, 0.2)
