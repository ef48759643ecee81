"""Shapes of the rollouts API: rollouts, pins, restrictions and fleet figures."""
from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..releases.schemas import check_name, normalise_version


class ScheduleStep(BaseModel):
    model_config = ConfigDict(extra="forbid")
    percent: float = Field(gt=0, le=100)
    min_hours: float = Field(default=0, ge=0)


class CreateRollout(BaseModel):
    model_config = ConfigDict(extra="forbid")
    component: str
    version: str
    channel: str = "stable"
    schedule: list[ScheduleStep] = Field(default_factory=list, max_length=20)
    failure_threshold: float = Field(default=0.05, gt=0, lt=1)
    min_attempts: int = Field(default=20, ge=1, le=1_000_000)
    start: bool = False

    @field_validator("version")
    @classmethod
    def _v(cls, v: str) -> str:
        return normalise_version(v)

    @field_validator("component", "channel")
    @classmethod
    def _n(cls, v: str) -> str:
        return check_name(v)


class NextStepOut(BaseModel):
    action: str = Field(description="resume | yank | new_release")
    description: str
    command: str = Field(description="The release-server command")
    method: str | None = Field(default=None, description="The API call's method (none: several calls)")
    path: str | None = None


class RolloutOut(BaseModel):
    id: int
    component: str
    version: str
    channel: str
    state: str
    percent: float
    schedule: list[dict]
    phase: int
    phase_started_at: datetime | None
    failure_threshold: float
    min_attempts: int
    attempts: int
    successes: int
    failures: int
    failure_rate: float
    halted_at: datetime | None
    halt_reason: str | None
    halt_figures: dict
    next_steps: list[NextStepOut] = Field(default_factory=list,
                                          description="What can be done with a halted rollout")
    created_by: str
    created_at: datetime


class RolloutList(BaseModel):
    items: list[RolloutOut]


class RolloutQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    state: Literal["draft", "running", "paused", "halted", "completed"] | None = None
    component: str | None = None


class PercentBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    percent: float = Field(ge=0, le=100)


class StartBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    percent: float | None = Field(default=None, ge=0, le=100)


class ResumeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str | None = Field(default=None, min_length=1, max_length=2000,
                               description="Required to resume a halted rollout: what was fixed")


class YankBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=2000)


class HaltBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=2000)


class CreatePin(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scope: Literal["installation", "tag", "customer"]
    value: str = Field(min_length=1, max_length=200, description="installation id, tag, or customer id/name")
    component: str
    version: str | None = Field(default=None, description="exact version")
    prefix: str | None = Field(default=None, pattern=r"^[0-9]+(\.[0-9]+)*\.?$", description="version prefix, e.g. 2.4")
    note: str = Field(default="", max_length=2000)

    @field_validator("component")
    @classmethod
    def _c(cls, v: str) -> str:
        return check_name(v, "component")

    @field_validator("version")
    @classmethod
    def _v(cls, v: str | None) -> str | None:
        return None if v is None else normalise_version(v)


class PinOut(BaseModel):
    id: int
    scope: str
    value: str
    component: str
    pin: str
    exact: bool
    note: str
    created_by: str
    created_at: datetime


class PinList(BaseModel):
    items: list[PinOut]
    total: int


class PinQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    page: int = Field(default=1, ge=1, le=1_000_000)
    per_page: int = Field(default=100, ge=1, le=500)


class RestrictBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    customers: list[str] = Field(default_factory=list, max_length=1000)
    installations: list[str] = Field(default_factory=list, max_length=10_000)


class RestrictionsOut(BaseModel):
    customers: list[str]
    installations: list[str]


class VersionCount(BaseModel):
    component: str
    version: str
    installations: int


class VersionFigures(BaseModel):
    items: list[VersionCount]
    stale: int
    total: int


class AdoptionQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    component: str
    days: int = Field(default=30, ge=1, le=366)


class AdoptionDay(BaseModel):
    day: date
    versions: dict[str, int]
    counted: bool = Field(default=True, description="False: the day has not been counted yet (it is counted by "
                                                    "the worker after it ends), and versions is empty")


class Adoption(BaseModel):
    component: str
    days: list[AdoptionDay]


class RolloutDay(BaseModel):
    day: date
    attempts: int
    failures: int
    failure_rate: float


class RolloutFigures(BaseModel):
    rollout: RolloutOut
    days: list[RolloutDay]
