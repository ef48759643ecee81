"""The key ceremony: create the root keys and sign root version 1.

Run offline by the people who hold the root keys. The private root keys are written to
a folder the operator names (one PEM file per key, mode 0600, PKCS#8, encrypted when a
passphrase is given); root v1 (``1.root.json``) is written beside them. The server
never sees the private root keys: it is given ``1.root.json`` by ``release-server tuf
bootstrap``.

Root v1 names the online keys (targets, snapshot, timestamp). On the server machine
they are taken from (or created in) the instance key folder; on an offline machine
they come from a public-key file written on the server with
``release-server keys export-online``.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from securesystemslib.signer import CryptoSigner, Key, SSlibKey
from sqlalchemy.orm import Session
from tuf.api.metadata import Metadata, Root

from . import keys as keys_mod
from . import metadata as md
from .errors import KeyLoadError, SigningError

ROOT_FILE = "1.root.json"


@dataclass(frozen=True)
class CeremonyResult:
    root: Metadata[Root]
    root_file: Path
    key_files: list[Path]


def root_key_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("root-key-*.pem"))


def init_root(out_dir: Path, *, online: Mapping[str, Key], now: datetime, expires_seconds: int, n_keys: int = 3,
              threshold: int = 2, passphrase: str | None = None) -> CeremonyResult:
    """Create ``n_keys`` root keys (threshold ``threshold``) in ``out_dir`` and sign root v1 with all of them."""
    if n_keys < 3 or threshold < 2 or threshold > n_keys:
        raise SigningError(f"need at least 3 root keys and a threshold from 2 to the number of keys "
                           f"(got {n_keys} keys, threshold {threshold})", field="threshold", code="invalid")
    missing = [r for r in keys_mod.ONLINE_ROLES if r not in online]
    if missing:
        raise SigningError(f"no public key for online role(s) {', '.join(missing)}", code="invalid")
    if root_key_files(out_dir) or (out_dir / ROOT_FILE).exists():
        raise SigningError(f"{out_dir} already holds root keys; refusing to overwrite them", code="conflict",
                           status=409)
    signers = [keys_mod.generate_signer() for _ in range(n_keys)]
    root = md.new_root(root_keys=[keys_mod.public_key_of(s) for s in signers], threshold=threshold,
                       online=online, expires=md.expiry(now, expires_seconds))
    md.sign(root, signers)
    files = write_root_keys(out_dir, signers, passphrase)
    root_file = out_dir / ROOT_FILE
    root_file.write_bytes(md.to_bytes(root))
    return CeremonyResult(root, root_file, files)


def write_root_keys(out_dir: Path, signers: list[CryptoSigner], passphrase: str | None,
                    start: int = 1) -> list[Path]:
    files = []
    for i, signer in enumerate(signers, start):
        path = out_dir / f"root-key-{i}-{signer.public_key.keyid[:16]}.pem"
        keys_mod.write_private_file(path, keys_mod.private_pem(signer, passphrase))
        files.append(path)
    return files


def online_public_keys_json(keys: Mapping[str, Key]) -> str:
    return json.dumps({role: {"keyid": k.keyid, **k.to_dict()} for role, k in keys.items()}, indent=2)


def read_online_public_keys(path: Path) -> dict[str, Key]:
    """Public online keys from a file written by ``keys export-online``."""
    try:
        data = json.loads(path.read_text())
        return {role: SSlibKey.from_dict(d.pop("keyid"), d) for role, d in data.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise KeyLoadError(f"{path}: not an online public key file ({e})") from e


def local_trial(session: Session, out_dir: Path) -> CeremonyResult:
    """The whole ceremony without questions, for a local trial or a test: online keys in
    the instance key folder, three unencrypted root keys (threshold 2) in ``out_dir``,
    root v1 loaded into the server. The caller commits.
    """
    from flask import current_app

    from . import services

    folder = keys_mod.key_dir(current_app.config, current_app.instance_path)
    online = {r: s.public_key for r, s in keys_mod.ensure_online_keys(folder).items()}
    result = init_root(out_dir, online=online, now=services.utcnow(),
                       expires_seconds=services.settings().root_expiry)
    services.bootstrap(session, result.root_file.read_bytes())
    return result


def load_root_keys(folder: Path, passphrase: str | None = None) -> list[CryptoSigner]:
    """Every root key in a ceremony folder (for scripts and tests; operators name key files)."""
    return [keys_mod.load_private_file(p, passphrase) for p in root_key_files(folder)]
