"""A publisher key is named by a PEM file or by a securesystemslib signer URI (a KMS or a hardware key in
production; ``file2:`` here), and only one of the claim's publisher keys is accepted."""
from __future__ import annotations

from pathlib import Path

import pytest

from release_server.signing import keys
from release_server.signing.publisher import KeyLoadError, load_signer


def _key_file(tmp_path: Path, name: str) -> tuple[Path, object]:
    signer = keys.generate_signer()
    path = tmp_path / f"{name}.pem"
    keys.write_private_file(path, keys.private_pem(signer))
    return path, signer


def test_a_signer_uri_signs_as_the_publisher_key_it_names(tmp_path: Path) -> None:
    path, signer = _key_file(tmp_path, "anna")
    other = keys.generate_signer()
    loaded = load_signer(f"file2:{path}", [other.public_key, signer.public_key])
    assert loaded.public_key.keyid == signer.public_key.keyid
    sig = loaded.sign(b"payload")
    signer.public_key.verify_signature(sig, b"payload")  # raises if the URI signed with another key


def test_a_uri_or_file_of_a_key_outside_the_claim_is_refused(tmp_path: Path) -> None:
    path, _signer = _key_file(tmp_path, "mallory")
    claim = [keys.generate_signer().public_key for _ in range(2)]
    with pytest.raises(KeyLoadError, match="not a publisher key"):
        load_signer(str(path), claim)
    with pytest.raises(KeyLoadError, match="signer URI"):
        load_signer(f"file2:{path}", claim)
    with pytest.raises(KeyLoadError):
        load_signer(f"file2:{tmp_path / 'missing.pem'}", claim)
