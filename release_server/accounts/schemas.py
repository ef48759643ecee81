"""Shapes of the accounts API's requests and responses."""
from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["admin", "publisher", "support"]


class CreateUser(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=2, max_length=80)
    password: str = Field(min_length=10, max_length=1024)
    role: Role
    email: str | None = Field(default=None, max_length=254)


class UserOut(BaseModel):
    id: int
    username: str
    email: str | None
    role: str
    active: bool
    created_at: datetime


class CreateToken(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=120)
    role: Role
    username: str | None = None
    expires_at: datetime | None = None


class TokenOut(BaseModel):
    prefix: str
    name: str
    role: str
    user: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class IssuedTokenOut(TokenOut):
    token: str = Field(description="The secret: shown once, never again")


class TokenList(BaseModel):
    items: list[TokenOut]


class AuditEventOut(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    details: dict
    note: str | None


class AuditList(BaseModel):
    items: list[AuditEventOut]


class AuditQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit: int = Field(default=100, ge=1, le=500)
    offset: int = Field(default=0, ge=0, le=1_000_000_000)
    action: str | None = None
