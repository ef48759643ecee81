"""The pure verification rule: what TUF must say before an offer may be installed."""
from __future__ import annotations

import pytest

from client_agent.trust import SignedRelease, VerificationError, decide


def signed(version="1.1", component="app", **kw):
    return SignedRelease(path=f"{component}/{component}-{version}.tar.gz", component=component, version=version,
                         length=10, hashes={"sha256": "0" * 64}, **kw)


def run(offer_version="1.1", *, signed_entry=..., installed_version="1.0", installed_signed=None, installed=None):
    entry = signed(offer_version) if signed_entry is ... else signed_entry
    decide(component="app", version=offer_version, target_path=f"app/app-{offer_version}.tar.gz",
           signed=entry, installed_version=installed_version, installed_signed=installed_signed,
           installed={"app": offer_version, **(installed or {})})


def refused(code, **kw):
    with pytest.raises(VerificationError) as info:
        run(**kw)
    assert info.value.code == code
    return info.value


def test_a_signed_newer_release_is_accepted():
    run()
    run(installed_version=None)  # first install


def test_unsigned_or_mismatching_targets_are_refused():
    refused("verification_failed", signed_entry=None)
    refused("verification_failed", signed_entry=signed("1.2"))  # signed entry names another version
    refused("verification_failed", signed_entry=signed("1.1", component="web"))


def test_not_newer_and_downgrades_are_refused_unless_the_installed_release_is_yanked():
    refused("not_newer", offer_version="1.0")
    refused("downgrade_refused", offer_version="0.9")
    refused("downgrade_refused", offer_version="0.9", installed_signed=signed("1.0"))
    run(offer_version="0.9", installed_signed=signed("1.0", yanked=True))


def test_yanked_offers_are_refused():
    refused("yanked", signed_entry=signed("1.1", yanked=True))


def test_min_from_version_and_requires():
    refused("min_from_version", signed_entry=signed("1.1", min_from_version="1.0.5"))
    run(signed_entry=signed("1.1", min_from_version="1.0"))
    run(installed_version=None, signed_entry=signed("1.1", min_from_version="1.0.5"))  # first install
    refused("requirements_not_met", signed_entry=signed("1.1", requires={"db": ">=2"}), installed={"db": "1.5"})
    refused("requirements_not_met", signed_entry=signed("1.1", requires={"db": ">=2"}))
    run(signed_entry=signed("1.1", requires={"db": ">=2"}), installed={"db": "2.1"})
