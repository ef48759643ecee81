"""Fleet rules: customers, enrollment tokens, enrolling installations, inventory, reports.

Installations authenticate with their own token (``rsi_<prefix>_<secret>``), scoped to
that installation only. Reports are idempotent by the agent's UUID: a report sent twice
is stored and counted once. New reports are handed to the hooks registered in
``app.extensions["report_hooks"]`` (failure grouping, rollout health), each called once
per request batch as ``hook(session, installation, reports)`` in the same transaction,
so that a hook does its work set-based rather than per report.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import unicodedata
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app, has_app_context
from sqlalchemy import ColumnElement, Text, and_, cast, func, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, selectinload

from ..db import lock_row
from ..errors import AuthenticationError, ConflictError, NotFoundError, ValidationError
from ..models_common import utcnow
from ..releases.models import Component, Release
from .models import Customer, CustomerMailDomain, EnrollmentToken, InstalledComponent, Installation, UpdateReport
from .schemas import EnrollRequest, ReportIn

ENROLL_RE = re.compile(r"rse_([a-z0-9]{8})_([A-Za-z0-9_-]{20,})")
INSTALLATION_RE = re.compile(r"rsi_([a-z0-9]{8})_([A-Za-z0-9_-]{20,})")
_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


class UnknownCustomerError(NotFoundError):
    code = "unknown_customer"

    def __init__(self, ref: str) -> None:
        super().__init__(f"no customer {ref!r}", field="customer")


class DuplicateCustomerError(ConflictError):
    code = "duplicate_customer"

    def __init__(self, name: str) -> None:
        super().__init__(f"customer {name!r} already exists", field="name")


class EnrollmentRefusedError(AuthenticationError):
    code = "enrollment_refused"

    def __init__(self, reason: str) -> None:
        super().__init__(f"enrollment refused: {reason}", field="enrollment_token")


class UnknownInstallationError(NotFoundError):
    code = "unknown_installation"

    def __init__(self, ref: str) -> None:
        super().__init__(f"no installation {ref!r}", field="installation")


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _new_secret(kind: str) -> tuple[str, str]:
    prefix = "".join(secrets.choice(_ALPHABET) for _ in range(8))
    return prefix, f"{kind}_{prefix}_{secrets.token_urlsafe(32)}"


def _cfg(key: str, default):  # noqa: ANN001, ANN202
    return current_app.config.get(key, default) if has_app_context() else default


# customers

def create_customer(session: Session, name: str, contact_email: str | None = None,
                    mail_domains: Iterable[str] = ()) -> Customer:
    name = name.strip()
    if not name:
        raise ValidationError("customer name is empty", field="name")
    if any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in name):
        raise ValidationError("customer name holds a line break or a control character", field="name")
    if session.scalar(select(Customer.id).where(Customer.name == name)) is not None:
        raise DuplicateCustomerError(name)
    domains = sorted({d.strip().lower().lstrip("@") for d in mail_domains} - {""})
    customer = Customer(name=name, contact_email=contact_email, mail_domains=domains)
    session.add(customer)
    session.flush()
    session.add_all(CustomerMailDomain(domain=d, customer_id=customer.id) for d in domains)
    session.flush()
    return customer


def get_customer(session: Session, ref: str | int) -> Customer:
    """A customer by id or by exact name."""
    customer = None
    if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
        customer = session.get(Customer, int(ref))
    if customer is None and isinstance(ref, str):
        customer = session.scalar(select(Customer).where(Customer.name == ref))
    if customer is None:
        raise UnknownCustomerError(str(ref))
    return customer


def list_customers(session: Session) -> list[Customer]:
    return list(session.scalars(select(Customer).order_by(Customer.name)))


def customers_page(session: Session, page: int, per_page: int) -> tuple[list[Customer], int]:
    """One page of the customers by name, and how many there are."""
    total = session.scalar(select(func.count()).select_from(Customer)) or 0
    rows = list(session.scalars(select(Customer).order_by(Customer.name, Customer.id)
                                .offset((page - 1) * per_page).limit(per_page)))
    return rows, total


def installation_counts(session: Session, customer_ids: Iterable[int]) -> dict[int, int]:
    """How many installations each of these customers has (revoked ones too), in one query."""
    ids = list(customer_ids)
    if not ids:
        return {}
    got = dict(session.execute(select(Installation.customer_id, func.count()).where(
        Installation.customer_id.in_(ids)).group_by(Installation.customer_id)).all())
    return {cid: got.get(cid, 0) for cid in ids}


def installations_by_id(session: Session, ids: Iterable[str]) -> dict[str, Installation]:
    """The installations with these ids that exist, in one query."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    return {i.id: i for i in session.scalars(select(Installation).where(Installation.id.in_(wanted)))}


# enrollment

def create_enrollment_token(session: Session, customer: Customer, *, actor: str, max_uses: int | None = None,
                            expires_at: datetime | None = None) -> tuple[EnrollmentToken, str]:
    if max_uses is not None and max_uses < 1:
        raise ValidationError("max_uses must be at least 1", field="max_uses")
    if expires_at is not None and expires_at <= utcnow():
        raise ValidationError("expires_at is in the past", field="expires_at")
    prefix, secret = _new_secret("rse")
    token = EnrollmentToken(prefix=prefix, token_hash=_digest(secret), customer_id=customer.id, max_uses=max_uses,
                            expires_at=expires_at, created_by=actor)
    session.add(token)
    session.flush()
    return token, secret


def list_enrollment_tokens(session: Session, customer: Customer | None = None) -> list[EnrollmentToken]:
    stmt = select(EnrollmentToken).order_by(EnrollmentToken.id)
    if customer is not None:
        stmt = stmt.where(EnrollmentToken.customer_id == customer.id)
    return list(session.scalars(stmt))


def revoke_enrollment_token(session: Session, prefix: str) -> EnrollmentToken:
    token = session.scalar(select(EnrollmentToken).where(EnrollmentToken.prefix == prefix))
    if token is None:
        raise NotFoundError(f"no enrollment token {prefix!r}", field="prefix")
    token.revoked_at = token.revoked_at or utcnow()
    return token


def enroll(session: Session, req: EnrollRequest) -> tuple[Installation, str]:
    """Register a new installation with an enrollment token; returns it and its own token."""
    m = ENROLL_RE.fullmatch(req.enrollment_token)
    if not m:
        raise EnrollmentRefusedError("malformed token")
    token_id = session.scalar(select(EnrollmentToken.id).where(EnrollmentToken.prefix == m.group(1)))
    token = lock_row(session, EnrollmentToken, token_id) if token_id is not None else None
    if token is None or not hmac.compare_digest(token.token_hash, _digest(req.enrollment_token)):
        raise EnrollmentRefusedError("unknown token")
    if token.revoked_at is not None:
        raise EnrollmentRefusedError("token revoked")
    if token.expires_at is not None and token.expires_at <= utcnow():
        raise EnrollmentRefusedError("token expired")
    if token.max_uses is not None and token.uses >= token.max_uses:
        raise EnrollmentRefusedError("token used up")
    from ..releases.services import get_channel

    get_channel(session, req.channel)
    token.uses += 1
    prefix, secret = _new_secret("rsi")
    inst = Installation(
        id=str(uuid.uuid4()), customer_id=token.customer_id, name=req.name, hostname=req.hostname,
        platform=req.platform, agent_version=req.agent_version, channel=req.channel, tags=req.tags,
        maintenance_window=req.maintenance_window, token_prefix=prefix, token_hash=_digest(secret),
        last_seen_at=utcnow())
    session.add(inst)
    for comp, version in req.installed.items():
        inst.components.append(InstalledComponent(component=comp, version=version))
    session.flush()
    return inst, secret


# installations

def unknown_components(session: Session, names: list[str]) -> list[str]:
    """The names among ``names`` that are not components of the application."""
    if not names:
        return []
    known = set(session.scalars(select(Component.name).where(Component.name.in_(names))))
    return sorted(n for n in names if n not in known)


def installation_for_token(session: Session, secret: str) -> Installation | None:
    m = INSTALLATION_RE.fullmatch(secret or "")
    if not m:
        return None
    inst = session.scalar(select(Installation).where(Installation.token_prefix == m.group(1)))
    if inst is None or inst.revoked_at is not None or not hmac.compare_digest(inst.token_hash, _digest(secret)):
        return None
    return inst


def get_installation(session: Session, installation_id: str) -> Installation:
    inst = session.get(Installation, installation_id)
    if inst is None:
        raise UnknownInstallationError(installation_id)
    return inst


def revoke_installation(session: Session, installation_id: str) -> Installation:
    inst = get_installation(session, installation_id)
    inst.revoked_at = inst.revoked_at or utcnow()
    return inst


@dataclass(frozen=True)
class InstallationSettings:
    """What staff may change about an installation; None leaves a field as it is.

    ``maintenance_window`` "" clears the window.
    """

    channel: str | None = None
    tags: list[str] | None = None
    maintenance_window: str | None = None
    name: str | None = None


def parse_tags(text: str) -> list[str]:
    """Tags typed as a comma- or space-separated list, checked and sorted, each once."""
    from ..releases.schemas import check_name

    out = set()
    for raw in re.split(r"[,;\s]+", text or ""):
        if not raw:
            continue
        tag = raw.strip().lower()
        try:
            out.add(check_name(tag, "tag"))
        except ValueError as e:
            raise ValidationError(f"tag {raw!r}: {e}", field="tags") from e
    return sorted(out)


def check_window(value: str | None) -> str | None:
    """A maintenance window ('HH:MM-HH:MM', optionally after days such as 'sat-sun'), normalised; '' → None."""
    try:
        return EnrollRequest._window(value)
    except ValueError as e:
        raise ValidationError(str(e), field="maintenance_window") from e


def update_installation(session: Session, inst: Installation, settings: InstallationSettings) -> dict:
    """Change an installation's channel, tags, window or name; returns what changed (for the audit log).

    The channel must exist. The installation's next check answers from the new settings
    (its credential cache entry is bumped).
    """
    from ..releases.schemas import check_name
    from ..releases.services import get_channel
    from ..rollouts.catalog import bump_auth

    changes: dict = {}
    if settings.channel is not None and settings.channel != inst.channel:
        try:
            check_name(settings.channel, "channel")
        except ValueError as e:
            raise ValidationError(str(e), field="channel") from e
        get_channel(session, settings.channel)
        changes["channel"] = settings.channel
    if settings.tags is not None:
        tags = parse_tags(",".join(settings.tags))
        if tags != sorted(inst.tags or []):
            changes["tags"] = tags
    if settings.maintenance_window is not None:
        window = check_window(settings.maintenance_window)
        if window != inst.maintenance_window:
            changes["maintenance_window"] = window
    if settings.name is not None:
        name = settings.name.strip()
        if not name or len(name) > 200:
            raise ValidationError("a name is 1 to 200 characters", field="name")
        if name != inst.name:
            changes["name"] = name
    for key, value in changes.items():
        setattr(inst, key, value)
    if changes:
        bump_auth(session, inst.id)
    return changes


def health_of(inst: Installation, now: datetime | None = None) -> str:
    """up_to_date | updating | failing, or stale when not seen for STALE_AFTER_HOURS."""
    now = now or utcnow()
    stale_after = timedelta(hours=_cfg("STALE_AFTER_HOURS", 48))
    if inst.last_seen_at is None or now - inst.last_seen_at > stale_after:
        return "stale"
    return inst.state


def list_installations(session: Session, *, customer: str | None = None, health: str | None = None,
                       component: str | None = None, version: str | None = None, tag: str | None = None,
                       page: int = 1, per_page: int = 50) -> tuple[list[Installation], int]:
    """One page of the installations that pass the filters (by name), and how many pass.

    Every filter is a condition of the query, so the database counts and pages: the cost is
    one count and one page of rows (with their components) whatever the fleet's size. The
    health filter is :func:`health_of` in SQL: stale when not seen within
    ``STALE_AFTER_HOURS``, else the state the installation reported.
    """
    conditions = []
    if customer:
        conditions.append(Installation.customer_id == get_customer(session, customer).id)
    if component:
        sub = select(InstalledComponent.installation_id).where(InstalledComponent.component == component)
        if version:  # a version or a prefix of whole parts: "2.4" matches 2.4, 2.4.0, 2.4.1 (not 2.40)
            sub = sub.where(or_(InstalledComponent.version == version,
                                InstalledComponent.version.like(_like_escape(version) + ".%", escape="\\")))
        conditions.append(Installation.id.in_(sub))
    if tag:
        conditions.append(has_tag(tag))
    if health:
        cutoff = utcnow() - timedelta(hours=_cfg("STALE_AFTER_HOURS", 48))
        if health == "stale":
            conditions.append(or_(Installation.last_seen_at.is_(None), Installation.last_seen_at < cutoff))
        else:
            conditions.append(and_(Installation.last_seen_at >= cutoff, Installation.state == health))
    total = session.scalar(select(func.count()).select_from(Installation).where(*conditions)) or 0
    rows = list(session.scalars(
        select(Installation).where(*conditions).order_by(Installation.name, Installation.id)
        .offset((page - 1) * per_page).limit(per_page).options(selectinload(Installation.components))))
    return rows, total


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def has_tag(tag: str) -> ColumnElement[bool]:
    """The installations whose tags include ``tag`` (a condition of a query, on SQLite and PostgreSQL alike).

    Tags are stored as a JSON list of names that :func:`parse_tags` allows (no quotes), so a
    tag is in the list exactly when its JSON string, quotes and all, is in the stored text.
    """
    needle = json.dumps(tag)
    return cast(Installation.tags, Text).like(f"%{_like_escape(needle)}%", escape="\\")


def apply_inventory(session: Session, inst: Installation, installed: dict[str, str],
                    agent_version: str | None = None) -> bool:
    """Record what the installation says it runs; writes only what changed. Returns True if anything did."""
    changed = False
    current = {c.component: c for c in inst.components}
    for comp, version in installed.items():
        row = current.get(comp)
        if row is None:
            inst.components.append(InstalledComponent(component=comp, version=version))
            changed = True
        elif row.version != version:
            row.version = version
            row.updated_at = utcnow()
            changed = True
    if agent_version and inst.agent_version != agent_version:
        inst.agent_version = agent_version
        changed = True
    return changed


# reports

def _report_hooks() -> list:
    if not has_app_context():
        return []
    return current_app.extensions.setdefault("report_hooks", [])


def store_reports(session: Session, inst: Installation, reports: list[ReportIn]) -> tuple[list[str], list[str]]:
    """Store new reports (idempotent by id); returns (accepted ids, duplicate ids).

    Set-based, whatever the batch size: one look-up of the releases named, one
    ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` of the reports (a report stored
    before, or by a concurrent request, comes back as a duplicate), then the installation's
    state and inventory, and the hooks once for the whole batch.
    """
    ids = [str(uuid.UUID(r.id)) for r in reports]
    unique: dict[str, ReportIn] = {}
    for rid, r in zip(ids, reports):
        if r.outcome == "rolled_back" and r.details.get("kind") == "operator_rollback":
            r = r.model_copy(update={"outcome": "operator_rollback"})  # as agents before the outcome existed said it
        unique.setdefault(rid, r)
    release_ids: dict[tuple[str, str], int] = {}
    wanted = {(r.component, r.to_version) for r in unique.values()}
    if wanted:
        for name, version, rel_id in session.execute(
                select(Component.name, Release.version, Release.id).join(Release, Release.component_id == Component.id)
                .where(Component.name.in_({c for c, _ in wanted}), Release.version.in_({v for _, v in wanted}))):
            release_ids[(name, version)] = rel_id
    now = utcnow()
    rows = [dict(id=rid, installation_id=inst.id, component=r.component, from_version=r.from_version,
                 to_version=r.to_version, release_id=release_ids.get((r.component, r.to_version)),
                 outcome=r.outcome, stage=r.stage, error_code=r.error_code, error_message=r.error_message,
                 duration_seconds=r.duration_seconds, log_tail=r.log_tail[-65536:], details=r.details,
                 started_at=r.started_at, received_at=now, bytes_downloaded=r.bytes_downloaded,
                 bytes_full=r.bytes_full)
            for rid, r in unique.items()]
    session.flush()
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    table = UpdateReport.__table__
    # executemany form: compiled once and cached, sent as one multi-row INSERT ("insertmanyvalues")
    rows.sort(key=lambda row: row["id"])  # one lock order for concurrent batches that overlap
    stored = set(session.scalars(insert(table).on_conflict_do_nothing(index_elements=["id"])
                                 .returning(table.c.id), rows)) if rows else set()
    accepted = [rid for rid in unique if rid in stored]
    # a report id sent twice in one batch: the second copy is a duplicate even if the first was new
    seen: set[str] = set()
    duplicates = []
    for rid in ids:
        if rid in stored and rid not in seen:
            seen.add(rid)
        else:
            duplicates.append(rid)
    by_id = {row["id"]: row for row in rows}
    new = [StoredReport(**by_id[rid]) for rid in unique if rid in stored]  # in the order sent
    for report in new:  # in the order sent: the last word on a component wins
        apply_report(session, inst, report)
    if new:
        for hook in _report_hooks():
            hook(session, inst, new)
    return accepted, duplicates


@dataclass(frozen=True)
class StoredReport:
    """A report just stored, as the report hooks see it (the row's values, without an ORM object)."""

    id: str
    installation_id: str
    component: str
    from_version: str | None
    to_version: str
    release_id: int | None
    outcome: str
    stage: str | None
    error_code: str | None
    error_message: str | None
    duration_seconds: float | None
    log_tail: str
    details: dict
    started_at: datetime | None
    received_at: datetime
    bytes_downloaded: int | None = None
    bytes_full: int | None = None


def apply_report(session: Session, inst: Installation, r: StoredReport) -> None:
    """What one stored report says about the installation's state and inventory."""
    if r.outcome == "success":
        apply_inventory(session, inst, {r.component: r.to_version})
        inst.state = "up_to_date"
    elif r.outcome == "failed":
        inst.state = "failing"
    elif r.outcome == "operator_rollback":
        # an operator went back on purpose: from = the release left, to = the one now running
        apply_inventory(session, inst, {r.component: r.to_version})
    elif r.outcome == "rolled_back" and r.from_version:
        apply_inventory(session, inst, {r.component: r.from_version})


def list_reports(session: Session, *, installation_id: str | None = None, component: str | None = None,
                 outcome: str | None = None, limit: int = 100) -> list[UpdateReport]:
    stmt = select(UpdateReport).order_by(UpdateReport.received_at.desc()).limit(limit)
    if installation_id:
        stmt = stmt.where(UpdateReport.installation_id == installation_id)
    if component:
        stmt = stmt.where(UpdateReport.component == component)
    if outcome:
        stmt = stmt.where(UpdateReport.outcome == outcome)
    return list(session.scalars(stmt))


def set_customer_defaults(session: Session, customer: Customer, *, locale: str | None,
                          timezone: str | None) -> Customer:
    """The language and time zone a customer's contacts get unless they chose their own (None: the server's)."""
    import zoneinfo

    from ..messages import LANGUAGES

    if locale is not None and locale not in LANGUAGES:
        raise ValidationError(f"language must be one of {', '.join(LANGUAGES)}", field="locale")
    if timezone is not None and timezone not in zoneinfo.available_timezones():
        raise ValidationError(f"{timezone!r} is not a time zone", field="timezone")
    customer.locale, customer.timezone = locale, timezone
    session.flush()
    return customer
