"""Customer users and their API tokens.

A customer user belongs to one customer and sees only that customer's tickets. It
authenticates to the API with a token ``rsc_<prefix>_<secret>`` (only a SHA-256 of the
whole token is stored, like staff tokens); the customer portal will log the same users
in by password (:func:`authenticate_password`).
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..accounts.services import hash_password, verify_password
from ..errors import ValidationError
from ..fleet.models import Customer
from ..models_common import utcnow
from .errors import DuplicateCustomerUserError, UnknownCustomerUserError
from .models import CustomerToken, CustomerUser

TOKEN_RE = re.compile(r"rsc_([a-z0-9]{8})_([A-Za-z0-9_-]{20,})")
EMAIL_RE = re.compile(r"[^@\s<>\x00-\x1f\x7f]+@[^@\s<>\x00-\x1f\x7f]+\.[^@\s<>\x00-\x1f\x7f]+")
_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


@dataclass(frozen=True)
class CustomerPrincipal:
    """A customer user calling the API (role ``"customer"``)."""

    customer_user_id: int
    customer_id: int
    email: str
    name: str
    kind: str = "customer"
    role: str = "customer"

    @property
    def actor(self) -> str:
        return f"customer-user:{self.email}"


def check_email(email: str, field: str = "email") -> str:
    email = (email or "").strip().lower()
    if len(email) > 254 or not EMAIL_RE.fullmatch(email):
        raise ValidationError(f"{email!r} is not an e-mail address", field=field)
    return email


def create_customer_user(session: Session, customer: Customer, email: str, name: str = "",
                         password: str | None = None) -> CustomerUser:
    email = check_email(email)
    if password is not None and len(password) < 10:
        raise ValidationError("password must have at least 10 characters", field="password")
    if session.scalar(select(CustomerUser.id).where(func.lower(CustomerUser.email) == email)) is not None:
        raise DuplicateCustomerUserError(email)
    user = CustomerUser(email=email, name=name.strip(), customer_id=customer.id,
                        password_hash=hash_password(password) if password else None)
    session.add(user)
    session.flush()
    return user


def get_customer_user(session: Session, ref: int | str) -> CustomerUser:
    user = None
    if isinstance(ref, int) or str(ref).isdigit():
        user = session.get(CustomerUser, int(ref))
    if user is None:
        user = session.scalar(select(CustomerUser).where(CustomerUser.email == str(ref).strip().lower()))
    if user is None:
        raise UnknownCustomerUserError(ref)
    return user


def set_password(session: Session, user: CustomerUser, password: str) -> CustomerUser:
    """A new portal password for a customer user; every portal session of the user ends."""
    from ..accounts.services import check_password, end_sessions

    user.password_hash = hash_password(check_password(password))
    end_sessions(user)
    session.flush()
    return user


def set_active(session: Session, user: CustomerUser, active: bool) -> CustomerUser:
    """Enable or disable a customer user; disabling ends every portal session of the user."""
    from ..accounts.services import end_sessions

    if user.active and not active:
        end_sessions(user)
    user.active = active
    session.flush()
    return user


def installation_requester(session: Session, customer: Customer, requested: str | None) -> str | None:
    """Who a request filed by one of ``customer``'s installations comes from: one of its contacts only.

    Without ``requested``: the customer's contact address. With it: only the contact address
    or an active portal user of that customer, so an installation's token can never make the
    server mail an address of its choosing.
    """
    if not requested:
        return customer.contact_email or None
    email = check_email(requested, "requester_email")
    if customer.contact_email and customer.contact_email.strip().lower() == email:
        return email
    user = session.scalar(select(CustomerUser.id).where(CustomerUser.email == email,
                                                        CustomerUser.customer_id == customer.id,
                                                        CustomerUser.active.is_(True)))
    if user is None:
        raise ValidationError(f"{email!r} is not a contact of customer {customer.name!r}", field="requester_email")
    return email


def list_customer_users(session: Session, customer: Customer | None = None) -> list[CustomerUser]:
    stmt = select(CustomerUser).order_by(CustomerUser.email)
    if customer is not None:
        stmt = stmt.where(CustomerUser.customer_id == customer.id)
    return list(session.scalars(stmt))


def authenticate_password(session: Session, email: str, password: str) -> CustomerUser | None:
    """The active customer user with this e-mail and password, or None (for the portal's login)."""
    user = session.scalar(select(CustomerUser).where(CustomerUser.email == (email or "").strip().lower()))
    if user is None or not user.active or not user.password_hash:
        hash_password("timing-equaliser")
        return None
    return user if verify_password(user.password_hash, password) else None


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def issue_token(session: Session, user: CustomerUser, name: str,
                expires_at: datetime | None = None) -> tuple[CustomerToken, str]:
    """A new API token for a customer user; the secret is returned once."""
    if not name or len(name) > 120:
        raise ValidationError("token name must be 1-120 characters", field="name")
    if expires_at is not None and expires_at <= utcnow():
        raise ValidationError("expires_at is in the past", field="expires_at")
    while True:
        prefix = "".join(secrets.choice(_ALPHABET) for _ in range(8))
        if session.scalar(select(CustomerToken.id).where(CustomerToken.prefix == prefix)) is None:
            break
    secret = f"rsc_{prefix}_{secrets.token_urlsafe(32)}"
    token = CustomerToken(prefix=prefix, token_hash=_digest(secret), name=name, customer_user_id=user.id,
                          expires_at=expires_at)
    session.add(token)
    session.flush()
    return token, secret


def principal_for_token(session: Session, secret: str) -> CustomerPrincipal | None:
    """The customer principal of a live token, or None (unknown, revoked, expired, inactive user)."""
    m = TOKEN_RE.fullmatch(secret or "")
    if not m:
        return None
    token = session.scalar(select(CustomerToken).where(CustomerToken.prefix == m.group(1)))
    if token is None or not hmac.compare_digest(token.token_hash, _digest(secret)):
        return None
    if token.revoked_at is not None or (token.expires_at is not None and token.expires_at <= utcnow()):
        return None
    user = token.user
    if not user.active:
        return None
    return CustomerPrincipal(user.id, user.customer_id, user.email, user.name)


def revoke_token(session: Session, prefix: str) -> CustomerToken:
    token = session.scalar(select(CustomerToken).where(CustomerToken.prefix == prefix))
    if token is None:
        raise ValidationError(f"no customer token with prefix {prefix!r}", field="prefix")
    token.revoked_at = token.revoked_at or utcnow()
    return token
