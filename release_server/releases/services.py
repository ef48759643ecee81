"""Release rules: components, channels, publishing, promotion, yanking, changelogs.

Services take a SQLAlchemy session, add and flush, and raise typed errors; the caller
commits. Other parts of the server (the TUF repository) follow release changes through
hooks registered in ``app.extensions["release_hooks"]``: each is called with
``(session, release, event)`` inside the same transaction, before the commit.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from flask import current_app, has_app_context
from packaging.version import Version
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..errors import ConflictError, NotFoundError, ValidationError
from ..models_common import utcnow
from ..storage import BlobStorage, StoredBlob
from . import changelog as changelog_mod
from .models import Channel, Component, Release, release_channels
from .schemas import PublishMetadata, normalise_version

ReleaseHook = Callable[[Session, Release, str], None]
DEFAULT_CHANNELS = ("stable", "beta")


class UnknownComponentError(NotFoundError):
    code = "unknown_component"

    def __init__(self, name: str) -> None:
        super().__init__(f"no component named {name!r}", field="component")
        self.name = name


class UnknownChannelError(NotFoundError):
    code = "unknown_channel"

    def __init__(self, name: str) -> None:
        super().__init__(f"no channel named {name!r}", field="channels")
        self.name = name


class UnknownReleaseError(NotFoundError):
    code = "unknown_release"

    def __init__(self, component: str, version: str) -> None:
        super().__init__(f"component {component!r} has no release {version!r}", field="version")
        self.component, self.version = component, version


class DuplicateComponentError(ConflictError):
    code = "duplicate_component"

    def __init__(self, name: str) -> None:
        super().__init__(f"component {name!r} already exists", field="name")


class DuplicateChannelError(ConflictError):
    code = "duplicate_channel"

    def __init__(self, name: str) -> None:
        super().__init__(f"channel {name!r} already exists", field="name")


class DuplicateReleaseError(ConflictError):
    code = "duplicate_release"

    def __init__(self, component: str, version: str) -> None:
        super().__init__(f"{component} {version} is already published", field="version")
        self.component, self.version = component, version


class StagedRolloutRequiredError(ValidationError):
    code = "staged_rollout_required"

    def __init__(self, channel: str) -> None:
        super().__init__(f"channel {channel!r} requires every release to start as a staged rollout: publish it "
                         "with a rollout schedule", field="rollout")
        self.channel = channel


class EmptyArtifactError(ValidationError):
    code = "empty_artifact"

    def __init__(self) -> None:
        super().__init__("the artifact is empty", field="artifact")


def _hooks() -> list[ReleaseHook]:
    if not has_app_context():
        return []
    return current_app.extensions.setdefault("release_hooks", [])


def _notify(session: Session, release: Release, event: str) -> None:
    for hook in _hooks():
        hook(session, release, event)


def notify(session: Session, release: Release, event: str) -> None:
    """Tell the release hooks about an event raised outside this module (``signed``: a release
    of a claimed component reached its publishers' signature threshold)."""
    _notify(session, release, event)


def delete_unsigned_release(session: Session, release: Release) -> None:
    """Remove a release whose publishers never signed it (it was never offered)."""
    if not release.signatures_pending:
        raise ConflictError("only a release still waiting for signatures can be removed", field="version")
    session.delete(release)
    session.flush()


# components and channels

def create_component(session: Session, name: str, description: str = "") -> Component:
    if session.scalar(select(Component).where(Component.name == name)) is not None:
        raise DuplicateComponentError(name)
    comp = Component(name=name, description=description)
    session.add(comp)
    session.flush()
    return comp


def get_component(session: Session, name: str) -> Component:
    comp = session.scalar(select(Component).where(Component.name == name))
    if comp is None:
        raise UnknownComponentError(name)
    return comp


def list_components(session: Session) -> list[Component]:
    return list(session.scalars(select(Component).order_by(Component.name)))


def create_channel(session: Session, name: str, description: str = "", *,
                   require_staged_rollout: bool = False) -> Channel:
    if session.scalar(select(Channel).where(Channel.name == name)) is not None:
        raise DuplicateChannelError(name)
    ch = Channel(name=name, description=description, require_staged_rollout=require_staged_rollout)
    session.add(ch)
    session.flush()
    return ch


def get_channel(session: Session, name: str) -> Channel:
    ch = session.scalar(select(Channel).where(Channel.name == name))
    if ch is None:
        raise UnknownChannelError(name)
    return ch


def set_channel_settings(session: Session, name: str, *, require_staged_rollout: bool) -> Channel:
    ch = get_channel(session, name)
    ch.require_staged_rollout = require_staged_rollout
    session.flush()
    return ch


def list_channels(session: Session) -> list[Channel]:
    return list(session.scalars(select(Channel).order_by(Channel.name)))


# publishing

@dataclass(frozen=True)
class PublishPlan:
    """A publish request that passed every check that needs no artifact."""

    component: Component
    metadata: PublishMetadata
    channels: list[Channel]
    restricted_customers: list[int]
    restricted_installations: list[str]
    changelog_html: str = ""
    fixes: Any = None  # what the release fixes, as the support desk resolved it (``release_fixes`` extension)


def plan_publish(session: Session, component_name: str, metadata: PublishMetadata) -> PublishPlan:
    """Check everything about a publish before any byte is stored."""
    comp = get_component(session, component_name)
    channels = [get_channel(session, name) for name in metadata.channels]
    exists = session.scalar(select(Release.id).where(Release.component_id == comp.id,
                                                     Release.version == metadata.version))
    if exists is not None:
        raise DuplicateReleaseError(comp.name, metadata.version)
    for dep in metadata.requires:
        if dep == comp.name:
            raise ValidationError("a release cannot require its own component", field=f"requires.{dep}")
        if session.scalar(select(Component.id).where(Component.name == dep)) is None:
            raise ValidationError(f"required component {dep!r} does not exist", field=f"requires.{dep}")
    if metadata.min_from_version and Version(metadata.min_from_version) >= Version(metadata.version):
        raise ValidationError("min_from_version must be lower than the release's version", field="min_from_version")
    max_chars = current_app.config["MAX_CHANGELOG_CHARS"] if has_app_context() else 200_000
    if len(metadata.changelog) > max_chars:
        raise ValidationError(f"changelog longer than {max_chars} characters", field="changelog")
    if metadata.rollout is None and not (metadata.restricted_customers or metadata.restricted_installations
                                         or metadata.restrict_to_affected):
        for ch in channels:
            if ch.require_staged_rollout:
                raise StagedRolloutRequiredError(ch.name)
    changelog_html = changelog_mod.render(metadata.changelog)  # linear; refuses too deep nesting
    customers, installations = _check_restrictions(session, metadata)
    fixes = None
    if metadata.fixes or metadata.fixes_groups:
        linker = _fixes_extension()
        if linker is None:
            raise ValidationError("fix links are not available", field="fixes")
        fixes = linker.plan(session, comp, metadata.fixes, metadata.fixes_groups)
    if metadata.restrict_to_affected:
        if fixes is None:
            raise ValidationError("restrict_to_affected needs the tickets or failure groups the release fixes",
                                  field="restrict_to_affected")
        if not fixes.affected:
            raise ValidationError("the tickets and failure groups named have no affected installations",
                                  field="restrict_to_affected")
        installations = list(dict.fromkeys([*installations, *fixes.affected]))
    return PublishPlan(comp, metadata, channels, customers, installations, changelog_html, fixes)


def _fixes_extension() -> Any:
    return current_app.extensions.get("release_fixes") if has_app_context() else None


def fixes_of(session: Session, release: Release) -> dict[str, list[Any]]:
    """The tickets and failure groups a release fixes (empty without the support desk)."""
    linker = _fixes_extension()
    return linker.of_release(session, release) if linker is not None else {"tickets": [], "groups": []}


def _check_restrictions(session: Session, metadata: PublishMetadata) -> tuple[list[int], list[str]]:
    from ..fleet.models import Installation
    from ..fleet.services import get_customer

    customers = []
    for i, ref in enumerate(metadata.restricted_customers):
        try:
            customers.append(get_customer(session, ref).id)
        except NotFoundError:
            raise NotFoundError(f"no customer {ref!r}", field=f"restricted_customers.{i}") from None
    for i, inst_id in enumerate(metadata.restricted_installations):
        if session.get(Installation, inst_id) is None:
            raise NotFoundError(f"no installation {inst_id!r}", field=f"restricted_installations.{i}")
    return customers, list(metadata.restricted_installations)


def create_release(session: Session, plan: PublishPlan, blob: StoredBlob, filename: str, actor: str) -> Release:
    if blob.size == 0:
        raise EmptyArtifactError()
    meta = plan.metadata
    release = Release(
        component=plan.component, version=meta.version, artifact_filename=filename,
        artifact_sha256=blob.sha256, artifact_size=blob.size, blob_key=blob.key, changelog=meta.changelog,
        changelog_html=plan.changelog_html,
        critical=meta.critical, min_from_version=meta.min_from_version, requires=meta.requires,
        created_by=actor, channels=list(plan.channels))
    session.add(release)
    session.flush()
    if plan.restricted_customers or plan.restricted_installations:
        from ..rollouts.models import ReleaseRestriction

        session.add_all([ReleaseRestriction(release_id=release.id, customer_id=c) for c in plan.restricted_customers]
                        + [ReleaseRestriction(release_id=release.id, installation_id=i)
                           for i in plan.restricted_installations])
        session.flush()
    if meta.rollout is not None:
        # the rollout exists in the same transaction as the release: no check ever sees one without the other
        stage = current_app.extensions.get("publish_rollout") if has_app_context() else None
        if stage is None:
            raise ValidationError("staged rollouts are not available", field="rollout")
        stage(session, release, meta.rollout, actor)
    if plan.fixes:
        _fixes_extension().link(session, release, plan.fixes, actor)
    _notify(session, release, "publish")
    return release


def check_artifact(path: str) -> None:
    """Refuse, before it is stored, an artifact no installation could install (``InvalidArtifactError``)."""
    from .artifacts import check_artifact as check

    check(path)


def artifact_passes_while_received(blocks: Iterator[memoryview]) -> bool:
    """True when the artifact arriving as ``blocks`` passes :func:`check_artifact` (checked as it streams in).

    False leaves the verdict to :func:`check_artifact` of the received file.
    """
    from .artifacts import check_artifact_blocks

    return check_artifact_blocks(blocks)


def blob_in_use(session: Session, key: str) -> bool:
    return session.scalar(select(func.count(Release.id)).where(Release.blob_key == key)) > 0


def discard_blob_if_unused(session: Session, storage: BlobStorage, key: str) -> None:
    """After a refused publish: remove the blob unless another release shares its content."""
    if not blob_in_use(session, key):
        storage.delete(key)


# reading

def get_release(session: Session, component_name: str, version: str) -> Release:
    comp = get_component(session, component_name)
    try:
        normal = normalise_version(version)
    except ValueError as e:
        raise ValidationError(str(e), field="version") from None
    rel = session.scalar(select(Release).where(Release.component_id == comp.id, Release.version == normal))
    if rel is None:
        raise UnknownReleaseError(comp.name, normal)
    return rel


def releases_of(session: Session, component: Component, channel: str | None = None,
                include_yanked: bool = True) -> list[Release]:
    """A component's releases, newest first by PEP 440 order."""
    stmt = select(Release).where(Release.component_id == component.id)
    if channel is not None:
        ch = get_channel(session, channel)
        stmt = stmt.join(release_channels, release_channels.c.release_id == Release.id).where(
            release_channels.c.channel_id == ch.id)
    if not include_yanked:
        stmt = stmt.where(Release.yanked.is_(False))
    rows = list(session.scalars(stmt))
    rows.sort(key=lambda r: Version(r.version), reverse=True)
    return rows


def list_releases(session: Session, component_name: str, *, channel: str | None, page: int, per_page: int,
                  include_yanked: bool = True) -> tuple[list[Release], int]:
    comp = get_component(session, component_name)
    rows = releases_of(session, comp, channel, include_yanked)
    start = (page - 1) * per_page
    return rows[start:start + per_page], len(rows)


# changing

def promote(session: Session, release: Release, channel_name: str) -> Release:
    ch = get_channel(session, channel_name)
    if ch not in release.channels and ch.require_staged_rollout:
        from ..rollouts.models import ReleaseRestriction

        restricted = session.scalar(select(func.count(ReleaseRestriction.id))
                                    .where(ReleaseRestriction.release_id == release.id))
        if not restricted:
            raise ConflictError(f"channel {ch.name!r} requires every release to start as a staged rollout; "
                                "publish the release there with a rollout schedule", field="channel",
                                code="staged_rollout_required")
    if ch not in release.channels:
        release.channels.append(ch)
        session.flush()
        _notify(session, release, "promote")
    return release


def yank(session: Session, release: Release, reason: str) -> Release:
    release.yanked = True
    release.yank_reason = reason
    release.yanked_at = utcnow()
    session.flush()
    _notify(session, release, "yank")
    return release


def unyank(session: Session, release: Release) -> Release:
    if release.yanked:
        release.yanked = False
        release.yank_reason = None
        release.yanked_at = None
        session.flush()
        _notify(session, release, "unyank")
    return release


# changelogs

def combined_changelog(session: Session, component_name: str, from_version: str | None,
                       to_version: str) -> tuple[Component, list[Release]]:
    """Releases after ``from_version`` (exclusive) up to ``to_version`` (inclusive), newest first."""
    comp = get_component(session, component_name)
    low = Version(from_version) if from_version else None
    high = Version(to_version)
    if low is not None and low > high:
        raise ValidationError("'from' must not be above 'to'", field="from")
    rows = [r for r in releases_of(session, comp) if (low is None or Version(r.version) > low)
            and Version(r.version) <= high]
    return comp, rows


def render_changelog(text: str) -> str:
    """Render Markdown that was not stored at publish (raises ``ChangelogTooDeepError``)."""
    return changelog_mod.render(text)


def combined_changelog_html(entries: list[tuple[str, str]]) -> str:
    """The stored HTML of several releases, each under a heading with its version (nothing is rendered)."""
    from markupsafe import escape

    return "\n".join(f"<h2>{escape(version)}</h2>\n{html}".rstrip() for version, html in entries)
