"""The publisher's side of a claimed component: build the next role version and sign it locally.

Runs on a publisher's machine (``release-server publish --sign-with``, ``release-server
sign``): no database, no server keys. The next version of the component's role is the
current one (as served, checked against the keys the server names for the claim) with
the change applied; the server accepts it only if it lists exactly what the change
leads to, so a publisher's machine and the server compute the same entries with
:mod:`.metadata`.

A key is a PEM private key file or a securesystemslib signer URI (``gcpkms:...``,
``awskms:...``, ``hsm:``, ``file2:...``); a URI names its public key by the claim's keys.
"""
from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from securesystemslib.signer import Key, Signer, SSlibKey
from tuf.api.metadata import Metadata, TargetFile, Targets

from . import keys as keys_mod
from . import metadata as md
from .errors import KeyLoadError, SigningError

DEFAULT_ROLE_DAYS = 365


def claim_keys(state: Mapping[str, Any]) -> list[Key]:
    return [SSlibKey.from_dict(k["keyid"], {x: y for x, y in k.items() if x != "keyid"}) for k in state["keys"]]


def signing_keys(state: Mapping[str, Any]) -> list[Key]:
    """The keys whose signatures the pending change needs: the new delegation's for a key change."""
    pending = state.get("pending") or {}
    targets = pending.get("targets")
    if targets:
        dele = targets["signed"]["delegations"]
        role = next(r for r in dele["roles"] if r["name"] == state["component"])
        return [SSlibKey.from_dict(k, dict(dele["keys"][k])) for k in role["keyids"]]
    return claim_keys(state)


def load_signer(spec: str, keys: Iterable[Key], passphrase: str | None = None) -> Signer:
    """A signer for a key file or signer URI; it must be one of the claim's publisher keys."""
    keys = list(keys)
    path = Path(spec)
    if "://" not in spec and not spec.startswith(("gcpkms:", "awskms:", "azurekms:", "hsm:", "file2:")) \
            and path.exists():
        signer = keys_mod.load_private_file(path, passphrase)
        if signer.public_key.keyid not in {k.keyid for k in keys}:
            raise KeyLoadError(f"{spec}: key {signer.public_key.keyid[:16]} is not a publisher key of this component")
        return signer
    errors = []
    for key in keys:
        try:
            return Signer.from_priv_key_uri(spec, key)
        except Exception as e:  # noqa: BLE001 - every signer library raises its own errors
            errors.append(str(e))
    raise KeyLoadError(f"{spec}: not a key file, nor a signer URI for one of the publisher keys "
                       f"({'; '.join(errors[:2]) or 'no keys'})")


def current_role(state: Mapping[str, Any]) -> Metadata[Targets] | None:
    """The role as served, refused unless the claim's threshold of publisher keys signed it."""
    if state.get("role") is None:
        return None
    role = Metadata.from_dict(copy.deepcopy(state["role"]))
    keys = {k.keyid: k for k in claim_keys(state)}
    good = 0
    for keyid, sig in role.signatures.items():
        if keyid in keys:
            try:
                keys[keyid].verify_signature(sig, role.signed_bytes)
                good += 1
            except Exception:  # noqa: BLE001
                continue
    if good < int(state["threshold"]):
        raise SigningError(f"the server's copy of the {state['component']} role is not signed by "
                           f"{state['threshold']} publisher key(s); refusing to build on it", code="bad_role")
    return role


def _expires(current: Metadata[Targets] | None, days: int | None, now: datetime) -> datetime:
    if days is None and current is not None and current.signed.expires - now > timedelta(days=30):
        return current.signed.expires
    return md.expiry(now, (days or DEFAULT_ROLE_DAYS) * 86400)


def next_role(state: Mapping[str, Any], targets: dict[str, TargetFile], *, days: int | None = None,
              now: datetime | None = None) -> Metadata[Targets]:
    now = now or datetime.now(timezone.utc)
    current = current_role(state)
    version = (current.signed.version if current is not None else 0) + 1
    return md.build_bin(version, _expires(current, days, now), targets.values())


def publish_role(state: Mapping[str, Any], *, component: str, version: str, filename: str, sha256: str,
                 length: int, channels: Iterable[str], critical: bool, min_from_version: str | None,
                 requires: Mapping[str, str], changelog: str, days: int | None = None) -> Metadata[Targets]:
    """The role with a new release's artifact and changelog added (unsigned)."""
    current = current_role(state)
    targets = dict(current.signed.targets) if current is not None else {}
    cl = md.changelog_bytes(changelog)
    cl_path = md.changelog_path(component, version)
    custom = md.artifact_custom(component=component, version=version, channels=channels, critical=critical,
                                yanked=False, min_from_version=min_from_version, requires=requires,
                                changelog_target=cl_path, changelog_sha256=md.sha256_hex(cl),
                                changelog_length=len(cl))
    path = md.artifact_path(component, filename)
    targets[path] = md.target_file(path, sha256, length, custom)
    targets[cl_path] = md.target_file(cl_path, md.sha256_hex(cl), len(cl),
                                      {"component": component, "version": version, "kind": "changelog"})
    return next_role(state, targets, days=days)


def change_role(state: Mapping[str, Any], *, component: str, version: str, yanked: bool | None = None,
                add_channel: str | None = None, days: int | None = None) -> Metadata[Targets]:
    """The role with one release's custom field changed (yank, unyank, promote), or renewed as is."""
    current = current_role(state)
    if current is None:
        raise SigningError(f"{component} has no signed role yet", code="bad_role")
    targets = {p: TargetFile.from_dict(t.to_dict(), p) for p, t in current.signed.targets.items()}
    found = False
    for t in targets.values():
        c = t.unrecognized_fields.get("custom", {})
        if c.get("version") == version and "kind" not in c:
            found = True
            if yanked is not None:
                c["yanked"] = yanked
            if add_channel is not None:
                c["channels"] = sorted(set(c["channels"]) | {add_channel})
    if not found and (yanked is not None or add_channel is not None):
        raise SigningError(f"{component} {version} is not in the signed role", code="bad_role")
    return next_role(state, targets, days=days)


def sign(role: Metadata[Targets], signer: Signer) -> dict[str, Any]:
    role.sign(signer, append=True)
    return role.to_dict()


def file_sha256(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def describe(role: Mapping[str, Any], previous: Mapping[str, Any] | None) -> list[str]:
    """What a signature on ``role`` vouches for, against the current role (for a person to read)."""
    now_t = role["signed"]["targets"]
    old_t = (previous or {}).get("signed", {}).get("targets", {})
    lines = [f"role version {role['signed']['version']}, expires {role['signed']['expires']}"]
    for path in sorted(set(now_t) | set(old_t)):
        a, b = old_t.get(path), now_t.get(path)
        if a == b:
            continue
        if b is None:
            lines.append(f"- removed {path}")
        elif a is None:
            lines.append(f"+ {path} sha256 {b['hashes'].get('sha256')} ({b['length']} bytes)")
        else:
            lines.append(f"~ {path}: custom {a.get('custom')} -> {b.get('custom')}")
    return lines


def verify_state(state: Mapping[str, Any], trusted_root: bytes, metadata_url: str, cache_dir: Path) -> None:
    """Check the server's account of a claimed component against TUF, from a trusted root.

    The keys, threshold and current role the server reports must be those of the top-level
    targets (signed offline) and of the snapshot a stock client would see; so a compromised
    server cannot get a publisher to sign on top of a role the publishers never signed.
    """
    from tuf.api.exceptions import DownloadError, RepositoryError
    from tuf.ngclient import Updater

    cache_dir.mkdir(parents=True, exist_ok=True)
    try:
        updater = Updater(str(cache_dir), metadata_url, None, None, bootstrap=trusted_root)
        updater.refresh()
    except (DownloadError, RepositoryError, ValueError, OSError) as e:
        raise SigningError(f"the server's TUF metadata does not verify from the trusted root: {e!r}",
                           code="bad_role") from e
    trusted = updater._trusted_set  # noqa: SLF001 - the verified top-level roles
    component = state["component"]
    dele = trusted.targets.delegations
    role = dele.roles.get(component) if dele is not None and dele.roles is not None else None
    if role is None:
        raise SigningError(f"{component} is not claimed in the signed top-level targets", code="bad_role")
    pending = state.get("pending") or {}
    if not pending.get("targets"):
        if sorted(role.keyids) != sorted(k["keyid"] for k in state["keys"]) or role.threshold != state["threshold"]:
            raise SigningError(f"the server reports other publisher keys for {component} than the signed "
                               "top-level targets", code="bad_role")
    meta = trusted.snapshot.meta.get(f"{component}.json")
    if state.get("role") is None:
        if meta is not None:
            raise SigningError(f"the server hides the signed {component} role", code="bad_role")
        return
    current = Metadata.from_dict(copy.deepcopy(state["role"]))
    try:
        trusted.targets.verify_delegate(component, current.signed_bytes, current.signatures)
    except Exception as e:  # noqa: BLE001 - UnsignedMetadataError
        raise SigningError(f"the {component} role the server reports is not signed by its publishers",
                           code="bad_role") from e
    if meta is None or meta.version != current.signed.version:
        raise SigningError(f"the {component} role the server reports is not the one its snapshot lists",
                           code="bad_role")
