"""Shapes of the fleet API: customers, enrollment, installations, checks and reports."""
from __future__ import annotations

import re
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..releases.schemas import check_name, normalise_version

WINDOW_RE = re.compile(r"(?:(?:mon|tue|wed|thu|fri|sat|sun)(?:-(?:mon|tue|wed|thu|fri|sat|sun))?\s+)?"
                       r"([01][0-9]|2[0-3]):[0-5][0-9]-([01][0-9]|2[0-4]):[0-5][0-9]", re.I)


def check_versions(v: dict[str, str]) -> dict[str, str]:
    out = {}
    for comp, version in v.items():
        check_name(comp, "component")
        out[comp] = normalise_version(version)
    return out


class CreateCustomer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    contact_email: str | None = Field(default=None, max_length=254)
    mail_domains: list[str] = Field(default_factory=list, max_length=20)


class CustomerOut(BaseModel):
    id: int
    name: str
    contact_email: str | None
    mail_domains: list[str]
    created_at: datetime


class CustomerList(BaseModel):
    items: list[CustomerOut]


class CreateEnrollmentToken(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_uses: int | None = Field(default=None, ge=1, le=1_000_000)
    expires_at: datetime | None = None


class EnrollmentTokenOut(BaseModel):
    prefix: str
    customer: str
    max_uses: int | None
    uses: int
    expires_at: datetime | None
    revoked_at: datetime | None
    token: str | None = Field(default=None, description="The secret; only in the response that created it")


class EnrollRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enrollment_token: str = Field(min_length=1, max_length=200)
    name: str = Field(min_length=1, max_length=200)
    hostname: str = Field(default="", max_length=255)
    platform: str = Field(default="", max_length=120)
    agent_version: str = Field(default="", max_length=64)
    channel: str = "stable"
    tags: list[str] = Field(default_factory=list, max_length=50)
    maintenance_window: str | None = Field(default=None, description="e.g. '01:00-05:00' or 'sat-sun 00:00-06:00'")
    installed: dict[str, str] = Field(default_factory=dict)
    components: list[str] = Field(default_factory=list, max_length=100,
                                  description="Components the installation will run (checked against the server's)")

    @field_validator("channel")
    @classmethod
    def _channel(cls, v: str) -> str:
        return check_name(v, "channel")

    @field_validator("components")
    @classmethod
    def _components(cls, v: list[str]) -> list[str]:
        return sorted({check_name(c, "component") for c in v})

    @field_validator("tags")
    @classmethod
    def _tags(cls, v: list[str]) -> list[str]:
        return sorted({check_name(t, "tag") for t in v})

    @field_validator("installed")
    @classmethod
    def _installed(cls, v: dict[str, str]) -> dict[str, str]:
        return check_versions(v)

    @field_validator("maintenance_window")
    @classmethod
    def _window(cls, v: str | None) -> str | None:
        if v in (None, ""):
            return None
        if not WINDOW_RE.fullmatch(v.strip(" \t")):
            raise ValueError("expected 'HH:MM-HH:MM', optionally after days such as 'sat-sun'")
        return v.strip(" \t").lower()


class EnrollResponse(BaseModel):
    installation_id: str
    token: str = Field(description="The installation's own token; shown once")
    customer: str
    channel: str
    root_json: dict | None = Field(description="The trusted TUF root to bootstrap from (None if not yet signed)")
    tuf_metadata_url: str
    tuf_targets_url: str
    poll_interval: int
    unknown_components: list[str] = Field(default_factory=list,
                                          description="Components asked for that the server does not know")


class CheckRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    installed: dict[str, str] = Field(default_factory=dict)
    components: list[str] = Field(default_factory=list, max_length=100,
                                  description="Components the installation runs but has not installed yet; "
                                              "each is offered its newest eligible release")
    agent_version: str | None = Field(default=None, max_length=64)
    state: Literal["idle", "updating", "failing"] | None = None

    @field_validator("installed")
    @classmethod
    def _installed(cls, v: dict[str, str]) -> dict[str, str]:
        return check_versions(v)

    @field_validator("components")
    @classmethod
    def _components(cls, v: list[str]) -> list[str]:
        return sorted({check_name(c, "component") for c in v})


class OfferOut(BaseModel):
    component: str
    version: str
    from_version: str | None
    target_path: str
    sha256: str
    length: int
    critical: bool
    downgrade: bool = Field(description="True only when the installed release is yanked")
    changelog: str = Field(description="Combined Markdown changelog of every version skipped")


class CheckResponse(BaseModel):
    offers: list[OfferOut]
    poll_interval: int
    maintenance_window: str | None


class ReportIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=r"^[0-9a-fA-F-]{32,36}$", description="UUID chosen by the agent")
    component: str
    from_version: str | None = None
    to_version: str
    outcome: Literal["success", "rolled_back", "failed", "refused", "operator_rollback"] = Field(
        description="operator_rollback: an operator went back to the previous release on purpose (from = the "
                    "release left, to = the one now running); not a failed update")
    stage: str | None = Field(default=None, max_length=40)
    error_code: str | None = Field(default=None, max_length=80)
    error_message: str | None = Field(default=None, max_length=4000)
    duration_seconds: float | None = Field(default=None, ge=0)
    log_tail: str = Field(default="", max_length=70_000)
    started_at: datetime | None = None
    details: dict = Field(default_factory=dict)
    bytes_downloaded: int | None = Field(default=None, ge=0, le=2**62, description="Bytes the update transferred")
    bytes_full: int | None = Field(default=None, ge=0, le=2**62,
                                   description="Bytes a full download of the release would have taken")

    @field_validator("component")
    @classmethod
    def _component(cls, v: str) -> str:
        return check_name(v, "component")

    @field_validator("from_version", "to_version")
    @classmethod
    def _versions(cls, v: str | None) -> str | None:
        return None if v in (None, "") else normalise_version(v)


class ReportBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reports: list[ReportIn] = Field(min_length=1, max_length=100)


class ReportAck(BaseModel):
    accepted: list[str]
    duplicates: list[str]


class InstallationOut(BaseModel):
    id: str
    customer: str
    name: str
    hostname: str
    platform: str
    agent_version: str
    channel: str
    tags: list[str]
    maintenance_window: str | None
    state: str
    health: str
    versions: dict[str, str]
    enrolled_at: datetime
    last_seen_at: datetime | None
    revoked: bool


class InstallationList(BaseModel):
    items: list[InstallationOut]
    total: int


class InstallationQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    customer: str | None = None
    health: Literal["up_to_date", "updating", "failing", "stale"] | None = None
    component: str | None = None
    version: str | None = None
    tag: str | None = None
    page: int = Field(default=1, ge=1, le=1_000_000)
    per_page: int = Field(default=50, ge=1, le=500)


class UpdateInstallation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    channel: str | None = None
    tags: list[str] | None = None
    maintenance_window: str | None = None
    name: str | None = Field(default=None, min_length=1, max_length=200)

    _c = field_validator("channel")(classmethod(lambda cls, v: v if v is None else check_name(v, "channel")))
    _t = field_validator("tags")(classmethod(lambda cls, v: v if v is None else sorted({check_name(t, "tag")
                                                                                         for t in v})))
    _w = field_validator("maintenance_window")(classmethod(lambda cls, v: EnrollRequest._window(v)))


class ReportOut(BaseModel):
    id: str
    installation_id: str
    component: str
    from_version: str | None
    to_version: str
    outcome: str
    stage: str | None
    error_code: str | None
    error_message: str | None
    duration_seconds: float | None
    log_tail: str
    received_at: datetime
    bytes_downloaded: int | None = None
    bytes_full: int | None = None


class ReportList(BaseModel):
    items: list[ReportOut]
