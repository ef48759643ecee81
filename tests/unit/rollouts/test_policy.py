"""The offer rules, tested without a database: buckets, visibility, pins, stones, dependencies."""
from __future__ import annotations

import uuid

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from release_server.rollouts.policy import (BUCKETS, Catalog, InstallationView, Pin, ReleaseInfo, RolloutGate,
                                            bucket, plan_offers, prefix_matches)

_ids = iter(range(1, 10_000))


def rel(component: str, version: str, *, channels=("stable",), **kw) -> ReleaseInfo:
    return ReleaseInfo(id=kw.pop("id", next(_ids)), component=component, version=Version(version),
                       channels=frozenset(channels), target_path=f"{component}/{component}-{version}.tar.gz",
                       sha256="0" * 64, length=1, changelog=kw.pop("changelog", f"notes {version}"), **kw)


INST = InstallationView("11111111-1111-4111-8111-111111111111", customer_id=1, channel="stable")


def offered(catalog, installed, inst=INST, pins=None):
    return [(o.release.component, str(o.release.version)) for o in plan_offers(catalog, inst, installed, pins)]


def test_bucket_is_deterministic_and_uniform():
    assert bucket("a", 1) == bucket("a", 1)
    ids = [str(uuid.UUID(int=i * 7919 + 12345)) for i in range(10_000)]
    inside = sum(1 for i in ids if bucket(i, 42) < 1000)  # 10 %
    assert 900 <= inside <= 1100
    # each release samples a fresh set
    a = {i for i in ids if bucket(i, 1) < 1000}
    b = {i for i in ids if bucket(i, 2) < 1000}
    assert len(a & b) < 200


def test_widening_keeps_everyone_already_included():
    ids = [str(uuid.UUID(int=i)) for i in range(2000)]
    gate_sizes = [100, 500, 1000, 2500, 5000, BUCKETS]
    previous: set[str] = set()
    for share in gate_sizes:
        gate = RolloutGate("running", share)
        now_in = {i for i in ids if gate.admits(bucket(i, 7), critical=False)}
        assert previous <= now_in
        previous = now_in
    assert previous == set(ids)


@pytest.mark.parametrize("prefix, version, ok", [
    ("2.4", "2.4", True), ("2.4", "2.4.0", True), ("2.4", "2.4.9", True), ("2.4", "2.40.0", False),
    ("2.4", "2.5.0", False), ("2", "2.99", True), ("2.4.1", "2.4.10", False), ("2.4.", "2.4.3", True),
])
def test_version_prefix_semantics(prefix, version, ok):
    assert prefix_matches(prefix, Version(version)) is ok


def test_newest_newer_release_on_the_channel():
    cat = Catalog([rel("server", "1.0"), rel("server", "1.1"), rel("server", "1.2", channels=("beta",)),
                   rel("web", "3.0")])
    assert offered(cat, {"server": "1.0", "web": "3.0"}) == [("server", "1.1")]
    beta = InstallationView(INST.id, 1, "beta")
    assert offered(cat, {"server": "1.0"}, beta) == [("server", "1.2")]
    assert offered(cat, {"server": "1.1"}) == []
    assert offered(cat, {"server": "2.0"}) == []  # never an unforced downgrade


def test_combined_changelog_of_skipped_versions():
    cat = Catalog([rel("server", v) for v in ("1.0", "1.1", "1.2", "1.3")])
    (o,) = plan_offers(cat, INST, {"server": "1.0"})
    assert str(o.release.version) == "1.3"
    assert o.changelog.index("1.3") < o.changelog.index("1.2") < o.changelog.index("1.1")
    assert "notes 1.0" not in o.changelog


def test_yanked_never_offered_and_yanked_installed_goes_down():
    cat = Catalog([rel("server", "1.0"), rel("server", "1.1"), rel("server", "1.2", yanked=True)])
    assert offered(cat, {"server": "1.0"}) == [("server", "1.1")]
    (o,) = plan_offers(cat, INST, {"server": "1.2"})
    assert str(o.release.version) == "1.1" and o.downgrade is True


def test_restricted_release_only_for_named_customer_or_installation():
    hotfix = rel("server", "1.0.1", restricted_customers=frozenset({7}))
    one = rel("web", "2.0.1", restricted_installations=frozenset({"abc"}))
    cat = Catalog([rel("server", "1.0"), hotfix, rel("web", "2.0"), one])
    other = InstallationView("zzz", customer_id=1, channel="stable")
    assert offered(cat, {"server": "1.0", "web": "2.0"}, other) == []
    mine = InstallationView("abc", customer_id=7, channel="stable")
    assert offered(cat, {"server": "1.0", "web": "2.0"}, mine) == [("server", "1.0.1"), ("web", "2.0.1")]


def test_rollout_gate_states_and_critical():
    inst_bucket = bucket(INST.id, 500)
    share_excluding = inst_bucket  # bucket < share is false
    normal = rel("server", "2.0", id=500, rollouts={"stable": RolloutGate("running", share_excluding)})
    assert offered(Catalog([normal]), {"server": "1.0"}) == []
    included = rel("server", "2.0", id=500, rollouts={"stable": RolloutGate("running", inst_bucket + 1)})
    assert offered(Catalog([included]), {"server": "1.0"}) == [("server", "2.0")]
    for state in ("paused", "halted", "draft"):
        r = rel("server", "2.0", id=500, rollouts={"stable": RolloutGate(state, BUCKETS)})
        assert offered(Catalog([r]), {"server": "1.0"}) == [], state
    done = rel("server", "2.0", id=500, rollouts={"stable": RolloutGate("completed", 0)})
    assert offered(Catalog([done]), {"server": "1.0"}) == [("server", "2.0")]
    crit = rel("server", "2.0", id=500, critical=True, rollouts={"stable": RolloutGate("running", 0)})
    assert offered(Catalog([crit]), {"server": "1.0"}) == [("server", "2.0")]
    crit_halted = rel("server", "2.0", id=500, critical=True, rollouts={"stable": RolloutGate("halted", BUCKETS)})
    assert offered(Catalog([crit_halted]), {"server": "1.0"}) == []


def test_pins_exact_and_prefix():
    cat = Catalog([rel("server", v) for v in ("2.3.9", "2.4.0", "2.4.7", "2.40.0", "3.0")])
    assert offered(cat, {"server": "2.3.9"}, pins={"server": Pin("server", "2.4", exact=False)}) == \
        [("server", "2.4.7")]
    assert offered(cat, {"server": "2.3.9"}, pins={"server": Pin("server", "2.4.0", exact=True)}) == \
        [("server", "2.4.0")]
    assert offered(cat, {"server": "2.4.7"}, pins={"server": Pin("server", "2.4", exact=False)}) == []


def test_stepping_stone_then_the_rest():
    cat = Catalog([rel("server", "1.0"), rel("server", "1.5"), rel("server", "2.0", min_from_version=Version("1.5")),
                   rel("server", "2.1", min_from_version=Version("1.5"))])
    assert offered(cat, {"server": "1.0"}) == [("server", "1.5")]
    assert offered(cat, {"server": "1.5"}) == [("server", "2.1")]
    only_gated = Catalog([rel("server", "1.0"), rel("server", "2.0", min_from_version=Version("1.5"))])
    assert offered(only_gated, {"server": "1.0"}) == []


def test_requires_is_satisfied_by_installed_or_offered_and_ordered():
    cat = Catalog([
        rel("db-schema", "5.0"), rel("db-schema", "6.0"),
        rel("server", "3.0", requires={"db-schema": SpecifierSet(">=6")}),
        rel("web", "3.0", requires={"server": SpecifierSet(">=3"), "db-schema": SpecifierSet(">=6")}),
    ])
    got = offered(cat, {"server": "2.0", "db-schema": "5.0", "web": "2.0"})
    assert got == [("db-schema", "6.0"), ("server", "3.0"), ("web", "3.0")]
    # dependency not available to this installation (beta only) -> dependants withheld
    cat2 = Catalog([rel("db-schema", "6.0", channels=("beta",)),
                    rel("server", "3.0", requires={"db-schema": SpecifierSet(">=6")})])
    assert offered(cat2, {"server": "2.0", "db-schema": "5.0"}) == []
    # dependency on a component the installation does not run
    cat3 = Catalog([rel("server", "3.0", requires={"reports": SpecifierSet(">=1")})])
    assert offered(cat3, {"server": "2.0"}) == []


def test_first_install_takes_the_newest_release_without_stepping_stones():
    cat = Catalog([rel("server", "1.0"), rel("server", "1.5"), rel("server", "2.0", min_from_version=Version("1.5"))])
    (o,) = plan_offers(cat, INST, {"server": None})
    assert str(o.release.version) == "2.0" and o.from_version is None and o.downgrade is False
    assert "notes 1.0" in o.changelog and "notes 2.0" in o.changelog
    # a dependency that is wanted but not installed does not satisfy a requirement until it is offered
    cat2 = Catalog([rel("db-schema", "6.0"), rel("web", "3.0", requires={"db-schema": SpecifierSet(">=6")})])
    assert offered(cat2, {"web": "2.0", "db-schema": None}) == [("db-schema", "6.0"), ("web", "3.0")]
