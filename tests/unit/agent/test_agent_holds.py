"""Holds after an operator's rollback: which offers are set aside (pure)."""
from __future__ import annotations

from client_agent.agent import split_held
from client_agent.client import Offer


def offer(component: str, version: str, *, downgrade: bool = False) -> Offer:
    fields = {f: None for f in Offer.__dataclass_fields__}
    fields.update(component=component, version=version, downgrade=downgrade, target_path=f"{component}/x",
                  from_version="1.0", critical=False)
    return Offer(**fields)


def test_offers_up_to_the_release_left_are_held_newer_ones_and_other_components_pass():
    holds = {"app": {"version": "1.0", "left": "1.1"}}
    offers = [offer("app", "1.1"), offer("web", "2.0")]
    kept, held = split_held(offers, holds)
    assert [o.component for o in kept] == ["web"] and [o.version for o in held] == ["1.1"]
    kept, held = split_held([offer("app", "1.0.5"), offer("app", "1.2")], holds)
    assert [o.version for o in kept] == ["1.2"] and [o.version for o in held] == ["1.0.5"]


def test_the_replacement_of_a_yanked_release_is_not_held():
    kept, _ = split_held([offer("app", "0.9", downgrade=True)], {"app": {"version": "1.0", "left": "1.1"}})
    assert [o.version for o in kept] == ["0.9"]
