"""Every name, file name, channel, tag, prefix and number check matches the whole value.

A pattern used with ``re.match`` and ``$`` also accepts a trailing newline; each check is
fed the line breaks, NUL and the Unicode line separators in every position, and a
property test compares each check with its rule written out here independently.
"""
from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

BAD = ["\n", "\r", "\r\n", "\x00", "\u2028", "\u2029", "\x85", "\x0b", "\x0c"]
PROPERTY = settings(max_examples=150, database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _accepts(check: Callable[[str], object]) -> Callable[[str], bool]:
    """Whether ``check`` lets the value through; a check that normalises (strips) it counts as refusing it
    only if what it returns is clean."""
    def accepted(value: str) -> bool:
        try:
            result = check(value)
        except AssertionError:
            raise
        except Exception:  # noqa: BLE001 - every refusal counts, whatever its type
            return False
        if isinstance(result, str) and result != value:
            return any(ch in result for ch in "".join(BAD))
        return result is not None and result is not False
    return accepted


def _name(v: str) -> object:
    from release_server.releases.schemas import check_name

    return check_name(v)


def _filename(v: str) -> object:
    from release_server.releases.schemas import PublishMetadata

    return PublishMetadata.model_validate({"version": "1.0", "filename": v})


def _channel(v: str) -> object:
    from release_server.releases.schemas import PublishMetadata

    return PublishMetadata.model_validate({"version": "1.0", "channels": [v]})


def _enroll(**fields: object) -> object:
    from release_server.fleet.schemas import EnrollRequest

    return EnrollRequest.model_validate({"enrollment_token": "rse_x", "name": "n", **fields})


def _username(v: str) -> object:
    from release_server.accounts.services import check_username

    return check_username(v)


def _email(v: str) -> object:
    from release_server.support.customers import check_email

    return check_email(v)


def _ticket_number(v: str) -> object:
    from release_server.support.services import parse_number

    return parse_number(v)


def _metadata_name(v: str) -> object:
    from release_server.signing.views import METADATA_NAME

    return METADATA_NAME.fullmatch(v)


def _pin_prefix(v: str) -> object:
    from release_server.rollouts.schemas import CreatePin

    return CreatePin.model_validate({"scope": "tag", "value": "eu", "component": "server", "prefix": v})


def _report_id(v: str) -> object:
    from release_server.fleet.schemas import ReportIn

    return ReportIn.model_validate({"id": v, "component": "server", "to_version": "1.0", "outcome": "success"})


def _agent_name(v: str) -> object:
    from client_agent.installer import check_name

    return check_name("component", v)


#: (check, a value it accepts, the rule it must follow, written out independently)
CHECKS: dict[str, tuple[Callable[[str], object], str, str]] = {
    "component name": (_name, "server", r"[a-z0-9][a-z0-9._-]{0,63}"),
    "artifact file name": (_filename, "a.tar.gz", r"[A-Za-z0-9][A-Za-z0-9._+-]{0,254}"),
    "release channel": (_channel, "stable", r"[a-z0-9][a-z0-9._-]{0,63}"),
    "enrollment channel": (lambda v: _enroll(channel=v), "beta", r"[a-z0-9][a-z0-9._-]{0,63}"),
    "enrollment tag": (lambda v: _enroll(tags=[v]), "eu-west", r"[a-z0-9][a-z0-9._-]{0,63}"),
    "installed component": (lambda v: _enroll(installed={v: "1.0"}), "web", r"[a-z0-9][a-z0-9._-]{0,63}"),
    "maintenance window": (lambda v: _enroll(maintenance_window=v), "sat-sun 01:00-05:00", None),
    "staff username": (_username, "alice", r"[A-Za-z0-9][A-Za-z0-9._@-]{1,79}"),
    "e-mail address": (_email, "ann@acme.example", None),
    "ticket number": (_ticket_number, "OTK-000123", None),
    "metadata file name": (_metadata_name, "1.root.json", None),
    "pin version prefix": (_pin_prefix, "2.4", r"[0-9]+(\.[0-9]+)*\.?"),
    "report id": (_report_id, "0f8fad5b-d9cb-469f-a165-70867728950e", r"[0-9a-fA-F-]{32,36}"),
    "agent component name": (_agent_name, "server", r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}"),
}


@pytest.mark.parametrize("bad", BAD, ids=[repr(b) for b in BAD])
@pytest.mark.parametrize("what", sorted(CHECKS))
def test_line_breaks_nul_and_separators_are_refused_anywhere(what: str, bad: str) -> None:
    check, good, _rule = CHECKS[what]
    accepted = _accepts(check)
    assert accepted(good), f"{what}: {good!r} should be accepted"
    for value in (good + bad, bad + good, good[:1] + bad + good[1:]):
        assert not accepted(value), f"{what} accepted {value!r}"


#: texts near the rules' edges: their alphabets, the bad characters and a little of everything
_ALPHABET = st.sampled_from(list("abcxyzAZ09.-_+@/ :") + [b for b in BAD if len(b) == 1] + ["é", "\t", " "])
_TEXT = st.one_of(st.text(_ALPHABET, max_size=12), st.text(max_size=12))


@pytest.mark.parametrize("what", sorted(k for k, v in CHECKS.items() if v[2] is not None))
def test_each_check_accepts_exactly_what_its_full_match_rule_allows(what: str) -> None:
    check, _good, rule = CHECKS[what]
    accepted = _accepts(check)
    pattern = re.compile(rule)

    @PROPERTY
    @given(st.one_of(_TEXT, st.from_regex(pattern, fullmatch=True),
                     st.from_regex(pattern, fullmatch=True).flatmap(
                         lambda s: st.sampled_from(BAD).map(lambda b: s + b))))
    def prop(value: str) -> None:
        expected = pattern.fullmatch(value) is not None and value not in (".", "..")
        assert accepted(value) == expected, f"{what}: {value!r}"

    prop()
