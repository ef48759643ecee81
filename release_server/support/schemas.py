"""Shapes of the support API: tickets, their timeline, failure groups, mail, customer users."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Kind = Literal["incident", "problem", "service", "development"]
Status = Literal["new", "in_progress", "waiting_for_customer", "processed", "closed"]
Priority = Literal["low", "normal", "high", "urgent"]
Source = Literal["mail", "portal", "agent", "api", "failure_report", "phone"]
Department = Literal["support", "development"]
MAX_TEXT = 100_000


class TicketCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subject: str = Field(min_length=1, max_length=300)
    description: str = Field(default="", max_length=MAX_TEXT)
    kind: Kind = "incident"
    priority: Priority = "normal"
    customer: str | None = Field(default=None, description="Customer id or name (staff only; others: their own)")
    requester_email: str | None = Field(default=None, max_length=254)
    requester_name: str = Field(default="", max_length=200)
    installation_id: str | None = Field(default=None, max_length=36)
    source: Literal["api", "phone"] = Field(default="api", description="'phone': staff register a request "
                                                                       "received by phone on a contact's behalf")


class TicketPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Status | None = None
    kind: Kind | None = None
    priority: Priority | None = None
    assignee: str | None = Field(default=None, description="Staff username; null unassigns")
    customer: str | None = Field(default=None, description="Assign a queued ticket to a customer")
    subject: str | None = Field(default=None, min_length=1, max_length=300)
    comment: str | None = Field(default=None, max_length=MAX_TEXT,
                                description="Public comment sent with the change (e.g. when processed)")


class TextBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    body: str = Field(min_length=1, max_length=MAX_TEXT)

    @field_validator("body")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be blank")
        return v


class MergeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    into: str = Field(min_length=1, max_length=40, description="Number of the ticket that stays")


class TicketQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    number: str | None = None
    status: list[Status] | Status | None = None
    kind: Kind | None = None
    customer: str | None = None
    queue: Literal["unassigned"] | None = Field(default=None, description="'unassigned': tickets with no customer")
    assignee: str | None = None
    source: Source | None = None
    failure_group: int | None = None
    department: Department | None = Field(default=None, description="A department's queue")
    q: str | None = Field(default=None, max_length=200, description="Text search")
    page: int = Field(default=1, ge=1, le=1_000_000)
    per_page: int = Field(default=50, ge=1, le=200)


class TicketOut(BaseModel):
    number: str
    kind: str
    subject: str
    status: str
    priority: str
    customer: str | None
    requester_email: str | None
    assignee: str | None
    source: str
    internal: bool
    regression: bool
    installation_id: str | None
    release_id: int | None
    failure_group_id: int | None
    previous_ticket: str | None
    merged_into: str | None
    created_at: datetime
    updated_at: datetime
    processed_at: datetime | None
    closed_at: datetime | None
    department: str = "support"
    review: str | None = None
    review_reason: str | None = None


class TicketList(BaseModel):
    items: list[TicketOut]
    total: int
    page: int
    per_page: int


class EventOut(BaseModel):
    id: int
    at: datetime
    kind: str
    public: bool
    author: str
    author_kind: str
    body: str
    data: dict[str, Any]


class AttachmentOut(BaseModel):
    id: int
    filename: str
    content_type: str
    size: int
    sha256: str
    public: bool
    uploaded_by: str
    created_at: datetime
    url: str


class FixRefOut(BaseModel):
    component: str
    version: str


class TicketDetail(TicketOut):
    description: str
    failure_groups: list[int]
    timeline: list[EventOut]
    attachments: list[AttachmentOut]
    fixed_by: list[FixRefOut] = Field(default_factory=list, description="Releases that fix this request")


class AttachmentList(BaseModel):
    items: list[AttachmentOut]


class FailureGroupOut(BaseModel):
    id: int
    fingerprint: str
    component: str
    target_version: str
    stage: str
    error_code: str
    message_pattern: str
    sample_message: str
    reports: int
    rolled_back: int
    failed: int
    installations: int
    customers: int
    tickets: int
    regressions: int
    first_seen_at: datetime | None
    last_seen_at: datetime | None
    state: str = "unresolved"
    resolved_in_version: str | None = None
    fixed_by: list[FixRefOut] = Field(default_factory=list, description="Releases that fix this group")


class FailureGroupList(BaseModel):
    items: list[FailureGroupOut]
    total: int


class FailureGroupQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    component: str | None = None
    version: str | None = None
    limit: int = Field(default=100, ge=1, le=500)
    offset: int = Field(default=0, ge=0, le=1_000_000_000)


class MailIngestOut(BaseModel):
    mail_id: int
    outcome: str
    ticket: str | None
    auto_answer: bool
    detail: str


class CustomerUserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str = Field(min_length=3, max_length=254)
    name: str = Field(default="", max_length=200)
    customer: str = Field(min_length=1, max_length=200)
    password: str | None = Field(default=None, min_length=10, max_length=1024)


class CustomerUserOut(BaseModel):
    id: int
    email: str
    name: str
    customer: str
    active: bool
    created_at: datetime


class CustomerTokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(default="api", min_length=1, max_length=120)
    expires_at: datetime | None = None


class CustomerTokenOut(BaseModel):
    prefix: str
    name: str
    customer_user: str
    created_at: datetime
    expires_at: datetime | None
    token: str = Field(description="The secret: shown once, never again")


class FixLinkBody(BaseModel):
    """Tickets and failure groups a release fixes (linked, or unlinked)."""

    model_config = ConfigDict(extra="forbid")
    tickets: list[str] = Field(default_factory=list, max_length=200, description="Ticket numbers")
    groups: list[int] = Field(default_factory=list, max_length=200, description="Failure group numbers")
    restrict_to_affected: bool = Field(default=False, description="Also limit the release to the affected "
                                                                  "installations (adds to its restriction)")


class ReleaseFixesOut(BaseModel):
    component: str
    version: str
    tickets: list[str]
    groups: list[int]
    restricted_installations: list[str]


class InstallationFixOut(BaseModel):
    installation_id: str
    name: str
    customer: str
    state: str = Field(description="fixed | waiting | failing | stale")
    first_failed_at: datetime
    fixed_at: datetime | None
    fixed_version: str | None
    running: str | None
    health: str


class SpanOut(BaseModel):
    first_failure_at: datetime | None
    fix_published_at: datetime | None
    fix_installed_at: datetime | None
    processed_at: datetime | None
    to_fix_published_seconds: float | None
    to_fix_installed_seconds: float | None
    to_processed_seconds: float | None


class CustomerSpanOut(SpanOut):
    customer: str


class GroupFixStatusOut(BaseModel):
    group_id: int
    state: str
    resolved_in_version: str | None
    fixed_by: list[FixRefOut]
    installations: list[InstallationFixOut]
    figures: SpanOut
    customers: list[CustomerSpanOut]


class GroupSpanOut(SpanOut):
    group_id: int
    component: str
    target_version: str


class CustomerFiguresOut(BaseModel):
    customer: str
    items: list[GroupSpanOut]


class DepartmentBody(BaseModel):
    """Escalate a ticket to development, or hand it back to support."""

    model_config = ConfigDict(extra="forbid")
    department: Department
    note: str = Field(default="", max_length=MAX_TEXT, description="Why (internal)")


class ReviewBody(BaseModel):
    """The outcome of reviewing a development request; the customer is told, in their language."""

    model_config = ConfigDict(extra="forbid")
    outcome: Literal["accepted", "declined"]
    reason: str = Field(default="", max_length=MAX_TEXT, description="Required when declined; told to the customer")
