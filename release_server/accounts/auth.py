"""Who is calling: bearer tokens for the API (and, later, the console's session).

:func:`authenticate` resolves the request's credentials to a :class:`Principal` and
checks its role against the roles a route allows. Missing or bad credentials give 401,
a known caller with the wrong role gives 403.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from flask import g, request

from ..db import db
from ..errors import AuthenticationError, PermissionDeniedError
from . import services


@dataclass(frozen=True)
class Principal:
    kind: str  # "token" (staff API token)
    role: str
    name: str
    user_id: int | None = None
    token_id: int | None = None

    @property
    def actor(self) -> str:
        """How the audit log names this caller."""
        return self.name


def bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    return None


def authenticate(roles: Iterable[str]) -> Principal | Any:
    """Resolve the caller and check its role; ``"public"`` in ``roles`` lets anyone in.

    Staff tokens (``rst_``) resolve to a :class:`Principal`; installation tokens
    (``rsi_``) to an installation principal, accepted only where ``"installation"``
    is among the roles; customer users' tokens (``rsc_``) to a customer principal,
    accepted only where ``"customer"`` is.
    """
    roles = frozenset(roles)
    if "public" in roles:
        return None
    secret = bearer_token()
    if not secret:
        raise AuthenticationError("authentication required: send 'Authorization: Bearer <token>'",
                                  field="Authorization")
    if secret.startswith("rsi_"):
        return _authenticate_installation(secret, roles)
    if secret.startswith("rsc_"):
        return _authenticate_customer(secret, roles)
    token = services.find_token(db.session, secret)
    if token is None:
        raise AuthenticationError("the token is unknown, expired or revoked", field="Authorization")
    name = token.user.username if token.user else f"token:{token.prefix}"
    principal = Principal("token", token.role, name, token.user_id, token.id)
    if principal.role not in roles:
        raise PermissionDeniedError(f"role {principal.role!r} may not do this (allowed: {', '.join(sorted(roles))})")
    g.principal = principal
    return principal


def _authenticate_installation(secret: str, roles: frozenset[str]) -> Any:
    from ..fleet.auth import get_auth_cache
    from ..rollouts.catalog import get_cache

    def session() -> Any:
        return db.session

    _, auth_version = get_cache().versions(session)
    principal = get_auth_cache().lookup(session, secret, auth_version, connect=db.read_connection)
    if principal is None:
        raise AuthenticationError("the installation token is unknown or revoked", field="Authorization")
    if "installation" not in roles:
        raise PermissionDeniedError("installations may not do this")
    g.principal = principal
    return principal


def _authenticate_customer(secret: str, roles: frozenset[str]) -> Any:
    """A customer user's token (``rsc_``): role ``"customer"``, scoped to its customer."""
    from ..support.customers import principal_for_token

    principal = principal_for_token(db.session, secret)
    if principal is None:
        raise AuthenticationError("the customer token is unknown, expired or revoked", field="Authorization")
    if "customer" not in roles:
        raise PermissionDeniedError("customer users may not do this")
    g.principal = principal
    return principal
