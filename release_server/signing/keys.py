"""Keys: generating, writing and loading the root keys and the online keys.

Root keys are created by the key ceremony (``release-server keys init-root``) into a
folder the operator chooses, optionally encrypted with a passphrase (PKCS#8, PEM), and
are never stored in the database nor read by the running server.

Online keys (targets, snapshot, timestamp; the hash bins are signed with the targets
key) are either PEM files in the instance key folder, ``<TUF_KEY_DIR>/<role>-<keyid16>.pem``
(mode 0600), or named by a securesystemslib signer URI in ``TUF_<ROLE>_KEY_URI`` (for
example ``gcpkms:...``, ``awskms:...``, ``hsm:...`` or ``file2:/path/key.pem``). Which
key a role uses is always decided by the trusted root: the server looks for the private
half of a key the root names for that role.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (BestAvailableEncryption, Encoding, NoEncryption,
                                                          PrivateFormat, load_pem_private_key)
from securesystemslib.signer import CryptoSigner, Key, Signer, SSlibKey
from tuf.api.metadata import Root

from .errors import KeyLoadError

ONLINE_ROLES = ("targets", "snapshot", "timestamp")


def generate_signer() -> CryptoSigner:
    """A new ed25519 key pair."""
    return CryptoSigner(Ed25519PrivateKey.generate())


def private_pem(signer: CryptoSigner, passphrase: str | None = None) -> bytes:
    """The signer's private key as PKCS#8 PEM, encrypted when a passphrase is given."""
    enc = BestAvailableEncryption(passphrase.encode()) if passphrase else NoEncryption()
    return signer._private_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, enc)  # noqa: SLF001


def write_private_file(path: Path, data: bytes) -> None:
    """Write a secret file atomically with mode 0600 (never readable by others, even briefly)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".key-")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def is_encrypted(path: Path) -> bool:
    try:
        return b"ENCRYPTED PRIVATE KEY" in path.read_bytes()[:200]
    except OSError as e:
        raise KeyLoadError(f"cannot read key file {path}: {e.strerror}") from e


def load_private_file(path: Path, passphrase: str | None = None, public_key: Key | None = None) -> CryptoSigner:
    """A signer for a PEM private key file; ``public_key`` (from the root) must match it."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise KeyLoadError(f"cannot read key file {path}: {e.strerror}") from e
    try:
        priv = load_pem_private_key(data, passphrase.encode() if passphrase else None)
    except TypeError:
        raise KeyLoadError(f"{path} is encrypted: a passphrase is needed" if passphrase is None
                           else f"{path} is not encrypted but a passphrase was given") from None
    except ValueError as e:
        raise KeyLoadError(f"cannot load {path}: wrong passphrase or not a PEM private key") from e
    try:
        return CryptoSigner(priv, public_key) if public_key is not None else CryptoSigner(priv)  # type: ignore[arg-type]
    except Exception as e:  # KeyMismatchError, ValueError for unsupported types
        raise KeyLoadError(f"{path}: {e}") from e


def key_dir(config: Mapping[str, Any], instance_path: str) -> Path:
    return Path(config.get("TUF_KEY_DIR") or os.path.join(instance_path, "keys"))


def online_key_file(folder: Path, role: str, keyid: str) -> Path:
    return folder / f"{role}-{keyid[:16]}.pem"


def save_online_key(folder: Path, role: str, signer: CryptoSigner) -> Path:
    """Write an online key into the key folder (mode 0600) and return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    path = online_key_file(folder, role, signer.public_key.keyid)
    write_private_file(path, private_pem(signer))
    return path


def find_online_keys(folder: Path) -> dict[str, CryptoSigner]:
    """The online keys present in the key folder, one per role (the newest file wins)."""
    found: dict[str, CryptoSigner] = {}
    for role in ONLINE_ROLES:
        files = sorted(folder.glob(f"{role}-*.pem"), key=lambda p: p.stat().st_mtime)
        if files:
            found[role] = load_private_file(files[-1])
    return found


def ensure_online_keys(folder: Path) -> dict[str, CryptoSigner]:
    """Online keys for every role, generating the ones missing from the key folder."""
    found = find_online_keys(folder)
    for role in ONLINE_ROLES:
        if role not in found:
            signer = generate_signer()
            save_online_key(folder, role, signer)
            found[role] = signer
    return found


def role_keys(root: Root, role: str) -> list[Key]:
    return [root.keys[k] for k in root.roles[role].keyids]


def load_online_signer(config: Mapping[str, Any], instance_path: str, root: Root, role: str) -> Signer:
    """The signer for an online role, for one of the keys the root names for it.

    The newest key the root lists for the role comes first, so during an online-key
    rotation (when the root briefly lists the old and the new key) the new key signs.
    """
    return load_signer_for_keys(config, instance_path, list(reversed(role_keys(root, role))), role)


def load_signer_for_keys(config: Mapping[str, Any], instance_path: str, keys: list[Key], role: str) -> Signer:
    """A signer for the first of ``keys`` whose private half this node holds (``role`` names the
    key files and the ``TUF_<ROLE>_KEY_URI`` setting)."""
    uri = config.get(f"TUF_{role.upper()}_KEY_URI")
    if uri:
        errors = []
        for key in keys:
            try:
                return Signer.from_priv_key_uri(uri, key)
            except Exception as e:  # noqa: BLE001 - each signer library raises its own errors
                errors.append(str(e))
        raise KeyLoadError(f"{role}: the key at {uri!r} is not one the root names for {role} "
                           f"({'; '.join(errors)})", role=role)
    folder = key_dir(config, instance_path)
    for key in keys:
        path = online_key_file(folder, role, key.keyid)
        if path.exists():
            return load_private_file(path, None, key)
    wanted = {k.keyid: k for k in keys}
    for path in sorted(folder.glob("*.pem")):  # a key copied in under another name
        try:
            signer = load_private_file(path)
        except KeyLoadError:
            continue
        if signer.public_key.keyid in wanted:
            return load_private_file(path, None, wanted[signer.public_key.keyid])
    raise KeyLoadError(f"{role}: no private key in {folder} for the key(s) the root names "
                       f"({', '.join(k.keyid[:16] for k in keys)}); copy the key folder to this node "
                       f"or set TUF_{role.upper()}_KEY_URI", role=role)


def public_key_of(signer: Signer) -> SSlibKey:
    key = signer.public_key
    assert isinstance(key, SSlibKey)
    return key
