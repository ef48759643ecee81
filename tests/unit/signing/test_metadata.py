"""Pure metadata rules: file names, bins, custom fields, root construction."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from tuf.api.metadata import SuccinctRoles

from release_server.signing import keys, metadata as md


def test_hash_prefixed_names_round_trip():
    sha = "ab" * 32
    assert md.hash_prefixed("server/server-1.0.tar.gz", sha) == f"server/{sha}.server-1.0.tar.gz"
    assert md.split_hash_prefixed(f"server/changelogs/{sha}.1.0.md") == ("server/changelogs/1.0.md", sha)
    assert md.split_hash_prefixed("server/server-1.0.tar.gz") is None
    assert md.split_hash_prefixed(f"server/{'zz' * 32}.x") is None


def test_bins_agree_with_python_tuf():
    roles = SuccinctRoles([], 1, 8, "bins")
    for path in ("server/a.tar.gz", "web/changelogs/1.0.md", "x/y"):
        assert md.bin_for(path, 8) == roles.get_role_for_target(path)
    assert len(md.all_bins(8)) == 256 and md.all_bins(8)[0] == "bins-00"


def test_metadata_keys():
    assert md.metadata_key("timestamp", 7) == "tuf/metadata/timestamp.json"
    assert md.metadata_key("bins-1f", 3) == "tuf/metadata/3.bins-1f.json"


def test_custom_fields_carry_every_decision_attribute():
    custom = md.artifact_custom(component="server", version="2.0", channels=["stable", "beta"], critical=True,
                                yanked=False, min_from_version="1.5", requires={"db": ">=3"},
                                changelog_target="server/changelogs/2.0.md", changelog_sha256="00" * 32,
                                changelog_length=12)
    assert custom == {"component": "server", "version": "2.0", "channels": ["beta", "stable"], "critical": True,
                      "yanked": False, "min_from_version": "1.5", "requires": {"db": ">=3"},
                      "changelog": {"path": "server/changelogs/2.0.md", "sha256": "00" * 32, "length": 12}}


def test_new_root_is_verified_only_at_threshold():
    signers = [keys.generate_signer() for _ in range(3)]
    online = {r: keys.generate_signer().public_key for r in keys.ONLINE_ROLES}
    root = md.new_root(root_keys=[s.public_key for s in signers], threshold=2, online=online,
                       expires=datetime(2100, 1, 1, tzinfo=timezone.utc))
    assert root.signed.consistent_snapshot
    md.sign(root, signers[:1])
    assert not root.signed.get_verification_result("root", root.signed_bytes, root.signatures).verified
    md.sign(root, signers[:2])
    root.verify_delegate("root", root)


def test_encrypted_key_needs_its_passphrase(tmp_path):
    from release_server.signing.errors import KeyLoadError

    signer = keys.generate_signer()
    path = tmp_path / "k.pem"
    keys.write_private_file(path, keys.private_pem(signer, "s3cret"))
    assert path.stat().st_mode & 0o777 == 0o600
    assert keys.is_encrypted(path)
    with pytest.raises(KeyLoadError):
        keys.load_private_file(path)
    with pytest.raises(KeyLoadError):
        keys.load_private_file(path, "wrong")
    assert keys.load_private_file(path, "s3cret").public_key.keyid == signer.public_key.keyid


def test_online_key_is_found_under_any_file_name(tmp_path):
    from release_server.signing.errors import KeyLoadError

    signer = keys.generate_signer()
    online = {"targets": signer.public_key, "snapshot": keys.generate_signer().public_key,
              "timestamp": keys.generate_signer().public_key}
    root = md.new_root(root_keys=[keys.generate_signer().public_key for _ in range(3)], threshold=2, online=online,
                       expires=datetime(2100, 1, 1, tzinfo=timezone.utc)).signed
    config = {"TUF_KEY_DIR": str(tmp_path)}
    with pytest.raises(KeyLoadError):
        keys.load_online_signer(config, "/unused", root, "targets")
    keys.write_private_file(tmp_path / "copied-by-hand.pem", keys.private_pem(signer))
    assert keys.load_online_signer(config, "/unused", root, "targets").public_key.keyid == signer.public_key.keyid
    with pytest.raises(KeyLoadError):
        keys.load_online_signer(config, "/unused", root, "timestamp")
