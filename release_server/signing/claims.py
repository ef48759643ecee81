"""Claimed components: roles signed by publisher keys the server never holds.

A component is *claimed* by ``release-server tuf claim`` (run with the root keys): from
then on the top-level ``targets`` role is signed offline with the root keys and
delegates the component's paths (``<component>/*``, ``<component>/*/*``) to a
terminating role named for the component, with the publishers' public keys and a
threshold; every other path goes to the online role ``unclaimed`` and its hash bins
(PEP 480). The first claim moves the repository to this layout with one root rotation
(the top-level targets role is then named by the root keys), which installed clients
follow like any root rotation.

The server cannot sign a claimed role. Every change of one (publish, yank, unyank,
promote, a renewal of its expiry, a change of its keys) is a *proposal*: the next
version of the role, built and signed on the publishers' machines. The server checks
that the proposal lists exactly the targets the change leads to (the same entries the
server would have signed) and that every signature on it is a valid signature of one of
the delegation's keys; it then adds only snapshot and timestamp. Below the threshold the
proposal waits in ``tuf_pending`` ("pending signatures", at most one per component) and
further signatures are added with ``release-server sign``; a release waiting there is
never offered. So whoever holds every online key can still not make a client accept
bytes no publisher signed: the delegation is signed offline, and the role by the
publishers.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from securesystemslib.signer import Key, Signature, Signer, SSlibKey
from sqlalchemy import select
from sqlalchemy.orm import Session
from tuf.api.metadata import Metadata, Targets

from ..errors import ConflictError, NotFoundError, ValidationError
from ..releases import services as releases
from ..releases.models import Release
from . import metadata as md
from .errors import SigningError
from .models import TufClaim, TufPending, TufRole, TufTarget
from .services import _Change, _custom_overrides, _sign_root, _store_root, _next_root, utcnow

ACTIONS = ("publish", "yank", "unyank", "promote", "renew", "keys", "claim")
#: the longest lifetime a publisher may give its role
MAX_ROLE_DAYS = 3 * 365


class ClaimError(SigningError):
    code = "claim_error"


class NotClaimedError(ClaimError, NotFoundError):
    code = "not_claimed"

    def __init__(self, component: str) -> None:
        super().__init__(f"component {component!r} is not claimed", field="component")
        self.component = component


class PendingChangeError(ClaimError, ConflictError):
    code = "signatures_pending"

    def __init__(self, component: str, action: str) -> None:
        super().__init__(f"{component}: a {action} is waiting for publisher signatures; sign it "
                         f"('release-server sign') or discard it first", field="component")
        self.component, self.action = component, action


class BadProposalError(ClaimError, ValidationError):
    """A proposed role does not match the change, or carries a bad signature."""

    code = "bad_role"


# ---------------------------------------------------------------- reading


def is_claimed(session: Session, component: str) -> bool:
    return session.get(TufClaim, component) is not None


def get_claim(session: Session, component: str) -> TufClaim:
    claim = session.get(TufClaim, component)
    if claim is None:
        raise NotClaimedError(component)
    return claim


def claim_keys(claim: TufClaim) -> list[Key]:
    return [SSlibKey.from_dict(k, dict(v)) for k, v in sorted(claim.keys.items())]


def current_role(session: Session, component: str) -> Metadata[Targets] | None:
    """The component's role as served (None before its first signed version)."""
    from ..storage import get_storage

    row = session.get(TufRole, component)
    if row is None:
        return None
    return Metadata[Targets].from_bytes(get_storage().read(md.metadata_key(component, row.version)))


def pending_of(session: Session, component: str) -> TufPending | None:
    return session.get(TufPending, component)


@dataclass(frozen=True)
class SignatureStatus:
    """Who signed a proposal and whose signatures are still awaited."""

    threshold: int
    signed: list[str]
    awaited: list[str]

    @property
    def met(self) -> bool:
        return len(self.signed) >= self.threshold


def _delegator(session: Session, pending: TufPending | None) -> Metadata[Targets]:
    from ..storage import get_storage

    if pending is not None and pending.targets_bytes:
        return Metadata[Targets].from_bytes(pending.targets_bytes)
    version = session.get(TufRole, "targets").version
    return Metadata[Targets].from_bytes(get_storage().read(md.metadata_key("targets", version)))


def signature_status(delegator: Metadata[Targets], component: str, proposal: Metadata[Targets]) -> SignatureStatus:
    result = delegator.signed.get_verification_result(component, proposal.signed_bytes, proposal.signatures)
    return SignatureStatus(result.threshold, sorted(result.signed), sorted(result.unsigned))


def pending_status(session: Session, pending: TufPending) -> SignatureStatus:
    return signature_status(_delegator(session, pending), pending.component, _parse_role(pending.role_json))


def publisher_state(session: Session, component: str) -> dict[str, Any]:
    """What a publisher's machine needs: the role as served, the keys, the threshold, the pending change."""
    claim = get_claim(session, component)
    current = current_role(session, component)
    pending = pending_of(session, component)
    out: dict[str, Any] = {"component": component, "threshold": claim.threshold,
                           "keys": [{"keyid": k, **v} for k, v in sorted(claim.keys.items())],
                           "role": current.to_dict() if current is not None else None,
                           "role_version": current.signed.version if current is not None else 0, "pending": None}
    if pending is not None:
        st = pending_status(session, pending)
        out["pending"] = {"action": pending.action, "params": pending.params,
                          "version": pending.release.version if pending.release is not None else None,
                          "role": json.loads(pending.role_json), "threshold": st.threshold, "signed": st.signed,
                          "awaited": st.awaited, "created_by": pending.created_by,
                          "created_at": pending.created_at.isoformat(), "keys_change": bool(pending.targets_bytes)}
        if pending.targets_bytes:
            out["pending"]["targets"] = json.loads(pending.targets_bytes)
    return out


# ---------------------------------------------------------------- expected content


def expected_targets(session: Session, component: str, *, release: Release | None = None,
                     overrides: Mapping[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Every target the component's role must list after a change, as signed dicts.

    ``overrides`` (``yanked``, ``channels``) apply to ``release``'s artifact entry, so a
    proposal can be checked before the change is made.
    """
    rows = session.scalars(select(TufTarget).where(TufTarget.role == component)
                           .execution_options(populate_existing=True)).unique()
    out = {}
    for row in rows:
        if row.release.signatures_pending and (release is None or row.release_id != release.id):
            continue  # another release's unsigned proposal
        ov = overrides if release is not None and row.release_id == release.id else None
        out[row.path] = _custom_overrides(row, ov).to_dict()
    return out


def proposal_template(session: Session, component: str, *, release: Release | None = None,
                      overrides: Mapping[str, Any] | None = None, expires: datetime | None = None,
                      now: datetime | None = None) -> Metadata[Targets]:
    """The unsigned next version of a component's role for a change (what publishers sign)."""
    row = session.get(TufRole, component)
    version = (row.version if row is not None else 0) + 1
    now = now or utcnow()
    if expires is None:
        cur = current_role(session, component)
        expires = cur.signed.expires if cur is not None and cur.signed.expires > now else \
            md.expiry(now, 365 * 86400)
    targets = {p: md.TargetFile.from_dict(dict(d), p)
               for p, d in expected_targets(session, component, release=release, overrides=overrides).items()}
    return md.build_bin(version, expires, targets.values())


def _parse_role(data: str | bytes | Mapping[str, Any]) -> Metadata[Targets]:
    try:
        if isinstance(data, Mapping):
            meta = Metadata.from_dict(json.loads(json.dumps(data)))
        else:
            meta = Metadata.from_bytes(data.encode() if isinstance(data, str) else data)
    except Exception as e:  # noqa: BLE001 - DeserializationError, ValueError, KeyError, TypeError ...
        raise BadProposalError(f"not a TUF targets metadata document: {e}", field="tuf_role") from e
    if not isinstance(meta.signed, Targets):
        raise BadProposalError("not a targets role", field="tuf_role")
    return meta


def _check_content(session: Session, component: str, proposal: Metadata[Targets], *, release: Release | None,
                   overrides: Mapping[str, Any] | None, same_targets_as: Metadata[Targets] | None = None) -> None:
    row = session.get(TufRole, component)
    want_version = (row.version if row is not None else 0) + 1
    signed = proposal.signed
    if signed.version != want_version:
        raise BadProposalError(f"the role's version must be {want_version}, got {signed.version} (build it on "
                               "the current version)", field="tuf_role.version")
    now = utcnow()
    if signed.expires <= now:
        raise BadProposalError("the role's expiry date is in the past", field="tuf_role.expires")
    if (signed.expires - now).days > MAX_ROLE_DAYS:
        raise BadProposalError(f"the role may expire at most {MAX_ROLE_DAYS} days ahead", field="tuf_role.expires")
    if signed.delegations is not None:
        raise BadProposalError("a claimed component's role delegates nothing", field="tuf_role.delegations")
    got = {p: t.to_dict() for p, t in signed.targets.items()}
    want = expected_targets(session, component, release=release, overrides=overrides)
    if got != want:
        extra = sorted(set(got) - set(want))
        missing = sorted(set(want) - set(got))
        changed = sorted(p for p in set(got) & set(want) if got[p] != want[p])
        detail = "; ".join(f"{what}: {', '.join(paths[:5])}" for what, paths in
                           (("unexpected", extra), ("missing", missing), ("different", changed)) if paths)
        raise BadProposalError(f"the role does not list the targets this change leads to ({detail})",
                               field="tuf_role.targets")


def _check_signatures(delegator: Metadata[Targets], component: str, proposal: Metadata[Targets]) -> SignatureStatus:
    """Every signature must be a valid one by a key of the delegation; returns who signed."""
    dele = delegator.signed.delegations
    assert dele is not None and dele.roles is not None
    role = dele.roles.get(component)
    if role is None:
        raise NotClaimedError(component)
    for keyid, sig in proposal.signatures.items():
        if keyid not in role.keyids:
            raise BadProposalError(f"key {keyid[:16]} is not a publisher key of {component}",
                                   field="tuf_role.signatures")
        try:
            dele.keys[keyid].verify_signature(sig, proposal.signed_bytes)
        except Exception as e:  # noqa: BLE001 - UnverifiedSignatureError and friends
            raise BadProposalError(f"the signature of key {keyid[:16]} does not verify", field="tuf_role.signatures") \
                from e
    return signature_status(delegator, component, proposal)


# ---------------------------------------------------------------- proposals


@dataclass
class Outcome:
    """What a proposal or a signature did: applied at once, or waiting for more signatures."""

    component: str
    action: str
    applied: bool
    status: SignatureStatus
    release: Release | None = None
    role_version: int = 0
    warnings: list[str] = field(default_factory=list)


def submit(session: Session, component: str, action: str, role: Mapping[str, Any] | str | bytes, *, actor: str,
           release: Release | None = None, params: Mapping[str, Any] | None = None) -> Outcome:
    """Take a publisher-signed proposal for a change of a claimed component (the caller commits).

    ``publish``: the release was just created (its targets recorded, marked pending);
    ``yank``/``unyank``/``promote``: nothing has changed yet, ``params`` says how;
    ``renew``: the same targets with a new expiry.
    """
    if action not in ACTIONS:
        raise ValidationError(f"unknown action {action!r}", field="action")
    get_claim(session, component)
    existing = pending_of(session, component)
    if existing is not None:
        raise PendingChangeError(component, existing.action)
    params = dict(params or {})
    proposal = _parse_role(role)
    overrides = _overrides(release, action, params)
    _check_content(session, component, proposal, release=release, overrides=overrides)
    status = _check_signatures(_delegator(session, None), component, proposal)
    pending = TufPending(component=component, action=action, release_id=release.id if release else None,
                         params=params, role_json=md.to_bytes(proposal).decode(), created_by=actor)
    if status.met:
        return _apply(session, pending, proposal, status)
    session.add(pending)
    session.flush()
    return Outcome(component, action, False, status, release, proposal.signed.version)


def _overrides(release: Release | None, action: str, params: Mapping[str, Any]) -> dict[str, Any] | None:
    if release is None:
        return None
    if action == "yank":
        return {"yanked": True}
    if action == "unyank":
        return {"yanked": False}
    if action == "promote":
        return {"channels": sorted(set(release.channel_names) | {str(params.get("channel"))})}
    return None


def add_signatures(session: Session, component: str, signatures: Iterable[Mapping[str, Any]], *,
                   actor: str) -> Outcome:
    """Add publisher signatures to the pending proposal; applies it once the threshold is met."""
    pending = pending_of(session, component)
    if pending is None:
        get_claim(session, component)
        raise ClaimError(f"{component}: nothing is waiting for signatures", field="component", code="not_pending",
                         status=404)
    proposal = _parse_role(pending.role_json)
    for i, item in enumerate(signatures):
        try:
            sig = Signature.from_dict(dict(item))
        except Exception as e:  # noqa: BLE001
            raise BadProposalError(f"signature {i}: expected keyid and sig", field=f"signatures.{i}") from e
        proposal.signatures[sig.keyid] = sig
    delegator = _delegator(session, pending)
    status = _check_signatures(delegator, component, proposal)
    pending.role_json = md.to_bytes(proposal).decode()
    if status.met:
        session.delete(pending)
        session.flush()
        return _apply(session, pending, proposal, status)
    session.flush()
    return Outcome(component, pending.action, False, status, pending.release, proposal.signed.version)


def discard(session: Session, component: str) -> TufPending:
    """Drop the pending proposal (a release waiting for it is deleted with its targets)."""
    pending = pending_of(session, component)
    if pending is None:
        raise ClaimError(f"{component}: nothing is waiting for signatures", field="component", code="not_pending",
                         status=404)
    session.delete(pending)
    if pending.action == "publish" and pending.release is not None and pending.release.signatures_pending:
        rel = pending.release
        for row in session.scalars(select(TufTarget).where(TufTarget.release_id == rel.id)):
            session.delete(row)
        session.flush()
        releases.delete_unsigned_release(session, rel)
    session.flush()
    return pending


def _apply(session: Session, pending: TufPending, proposal: Metadata[Targets], status: SignatureStatus) -> Outcome:
    """The threshold is met: make the change, store the role, then snapshot and timestamp."""
    change = _Change(session)
    release = pending.release if pending.release is not None else (
        session.get(Release, pending.release_id) if pending.release_id else None)
    params = pending.params or {}
    if pending.action == "claim":  # the first version of a just-claimed role: its releases are offered again
        for rel in session.scalars(select(Release).join(Release.component)
                                   .where(Release.signatures_pending.is_(True))):
            if rel.component.name == pending.component:
                rel.signatures_pending = False
                releases.notify(session, rel, "signed")
    elif pending.action == "publish" and release is not None:
        release.signatures_pending = False
        session.flush()
        releases.notify(session, release, "signed")
    elif pending.action == "yank" and release is not None:
        releases.yank(session, release, str(params.get("reason") or "yanked"))
    elif pending.action == "unyank" and release is not None:
        releases.unyank(session, release)
    elif pending.action == "promote" and release is not None:
        releases.promote(session, release, str(params.get("channel")))
    if pending.targets_bytes:  # a key change: the offline-signed delegation goes out with the role
        targets = Metadata[Targets].from_bytes(pending.targets_bytes)
        if change.roles["targets"].version >= targets.signed.version:
            raise ClaimError("the top-level targets role changed after this key change was signed; discard it "
                             "and run 'tuf claim-keys' again", field="component", code="stale_key_change",
                             status=409)
        change.roles["targets"].version = targets.signed.version
        change.roles["targets"].expires = targets.signed.expires
        change.write_signed("targets", targets)
        claim = session.get(TufClaim, pending.component)
        role = targets.signed.delegations.roles[pending.component]
        claim.keys = {k: targets.signed.delegations.keys[k].to_dict() for k in role.keyids}
        claim.threshold = role.threshold
    row = change.roles.get(pending.component)
    if row is None:
        row = TufRole(name=pending.component, version=0, expires=proposal.signed.expires)
        session.add(row)
        change.roles[pending.component] = row
    row.version, row.expires = proposal.signed.version, proposal.signed.expires
    change.write_signed(pending.component, proposal)
    change.finish()
    return Outcome(pending.component, pending.action, True, status, release, proposal.signed.version)


# ---------------------------------------------------------------- claiming (offline keys)


def parse_public_key(pem: bytes) -> SSlibKey:
    """A publisher's public key from a PEM file (ed25519, ECDSA or RSA)."""
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        return SSlibKey.from_crypto(load_pem_public_key(pem))
    except Exception as e:  # noqa: BLE001 - ValueError, UnsupportedAlgorithmError
        raise ClaimError(f"not a PEM public key: {e}", field="public_key", code="invalid") from e


def _check_keys(keys: list[Key], threshold: int) -> None:
    ids = [k.keyid for k in keys]
    if len(set(ids)) != len(ids):
        raise ClaimError("the same public key was given twice", field="public_key", code="invalid")
    if not keys or threshold < 1 or threshold > len(keys):
        raise ClaimError(f"threshold {threshold} is impossible with {len(keys)} key(s)", field="threshold",
                         code="invalid")


def _migrate(change: _Change, root_signers: list[Signer]) -> int:
    """Move to the claimed layout: root N+1 names the root keys for targets (the bins keep their key)."""
    bins_keys = change.bins_keys()
    old = change.root
    new = _next_root(change, old)
    for keyid in list(new.signed.roles["targets"].keyids):
        new.signed.revoke_key(keyid, "targets")
    for keyid in old.signed.roles["root"].keyids:
        new.signed.add_key(old.signed.keys[keyid], "targets")
    new.signed.roles["targets"].threshold = old.signed.roles["root"].threshold
    _sign_root(new, old, root_signers)
    _store_root(change, new)
    row = TufRole(name=md.UNCLAIMED, version=0, expires=datetime(1970, 1, 1, tzinfo=timezone.utc))
    change.session.add(row)
    change.roles[md.UNCLAIMED] = row
    change.bins_keys_override = bins_keys
    return new.signed.version


@dataclass(frozen=True)
class ClaimResult:
    component: str
    root_version: int | None  # the root that moved the repository to the claimed layout, if this claim did
    targets_version: int
    pending_releases: int


def claim(session: Session, component: str, keys: list[Key], threshold: int, *, root_signers: list[Signer],
          actor: str, now: datetime | None = None) -> ClaimResult:
    """Claim a component for publisher keys (the caller commits).

    Releases it already has become "pending signatures": their targets move to the
    component's role, whose first version the publishers sign with ``release-server
    sign``; until then they are not offered.
    """
    comp = releases.get_component(session, component)
    if comp.name in md.RESERVED_ROLES or comp.name.startswith(md.BINS_PREFIX + "-"):
        raise ClaimError(f"component {comp.name!r} has a name reserved for a TUF role", field="component",
                         code="invalid")
    _check_keys(keys, threshold)
    change = _Change(session, now=now, offline_signers=root_signers)
    if comp.name in change.claims:
        raise ClaimError(f"component {comp.name!r} is already claimed; change its keys with 'tuf claim-keys'",
                         field="component", code="conflict", status=409)
    root_version = None if change.claimed_layout else _migrate(change, root_signers)
    claim_row = TufClaim(component=comp.name, keys={k.keyid: k.to_dict() for k in keys}, threshold=threshold)
    session.add(claim_row)
    session.flush()
    change.claims[comp.name] = claim_row
    rows = list(session.scalars(select(TufTarget).where(TufTarget.path.like(f"{comp.name}/%"))))
    bins = {r.role for r in rows}
    released = {r.release_id for r in rows}
    for r in rows:
        r.role = comp.name
    pending_count = 0
    for rel in session.scalars(select(Release).where(Release.id.in_(released))):
        rel.signatures_pending = True
        pending_count += 1
    session.flush()
    change.resign_bins(bins)
    if root_version is not None:
        change.resign_unclaimed()
    targets = change.offline_targets()
    change.write_signed("targets", targets)
    change.finish()
    if pending_count:
        from ..rollouts.catalog import bump_catalog

        bump_catalog(session)
        session.add(TufPending(component=comp.name, action="claim", release_id=None, params={},
                               role_json=md.to_bytes(proposal_template_all(session, comp.name)).decode(),
                               created_by=actor))
        session.flush()
    return ClaimResult(comp.name, root_version, targets.signed.version, pending_count)


def proposal_template_all(session: Session, component: str) -> Metadata[Targets]:
    """The first version of a just-claimed role: every target its releases already had."""
    row = session.get(TufRole, component)
    version = (row.version if row is not None else 0) + 1
    rows = session.scalars(select(TufTarget).where(TufTarget.role == component)).unique()
    return md.build_bin(version, md.expiry(utcnow(), 365 * 86400), [_custom_overrides(r, None) for r in rows])


# ---------------------------------------------------------------- key lifecycle (offline keys)


@dataclass(frozen=True)
class KeyChangeResult:
    component: str
    targets_version: int
    applied: bool  # False: the publishers re-sign the role under the new keys first
    threshold: int
    keyids: list[str]


def change_keys(session: Session, component: str, *, add: Iterable[Key] = (), remove: Iterable[str] = (),
                threshold: int | None = None, root_signers: list[Signer], actor: str,
                now: datetime | None = None) -> KeyChangeResult:
    """Add, remove or rotate (add and remove) a claimed component's publisher keys, or change its threshold.

    The new delegation is signed here with the root keys. If the role as served already
    meets it (say a key was added), it goes out at once. Otherwise the publishers first
    re-sign the role's next version (same targets) under the new keys with ``release-
    server sign``; the new delegation and that role are then published together, so
    clients verify the component at every moment. A removed key's signatures count for
    nothing from then on.
    """
    claim_row = get_claim(session, component)
    if pending_of(session, component) is not None:
        raise PendingChangeError(component, pending_of(session, component).action)
    keys = {k.keyid: k for k in claim_keys(claim_row)}
    remove = list(remove)
    for keyid in remove:
        matches = [k for k in keys if k.startswith(keyid)] if len(keyid) >= 8 else []
        if len(matches) != 1:
            raise ClaimError(f"{keyid!r} names none (or more than one) of {component}'s publisher keys",
                             field="remove_key", code="invalid")
        del keys[matches[0]]
    for key in add:
        if key.keyid in keys:
            raise ClaimError(f"key {key.keyid[:16]} is already a publisher key of {component}", field="add_key",
                             code="invalid")
        keys[key.keyid] = key
    new_threshold = claim_row.threshold if threshold is None else threshold
    _check_keys(list(keys.values()), new_threshold)
    change = _Change(session, now=now, offline_signers=root_signers)
    proposed = TufClaim(component=component, keys={k: v.to_dict() for k, v in keys.items()},
                        threshold=new_threshold)
    specs = [c for n, c in change.claims.items() if n != component] + [proposed]
    row = change.roles["targets"]
    old_version, old_expires = row.version, row.expires
    targets = change.offline_targets(specs)
    current = current_role(session, component)
    ok = current is None or targets.signed.get_verification_result(component, current.signed_bytes,
                                                                   current.signatures).verified
    if ok:
        change.write_signed("targets", targets)
        claim_row.keys, claim_row.threshold = proposed.keys, proposed.threshold
        change.finish()
    else:
        row.version, row.expires = old_version, old_expires
        assert current is not None
        role = md.build_bin(current.signed.version + 1, current.signed.expires
                            if current.signed.expires > change.now else md.expiry(change.now, 365 * 86400),
                            current.signed.targets.values())
        session.add(TufPending(component=component, action="keys", release_id=None,
                               params={"threshold": new_threshold, "keyids": sorted(keys)},
                               role_json=md.to_bytes(role).decode(), targets_bytes=md.to_bytes(targets),
                               created_by=actor))
    session.flush()
    return KeyChangeResult(component, targets.signed.version, ok, new_threshold, sorted(keys))


def renew_targets(session: Session, *, root_signers: list[Signer], now: datetime | None = None) -> int:
    """Re-sign the offline top-level targets role with a new expiry (root keys)."""
    change = _Change(session, now=now, offline_signers=root_signers)
    if not change.claimed_layout:
        raise ClaimError("no component is claimed: the top-level targets role is online and renewed by the server",
                         code="invalid")
    change.resign_offline_targets()
    change.finish()
    return change.roles["targets"].version
