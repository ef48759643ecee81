"""Accounts API: users, tokens, audit log (admin only)."""
from __future__ import annotations

from ..api import ADMIN, endpoint
from ..db import db
from . import services
from .auth import Principal
from .models import ApiToken
from .schemas import (AuditEventOut, AuditList, AuditQuery, CreateToken, CreateUser, IssuedTokenOut, TokenList,
                      TokenOut, UserOut)


def _token_out(t: ApiToken) -> dict:
    return dict(prefix=t.prefix, name=t.name, role=t.role, user=t.user.username if t.user else None,
                created_at=t.created_at, expires_at=t.expires_at, revoked_at=t.revoked_at)


@endpoint("/users", methods=["POST"], roles=ADMIN, body=CreateUser, response=UserOut, status=201,
          summary="Create a staff user", tag="accounts")
def create_user(principal: Principal, body: CreateUser) -> UserOut:
    user = services.create_user(db.session, body.username, body.password, body.role, body.email)
    services.audit(db.session, principal.actor, "user.create", f"user:{user.username}", {"role": user.role})
    db.commit()
    return UserOut.model_validate(user, from_attributes=True)


@endpoint("/tokens", methods=["POST"], roles=ADMIN, body=CreateToken, response=IssuedTokenOut, status=201,
          summary="Issue an API token (its secret is shown once)", tag="accounts")
def create_token(principal: Principal, body: CreateToken) -> IssuedTokenOut:
    user = services.get_user(db.session, body.username) if body.username else None
    issued = services.issue_token(db.session, name=body.name, role=body.role, user=user, expires_at=body.expires_at)
    services.audit(db.session, principal.actor, "token.create", f"token:{issued.token.prefix}", {"role": body.role})
    db.commit()
    return IssuedTokenOut(**_token_out(issued.token), token=issued.secret)


@endpoint("/tokens", roles=ADMIN, response=TokenList, summary="List API tokens", tag="accounts")
def list_tokens(principal: Principal) -> TokenList:
    return TokenList(items=[TokenOut(**_token_out(t)) for t in services.list_tokens(db.session)])


@endpoint("/tokens/<prefix>", methods=["DELETE"], roles=ADMIN, response=TokenOut,
          summary="Revoke an API token", tag="accounts")
def revoke_token(principal: Principal, prefix: str) -> TokenOut:
    token = services.revoke_token(db.session, prefix)
    services.audit(db.session, principal.actor, "token.revoke", f"token:{prefix}")
    db.commit()
    return TokenOut(**_token_out(token))


@endpoint("/audit", roles=ADMIN, query=AuditQuery, response=AuditList, summary="Read the audit log", tag="accounts")
def audit_log(principal: Principal, query: AuditQuery) -> AuditList:
    events = services.list_audit(db.session, limit=query.limit, offset=query.offset, action=query.action)
    return AuditList(items=[AuditEventOut.model_validate(e, from_attributes=True) for e in events])
