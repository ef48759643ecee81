"""The pure decision: which release each component of one installation should move to now.

No database, no Flask: the check endpoint builds a :class:`Catalog` snapshot once and
calls :func:`plan_offers` per request. The rules, in order:

1. **Visibility.** A release is visible to an installation when it is on the
   installation's channel, is not yanked, and is either public or restricted to that
   installation or its customer (the "one customer's fix" path).
2. **Staged rollout.** If the release has a rollout on that channel, it is offered only
   while the rollout is running or complete, and (unless the release is critical) only
   when the installation's bucket — a hash of (installation id, release id) into
   0..9999 — is below the rollout's share. Halted and paused rollouts offer nothing new.
3. **Pins.** A pin (installation beats tag beats customer) keeps a component on an
   exact version or a version prefix ("2.4" matches 2.4.x, not 2.40).
4. **Target.** The newest eligible release above the installed version. An
   installation running a yanked release is offered the newest eligible non-yanked
   release even if it is lower (the only downgrade).
5. **Stepping stones.** If the target's ``min_from_version`` is above the installed
   version, the newest eligible release that accepts the installed version is offered
   instead, and the rest follows on the next check.
6. **Dependencies.** An offer stands only when each ``requires`` entry is satisfied by
   an installed version or by another offer in the same answer; offers are returned in
   install order (dependencies first).
"""
from __future__ import annotations

import hashlib
from functools import lru_cache
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

BUCKETS = 10_000


@lru_cache(maxsize=16384)
def parse_version(value: str) -> Version:
    """Version objects for strings seen again and again (installed versions)."""
    return Version(value)


def bucket(installation_id: str, release_id: int) -> int:
    """The installation's deterministic bucket for one release, 0..9999."""
    digest = hashlib.sha256(f"{installation_id}:{release_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def prefix_matches(prefix: str, version: Version) -> bool:
    """Omaha ``targetversionprefix``: "2.4" matches 2.4 and 2.4.x but not 2.40."""
    want = [int(p) for p in prefix.strip().rstrip(".").split(".") if p != ""]
    have = list(version.release)
    if len(have) < len(want):
        have = have + [0] * (len(want) - len(have))
    return have[:len(want)] == want


@dataclass(frozen=True)
class RolloutGate:
    state: str  # draft | running | paused | halted | completed
    share: int  # in buckets, 0..10000

    def admits(self, inst_bucket: int, critical: bool) -> bool:
        if self.state == "completed":
            return True
        if self.state != "running":
            return False
        return critical or inst_bucket < self.share


@dataclass(frozen=True)
class ReleaseInfo:
    id: int
    component: str
    version: Version
    channels: frozenset[str]
    target_path: str
    sha256: str
    length: int
    changelog: str = ""
    critical: bool = False
    yanked: bool = False
    min_from_version: Version | None = None
    requires: Mapping[str, SpecifierSet] = field(default_factory=dict)
    restricted_customers: frozenset[int] = frozenset()
    restricted_installations: frozenset[str] = frozenset()
    rollouts: Mapping[str, RolloutGate] = field(default_factory=dict)  # by channel

    @property
    def restricted(self) -> bool:
        return bool(self.restricted_customers or self.restricted_installations)


@dataclass(frozen=True)
class Pin:
    component: str
    value: str
    exact: bool  # True: exact version; False: version prefix

    def allows(self, version: Version) -> bool:
        if self.exact:
            try:
                return version == Version(self.value)
            except InvalidVersion:
                return False
        return prefix_matches(self.value, version)


@dataclass(frozen=True)
class InstallationView:
    id: str
    customer_id: int
    channel: str
    tags: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Offer:
    release: ReleaseInfo
    from_version: Version | None
    downgrade: bool
    changelog: str


class Catalog:
    """Every release by component, newest first; immutable once built."""

    def __init__(self, releases: Iterable[ReleaseInfo], version: int = 0) -> None:
        by_comp: dict[str, list[ReleaseInfo]] = {}
        for r in releases:
            by_comp.setdefault(r.component, []).append(r)
        for rows in by_comp.values():
            rows.sort(key=lambda r: r.version, reverse=True)
        self.by_component = by_comp
        self.version = version
        #: the highest version of each component, whoever it is for
        self.newest = {comp: rows[0].version for comp, rows in by_comp.items()}
        self._by_key = {(r.component, r.version): r for rows in by_comp.values() for r in rows}

    def find(self, component: str, version: Version) -> ReleaseInfo | None:
        return self._by_key.get((component, version))


def visible(r: ReleaseInfo, inst: InstallationView) -> bool:
    if inst.channel not in r.channels or r.yanked:
        return False
    if r.restricted and inst.customer_id not in r.restricted_customers \
            and inst.id not in r.restricted_installations:
        return False
    gate = r.rollouts.get(inst.channel)
    return gate is None or gate.admits(bucket(inst.id, r.id), r.critical)


def combined_changelog(catalog: Catalog, component: str, low: Version | None, high: Version) -> str:
    parts = []
    for r in catalog.by_component.get(component, []):
        if r.version <= high and (low is None or r.version > low) and r.changelog.strip():
            parts.append(f"## {r.component} {r.version}\n\n{r.changelog.strip()}")
    return "\n\n".join(parts)


def _choose(catalog: Catalog, inst: InstallationView, component: str, installed: Version | None,
            pin: Pin | None) -> tuple[ReleaseInfo, bool] | None:
    current = catalog.find(component, installed) if installed is not None else None
    newest = catalog.newest.get(component)
    if newest is None or (installed is not None and installed >= newest and (current is None or not current.yanked)):
        return None  # the common case: nothing newer exists for anyone
    rows = [r for r in catalog.by_component.get(component, []) if visible(r, inst)]
    if pin is not None:
        rows = [r for r in rows if pin.allows(r.version)]
    if not rows:
        return None
    if current is not None and current.yanked:
        return rows[0], installed is not None and rows[0].version < installed
    newer = [r for r in rows if installed is None or r.version > installed]
    if not newer:
        return None
    target = newer[0]
    if installed is not None and target.min_from_version is not None and installed < target.min_from_version:
        stones = [r for r in newer if r.min_from_version is None or installed >= r.min_from_version]
        if not stones:
            return None
        target = stones[0]
    return target, False


def plan_offers(catalog: Catalog, inst: InstallationView, installed: Mapping[str, str | Version | None],
                pins: Mapping[str, Pin] | None = None) -> list[Offer]:
    """Offers for the components an installation runs, in install order.

    A component mapped to ``None`` is wanted but not installed yet: it is offered the
    newest eligible release directly (a first install needs no stepping stone).
    """
    pins = pins or {}
    have: dict[str, Version | None] = {}  # None: the component is wanted but not installed yet
    for comp, v in installed.items():
        try:
            have[comp] = v if v is None or isinstance(v, Version) else parse_version(v)
        except InvalidVersion:
            continue
    chosen: dict[str, tuple[ReleaseInfo, bool]] = {}
    for comp in sorted(have) if len(have) > 1 else have:
        pick = _choose(catalog, inst, comp, have[comp], pins.get(comp))
        if pick is not None:
            chosen[comp] = pick

    if not chosen:
        return []
    # Drop offers whose dependencies are not met, until nothing changes.
    changed = True
    while changed:
        changed = False
        for comp, (rel, _) in list(chosen.items()):
            for dep, spec in rel.requires.items():
                version = chosen[dep][0].version if dep in chosen else have.get(dep)
                if version is None or not spec.contains(version, prereleases=True):
                    del chosen[comp]
                    changed = True
                    break

    # Install order: dependencies first (they are among the offers or already installed).
    ordered: list[str] = []
    visiting: set[str] = set()

    def visit(comp: str) -> None:
        if comp in ordered or comp in visiting:
            return
        visiting.add(comp)
        for dep in sorted(chosen[comp][0].requires):
            if dep in chosen:
                visit(dep)
        visiting.discard(comp)
        ordered.append(comp)

    for comp in sorted(chosen):
        visit(comp)
    offers = []
    for comp in ordered:
        rel, downgrade = chosen[comp]
        low = have.get(comp)
        if downgrade:  # back to an older release: its own notes only
            below = [r.version for r in catalog.by_component[comp] if r.version < rel.version]
            log = combined_changelog(catalog, comp, below[0] if below else None, rel.version)
        else:
            log = combined_changelog(catalog, comp, low, rel.version)
        offers.append(Offer(rel, low, downgrade, log))
    return offers
