"""Shapes of the releases API: what a publish must carry and what the API returns.

Field checks that need no database (PEP 440 versions, version specifiers, names) live
here, so the same rules validate the request and document it in OpenAPI.
"""
from __future__ import annotations

import re
from datetime import datetime
from functools import lru_cache

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version
from pydantic import BaseModel, ConfigDict, Field, field_validator

#: Names and file names are checked with ``fullmatch`` (``$`` would also accept a trailing newline).
NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
FILENAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,254}")


@lru_cache(maxsize=8192)
def _normal(value: str) -> str | None:
    try:
        return str(Version(value))
    except InvalidVersion:
        return None


def normalise_version(value: str) -> str:
    """PEP 440 normal form; ValueError with a readable message otherwise (cached: versions repeat)."""
    normal = _normal(value) if isinstance(value, str) else None
    if normal is None:
        raise ValueError(f"{value!r} is not a valid PEP 440 version")
    return normal


def check_name(value: str, what: str = "name") -> str:
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        raise ValueError(f"{what} must be 1-64 lower-case letters, digits, '.', '_' or '-', starting with a letter "
                         "or digit")
    return value


class CreateComponent(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = Field(default="", max_length=10_000)

    @field_validator("name")
    @classmethod
    def _check_name(cls, v: str) -> str:
        return check_name(v)


class ComponentOut(BaseModel):
    name: str
    description: str
    created_at: datetime


class ComponentList(BaseModel):
    items: list[ComponentOut]


class CreateChannel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = Field(default="", max_length=10_000)
    require_staged_rollout: bool = Field(default=False, description="Every release published on this channel "
                                                                   "must start as a staged rollout")

    @field_validator("name")
    @classmethod
    def _check_name(cls, v: str) -> str:
        return check_name(v)


class ChannelOut(BaseModel):
    name: str
    description: str
    require_staged_rollout: bool = False


class ChannelSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    require_staged_rollout: bool


class PublishRolloutStep(BaseModel):
    model_config = ConfigDict(extra="forbid")
    percent: float = Field(gt=0, le=100)
    min_hours: float = Field(default=0, ge=0)


class PublishRollout(BaseModel):
    """A staged rollout created with the release, in the same transaction, on each of its channels."""

    model_config = ConfigDict(extra="forbid")
    schedule: list[PublishRolloutStep] = Field(min_length=1, max_length=20,
                                               description="Phases; the first one's share is offered at once")
    failure_threshold: float = Field(default=0.05, gt=0, lt=1)
    min_attempts: int = Field(default=20, ge=1, le=1_000_000)
    start: bool = Field(default=True, description="Start at the first phase at once (else a draft: offers nothing)")


class ChannelList(BaseModel):
    items: list[ChannelOut]


class PublishMetadata(BaseModel):
    """The ``metadata`` part of a publish request (JSON)."""

    model_config = ConfigDict(extra="forbid")
    version: str = Field(description="PEP 440 version; stored in normal form")
    channels: list[str] = Field(default_factory=lambda: ["beta"], min_length=1)
    changelog: str = Field(default="", description="Markdown")
    critical: bool = False
    min_from_version: str | None = Field(default=None, description="Installations below this version must first "
                                                                   "move to a release that accepts them")
    requires: dict[str, str] = Field(default_factory=dict,
                                     description="Component name -> PEP 440 version specifier, e.g. '>=2.0,<3'")
    filename: str | None = Field(default=None, description="Artifact file name; defaults to the uploaded name")
    size: int | None = Field(default=None, ge=0, description="Artifact size in bytes, if known: a size over the "
                                                             "limit is refused before the artifact is sent")
    restricted_customers: list[str] = Field(
        default_factory=list, description="Offer this release only to these customers (ids or names): a fix "
                                          "for one customer, never offered to anyone else")
    restricted_installations: list[str] = Field(default_factory=list,
                                                description="Offer this release only to these installations")
    rollout: PublishRollout | None = Field(default=None, description="Publish as a staged rollout: the release "
                                                                     "is never offered outside its first phase")
    fixes: list[str] = Field(default_factory=list, max_length=200,
                             description="Tickets this release fixes (numbers, e.g. OTK-000123)")
    fixes_groups: list[int] = Field(default_factory=list, max_length=200,
                                    description="Failure groups this release fixes (resolved in its version)")
    restrict_to_affected: bool = Field(default=False, description="Offer the release only to the installations "
                                                                  "affected by the tickets and groups it fixes")
    tuf_role: dict | None = Field(default=None, description="Claimed components only: the next version of the "
                                                          "component's TUF role, signed by its publishers")

    @field_validator("version")
    @classmethod
    def _version(cls, v: str) -> str:
        return normalise_version(v)

    @field_validator("min_from_version")
    @classmethod
    def _min_from(cls, v: str | None) -> str | None:
        return None if v in (None, "") else normalise_version(v)

    @field_validator("channels")
    @classmethod
    def _channels(cls, v: list[str]) -> list[str]:
        for name in v:
            check_name(name, "channel")
        return sorted(set(v))

    @field_validator("requires")
    @classmethod
    def _requires(cls, v: dict[str, str]) -> dict[str, str]:
        out = {}
        for comp, spec in v.items():
            check_name(comp, "required component")
            try:
                out[comp] = str(SpecifierSet(spec))
            except InvalidSpecifier:
                raise ValueError(f"{spec!r} is not a valid version specifier for {comp!r}") from None
        return out

    @field_validator("filename")
    @classmethod
    def _filename(cls, v: str | None) -> str | None:
        if v is not None and not FILENAME_RE.fullmatch(v):
            raise ValueError("filename may hold letters, digits, '.', '_', '+' and '-' only")
        return v


class ReleaseOut(BaseModel):
    component: str
    version: str
    channels: list[str]
    artifact: dict
    changelog: str
    changelog_html: str
    critical: bool
    min_from_version: str | None
    requires: dict[str, str]
    created_by: str
    created_at: datetime
    yanked: bool
    yank_reason: str | None
    download_url: str
    fixes: list[str] = Field(default_factory=list, description="Tickets the release fixes")
    fixes_groups: list[int] = Field(default_factory=list, description="Failure groups the release fixes")
    signatures_pending: bool = False
    #: for a claimed component's change still below threshold: keyids that signed and that are awaited
    signatures: dict | None = None


class ReleasePage(BaseModel):
    items: list[ReleaseOut]
    page: int
    per_page: int
    total: int


class ReleaseQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    channel: str | None = None
    page: int = Field(default=1, ge=1, le=1_000_000)
    per_page: int = Field(default=50, ge=1, le=200)
    include_yanked: bool = True


class PromoteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    channel: str
    tuf_role: dict | None = Field(default=None, description="Claimed components: the publisher-signed role")

    @field_validator("channel")
    @classmethod
    def _check_channel(cls, v: str) -> str:
        return check_name(v, "channel")


class YankBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=2000)
    tuf_role: dict | None = Field(default=None, description="Claimed components: the publisher-signed role")


class UnyankBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tuf_role: dict | None = Field(default=None, description="Claimed components: the publisher-signed role")


class ChangelogQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    from_version: str | None = Field(default=None, alias="from", description="exclusive; omit for the beginning")
    to_version: str = Field(alias="to", description="inclusive")

    @field_validator("from_version", "to_version")
    @classmethod
    def _v(cls, v: str | None) -> str | None:
        return None if v is None else normalise_version(v)


class ChangelogEntry(BaseModel):
    version: str
    created_at: datetime
    critical: bool
    yanked: bool
    changelog: str
    changelog_html: str


class CombinedChangelog(BaseModel):
    component: str
    from_version: str | None
    to_version: str
    entries: list[ChangelogEntry]
    markdown: str
    html: str
