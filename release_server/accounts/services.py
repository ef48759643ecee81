"""Account rules: creating users, hashing passwords, issuing and revoking tokens, auditing."""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import ConflictError, NotFoundError, ValidationError
from ..models_common import utcnow
from .models import ROLES, ApiToken, AuditEvent, User

_hasher = PasswordHasher()
TOKEN_RE = re.compile(r"rst_([a-z0-9]{8})_([A-Za-z0-9_-]{20,})")
USERNAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{1,79}")


class UnknownRoleError(ValidationError):
    code = "unknown_role"

    def __init__(self, role: str) -> None:
        super().__init__(f"unknown role {role!r}; expected one of {', '.join(ROLES)}", field="role")
        self.role = role


class DuplicateUserError(ConflictError):
    code = "duplicate_user"

    def __init__(self, username: str) -> None:
        super().__init__(f"user {username!r} already exists", field="username")
        self.username = username


@dataclass(frozen=True)
class IssuedToken:
    """A token just created: ``secret`` is shown once and never stored."""

    token: ApiToken
    secret: str


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def check_role(role: str) -> str:
    if role not in ROLES:
        raise UnknownRoleError(role)
    return role


def check_username(username: str) -> str:
    if not isinstance(username, str) or not USERNAME_RE.fullmatch(username):
        raise ValidationError("username must be 2-80 letters, digits or ._@-", field="username")
    return username


def create_user(session: Session, username: str, password: str, role: str, email: str | None = None) -> User:
    check_username(username)
    check_password(password)
    check_role(role)
    if session.scalar(select(User).where(User.username == username)) is not None:
        raise DuplicateUserError(username)
    user = User(username=username, email=email, password_hash=hash_password(password), role=role)
    session.add(user)
    session.flush()
    return user


def authenticate_user(session: Session, username: str, password: str) -> User | None:
    user = session.scalar(select(User).where(User.username == username))
    if user is None or not user.active:
        _hasher.hash("timing-equaliser")  # same cost whether or not the user exists
        return None
    return user if verify_password(user.password_hash, password) else None


def check_password(password: str) -> str:
    if len(password or "") < 10:
        raise ValidationError("password must have at least 10 characters", field="password")
    return password


def end_sessions(user: Any) -> None:
    """End every cookie session of a staff or customer user, on every node (the caller commits)."""
    user.session_generation = (user.session_generation or 0) + 1


def set_password(session: Session, user: User, password: str) -> User:
    """Set a new password: the old one stops working and every session of the user ends."""
    user.password_hash = hash_password(check_password(password))
    end_sessions(user)
    session.flush()
    return user


def set_active(session: Session, user: User, active: bool) -> User:
    """Disable (or enable again) a staff user: a disabled user cannot log in, their tokens stop working and
    every session of the user ends."""
    if user.active and not active:
        end_sessions(user)
    user.active = active
    session.flush()
    return user


def get_user(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFoundError(f"no user {username!r}", field="username")
    return user


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.username)))


def token_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def issue_token(session: Session, *, name: str, role: str, user: User | None = None,
                expires_at: datetime | None = None) -> IssuedToken:
    check_role(role)
    if not name or len(name) > 120:
        raise ValidationError("token name must be 1-120 characters", field="name")
    if user is not None and user.role != "admin" and role != user.role:
        raise ValidationError(f"a {user.role} user cannot hold a {role} token", field="role")
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    while True:
        prefix = "".join(secrets.choice(alphabet) for _ in range(8))
        if session.scalar(select(ApiToken.id).where(ApiToken.prefix == prefix)) is None:
            break
    secret = f"rst_{prefix}_{secrets.token_urlsafe(32)}"
    token = ApiToken(prefix=prefix, token_hash=token_digest(secret), name=name, role=role,
                     user_id=user.id if user else None, expires_at=expires_at)
    session.add(token)
    session.flush()
    return IssuedToken(token, secret)


def find_token(session: Session, secret: str) -> ApiToken | None:
    """The live token matching this secret, or None (unknown, revoked, expired, malformed)."""
    m = TOKEN_RE.fullmatch(secret or "")
    if not m:
        return None
    token = session.scalar(select(ApiToken).where(ApiToken.prefix == m.group(1)))
    if token is None or not hmac.compare_digest(token.token_hash, token_digest(secret)):
        return None
    if token.revoked_at is not None or (token.expires_at is not None and token.expires_at <= utcnow()):
        return None
    if token.user is not None and not token.user.active:
        return None
    return token


def list_tokens(session: Session) -> list[ApiToken]:
    return list(session.scalars(select(ApiToken).order_by(ApiToken.id)))


def revoke_token(session: Session, prefix: str) -> ApiToken:
    token = session.scalar(select(ApiToken).where(ApiToken.prefix == prefix))
    if token is None:
        raise NotFoundError(f"no token with prefix {prefix!r}", field="prefix")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
    return token


def audit(session: Session, actor: str, action: str, target: str, details: dict[str, Any] | None = None,
          note: str | None = None) -> AuditEvent:
    event = AuditEvent(actor=actor, action=action, target=target, details=details or {}, note=note)
    session.add(event)
    return event


def list_audit(session: Session, *, limit: int = 100, offset: int = 0, action: str | None = None) -> list[AuditEvent]:
    stmt = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit).offset(offset)
    if action:
        stmt = stmt.where(AuditEvent.action == action)
    return list(session.scalars(stmt))
