"""The in-memory catalog behind the check endpoint, and the versions that invalidate it.

Every change that can alter an offer (publish, promote, yank, rollout changes, pins,
restrictions) bumps ``catalog_state.version`` in its own transaction; changes to
installations' credentials or settings bump ``auth_version`` and add a row to the
change feed (``installation_changes``) naming the installation. Each server process
reads that one row at most once per ``CATALOG_RECHECK_SECONDS`` and rebuilds its
catalog (or forgets the changed installations' cached credentials, see
:mod:`release_server.fleet.auth`) only when a version moved. So a check costs
no database round trip in the common case, and a revocation takes effect within
seconds on every node. The process that committed a change reads the row again on its
next request (read your writes): a revocation there holds at once.
"""
from __future__ import annotations

import dataclasses
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, current_app, has_app_context
from packaging.specifiers import SpecifierSet
from packaging.version import Version
from sqlalchemy import delete, event, insert, select, update
from sqlalchemy.orm import Session

from ..fleet.models import InstallationChange
from ..models_common import utcnow
from ..releases.models import Release
from .models import CatalogState, Pin, ReleaseRestriction, Rollout
from .policy import Catalog, Pin as PinRule, ReleaseInfo, RolloutGate


STATE_CHANGED = "catalog_state_changed"  # session.info flag: this transaction bumped a version


def bump_catalog(session: Session) -> None:
    session.execute(update(CatalogState).where(CatalogState.id == 1).values(version=CatalogState.version + 1))
    session.info[STATE_CHANGED] = True


CHANGE_FEED_KEEP = 100_000  # change rows kept; a process further behind forgets every credential


def bump_auth(session: Session, installation_id: str | None = None) -> int:
    """Record a change of one installation's credentials or settings (None: of any installation).

    The ``UPDATE ... RETURNING`` holds the state row's lock until the transaction ends,
    so change versions become visible in order: whoever sees version N sees every
    change up to N. Returns the new version.
    """
    version = session.execute(update(CatalogState).where(CatalogState.id == 1)
                              .values(auth_version=CatalogState.auth_version + 1)
                              .returning(CatalogState.auth_version)).scalar_one()
    session.execute(insert(InstallationChange).values(version=version, installation_id=installation_id,
                                                      changed_at=utcnow()))
    session.info[STATE_CHANGED] = True
    if version % 1000 == 0:
        session.execute(delete(InstallationChange).where(InstallationChange.version <= version - CHANGE_FEED_KEEP))
    return version


def target_path(release: Release) -> str:
    return f"{release.component.name}/{release.artifact_filename}"


def load_catalog(session: Session, version: int) -> tuple[Catalog, dict[tuple[str, str], dict[str, PinRule]]]:
    # Releases are read first, then what gates them (restrictions, rollouts): a release committed
    # together with its rollout or restrictions is never seen without them, even when each
    # statement reads the latest committed data (PostgreSQL's READ COMMITTED).
    releases = list(session.scalars(select(Release).where(Release.signatures_pending.is_(False))))
    restrictions: dict[int, tuple[set[int], set[str]]] = {}
    for r in session.scalars(select(ReleaseRestriction)):
        custs, insts = restrictions.setdefault(r.release_id, (set(), set()))
        if r.customer_id is not None:
            custs.add(r.customer_id)
        if r.installation_id is not None:
            insts.add(r.installation_id)
    gates: dict[int, dict[str, RolloutGate]] = {}
    for ro in session.scalars(select(Rollout)):
        gates.setdefault(ro.release_id, {})[ro.channel] = RolloutGate(ro.state, ro.share)
    infos = []
    for rel in releases:
        custs, insts = restrictions.get(rel.id, (set(), set()))
        infos.append(ReleaseInfo(
            id=rel.id, component=rel.component.name, version=Version(rel.version),
            channels=frozenset(rel.channel_names), target_path=target_path(rel), sha256=rel.artifact_sha256,
            length=rel.artifact_size, changelog=rel.changelog or "", critical=rel.critical, yanked=rel.yanked,
            min_from_version=Version(rel.min_from_version) if rel.min_from_version else None,
            requires={k: SpecifierSet(v) for k, v in (rel.requires or {}).items()},
            restricted_customers=frozenset(custs), restricted_installations=frozenset(insts),
            rollouts=gates.get(rel.id, {})))
    pins: dict[tuple[str, str], dict[str, PinRule]] = {}
    for p in session.scalars(select(Pin)):
        pins.setdefault((p.scope, p.scope_value), {})[p.component] = PinRule(p.component, p.value, p.exact)
    return Catalog(infos, version), pins


def ticket_mentions(session: Session, catalog: Catalog) -> tuple[re.Pattern[str] | None, dict[int, int | None]]:
    """Ticket numbers the changelogs mention, and whose each is (a customer id; None: nobody's to see).

    Read once per catalog version, through the support desk's ``ticket_owners`` extension; a
    changelog offered to an installation then shows only its own customer's numbers.
    """
    owners_of = current_app.extensions.get("ticket_owners") if has_app_context() else None
    if owners_of is None:
        return None, {}
    prefix = re.escape(str(current_app.config.get("TICKET_PREFIX", "OTK")))
    pattern = re.compile(rf"\b{prefix}-(\d{{1,18}})\b", re.IGNORECASE)
    seqs = {int(m.group(1)) for rows in catalog.by_component.values() for r in rows
            for m in pattern.finditer(r.changelog)}
    if not seqs:
        return None, {}
    return pattern, owners_of(session, seqs)


def redact_changelog(text: str, pattern: re.Pattern[str], owners: dict[int, int | None], customer_id: int) -> str:
    """Another customer's ticket numbers (and internal ones) shown without their digits."""
    def one(m: re.Match[str]) -> str:
        if owners.get(int(m.group(1)), -1) == customer_id:
            return m.group(0)
        return m.group(0).split("-", 1)[0] + "-…"

    return pattern.sub(one, text)


OFFER_MEMO_SIZE = 20_000


@dataclass
class _Snapshot:
    catalog: Catalog
    pins: dict[tuple[str, str], dict[str, PinRule]]
    # plan_offers is pure: its answer for one installation and inventory holds for this snapshot
    offers: dict[tuple, list] = field(default_factory=dict)
    mentions: re.Pattern[str] | None = None  # ticket numbers in changelogs (see ticket_mentions)
    owners: dict[int, int | None] = field(default_factory=dict)


class CatalogCache:
    """Per-process cache of the catalog and of the state row's versions."""

    def __init__(self, recheck_seconds: float) -> None:
        self.recheck_seconds = recheck_seconds
        self._lock = threading.Lock()
        self._checked_at = -1e9
        self._versions = (-1, -1)
        self._snapshot: _Snapshot | None = None

    def versions(self, session: Session | Callable[[], Session]) -> tuple[int, int]:
        """(catalog version, auth version); reads the database at most once per recheck period.

        ``session`` may be a callable so that no session is even created when the cached
        values are fresh (the common case on the hot path)."""
        now = time.monotonic()
        if now - self._checked_at >= self.recheck_seconds:
            if callable(session):
                session = session()
            row = session.execute(select(CatalogState.version, CatalogState.auth_version)
                                  .where(CatalogState.id == 1)).one_or_none()
            with self._lock:
                self._versions = (row[0], row[1]) if row else (0, 0)
                self._checked_at = now
        return self._versions

    def fresh_versions(self) -> tuple[int, int] | None:
        """The cached (catalog, auth) versions while no look at the database is due, else None."""
        if time.monotonic() - self._checked_at < self.recheck_seconds:
            return self._versions
        return None

    def invalidate(self) -> None:
        with self._lock:
            self._checked_at = -1e9

    def fresh_snapshot(self) -> tuple[_Snapshot, int] | None:
        """(snapshot, auth version) while the snapshot is current and no look at the database is due, else None.

        For the check's fast path (:mod:`release_server.rollouts.fastpath`): it answers only
        what :meth:`snapshot` and :meth:`versions` would answer from memory."""
        versions = self.fresh_versions()
        snap = self._snapshot
        if versions is None or snap is None or snap.catalog.version != versions[0]:
            return None
        return snap, versions[1]

    def snapshot(self, session: Session | Callable[[], Session]) -> _Snapshot:
        version, _ = self.versions(session)
        snap = self._snapshot
        if snap is None or snap.catalog.version != version:
            reader = session() if callable(session) else session
            catalog, pins = load_catalog(reader, version)
            mentions, owners = ticket_mentions(reader, catalog)
            snap = _Snapshot(catalog, pins, mentions=mentions, owners=owners)
            with self._lock:
                self._snapshot = snap
        return snap


def pins_for(pins: dict, installation_id: str, customer_id: int, tags: frozenset[str]) -> dict[str, PinRule]:
    """The pins that apply to one installation: installation beats tag beats customer, per component."""
    out: dict[str, PinRule] = {}
    out.update(pins.get(("customer", str(customer_id)), {}))
    for tag in sorted(tags):
        out.update(pins.get(("tag", tag), {}))
    out.update(pins.get(("installation", installation_id), {}))
    return out


def offers_for(session: Session | Callable[[], Session], *, installation_id: str, customer_id: int, channel: str,
               tags: frozenset[str], installed: dict) -> list:
    """What the check endpoint offers this installation now: the cached catalog, its pins, the policy."""
    return offers_in(get_cache().snapshot(session), installation_id=installation_id, customer_id=customer_id,
                     channel=channel, tags=tags, installed=installed)


def offers_in(snap: _Snapshot, *, installation_id: str, customer_id: int, channel: str, tags: frozenset[str],
              installed: dict) -> list:
    """:func:`offers_for` on a snapshot already in hand (pure, memoised per snapshot)."""
    from .policy import InstallationView, plan_offers

    key = (installation_id, customer_id, channel, tags, frozenset(installed.items()))
    hit = snap.offers.get(key)
    if hit is not None:
        return hit
    view = InstallationView(installation_id, customer_id, channel, tags)
    offers = plan_offers(snap.catalog, view, installed, pins_for(snap.pins, installation_id, customer_id, tags))
    if snap.mentions is not None:
        offers = [dataclasses.replace(o, changelog=redact_changelog(o.changelog, snap.mentions, snap.owners,
                                                                    customer_id)) for o in offers]
    if len(snap.offers) >= OFFER_MEMO_SIZE:  # bounded: start afresh rather than track recency
        snap.offers.clear()
    snap.offers[key] = offers
    return offers


def _after_commit(session: Session) -> None:
    """A version bump committed in this process: its next request reads the state row again."""
    if session.info.pop(STATE_CHANGED, False) and has_app_context():
        cache = current_app.extensions.get("catalog_cache")
        if cache is not None:
            cache.invalidate()


# A flag left by a rolled-back bump costs the next commit one needless read of the row, nothing more.
event.listen(Session, "after_commit", _after_commit)


def get_cache() -> CatalogCache:
    return current_app.extensions["catalog_cache"]


def init_app(app: Flask) -> None:
    app.extensions["catalog_cache"] = CatalogCache(app.config.get("CATALOG_RECHECK_SECONDS", 1.0))

    def on_release_change(session: Session, release: Release, event: str) -> None:
        bump_catalog(session)

    app.extensions.setdefault("release_hooks", []).append(on_release_change)

    def on_reports(session: Session, inst, reports: list) -> None:  # noqa: ANN001
        from .services import record_reports

        record_reports(session, inst, reports)

    app.extensions.setdefault("report_hooks", []).append(on_reports)

    def publish_rollout(session: Session, release: Release, spec: Any, actor: str) -> None:
        from .services import stage_published_release

        stage_published_release(session, release, spec, actor)

    app.extensions["publish_rollout"] = publish_rollout

    def advance_rollouts() -> None:
        from ..db import db
        from .services import advance

        session = db.new_session(write=True)
        try:
            advance(session)
            session.commit()
        finally:
            session.close()

    from ..worker import register_job

    register_job(app, "advance-rollouts", app.config.get("ROLLOUT_ADVANCE_SECONDS", 60.0), advance_rollouts)

    def count_adoption() -> str | None:
        from ..db import db
        from ..releases.models import Component
        from .figures import count_missing_days

        read, write = db.new_session(write=False), db.new_session(write=True)
        try:
            names = list(read.scalars(select(Component.name).order_by(Component.name)))
            stored = count_missing_days(read, write, names)
        finally:
            read.close()
            write.close()
        return f"{stored} day(s) of adoption counted" if stored else None

    # cheap when nothing is missing (one look-up per component); a day is counted soon after it ends
    register_job(app, "count-adoption", float(app.config.get("ADOPTION_COUNT_INTERVAL", 900.0)), count_adoption)
