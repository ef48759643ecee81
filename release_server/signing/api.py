"""Signing API: a claimed component's role, its pending proposal, and publisher signatures.

``GET /components/<c>/signing`` gives a publisher's machine what it needs to build and
sign the next version of the component's role (the current role, the keys, the
threshold, the proposal waiting for signatures); ``POST .../signing/signatures`` adds
signatures made on the publishers' machines. The server never signs these roles.
"""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from ..accounts.auth import Principal
from ..accounts.services import audit
from ..api import PUBLISHERS, STAFF, endpoint
from ..db import db
from ..releases import services as releases
from . import claims



class SignatureIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    keyid: str = Field(min_length=1, max_length=128)
    sig: str = Field(min_length=1, max_length=2048)


class SignaturesBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    signatures: list[SignatureIn] = Field(min_length=1, max_length=64)


def state(component: str) -> dict:
    """Everything a publisher's machine needs about a claimed component's role."""
    return claims.publisher_state(db.session, releases.get_component(db.session, component).name)


@endpoint("/components/<component>/signing", roles=STAFF, summary="A claimed component's role and the change "
          "waiting for publisher signatures", tag="signing")
def get_signing(principal: Principal, component: str) -> dict:
    return state(component)


@endpoint("/components/<component>/signing/signatures", methods=["POST"], roles=PUBLISHERS, body=SignaturesBody,
          summary="Add publisher signatures to the pending change of a claimed component", tag="signing")
def add_signatures(principal: Principal, component: str, body: SignaturesBody) -> dict:
    outcome = claims.add_signatures(db.session, component, [s.model_dump() for s in body.signatures],
                                    actor=principal.actor)
    audit(db.session, principal.actor, "release.sign", f"component:{component}",
          {"action": outcome.action, "keyids": [s.keyid for s in body.signatures], "applied": outcome.applied,
           "role_version": outcome.role_version})
    db.commit()
    return {"applied": outcome.applied, "action": outcome.action, "role_version": outcome.role_version,
            "threshold": outcome.status.threshold, "signed": outcome.status.signed,
            "awaited": outcome.status.awaited,
            "version": outcome.release.version if outcome.release is not None else None}


class ProposalBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: str = Field(pattern="^renew$", description="'renew': the same targets with a new expiry")
    tuf_role: dict


@endpoint("/components/<component>/signing/proposals", methods=["POST"], roles=PUBLISHERS, body=ProposalBody,
          summary="Propose a publisher-signed renewal of a claimed component's role", tag="signing")
def propose(principal: Principal, component: str, body: ProposalBody) -> dict:
    comp = releases.get_component(db.session, component)
    outcome = claims.submit(db.session, comp.name, body.action, body.tuf_role, actor=principal.actor)
    audit(db.session, principal.actor, "release.sign_propose", f"component:{comp.name}",
          {"action": body.action, "applied": outcome.applied, "role_version": outcome.role_version})
    db.commit()
    return {"applied": outcome.applied, "action": outcome.action, "role_version": outcome.role_version,
            "threshold": outcome.status.threshold, "signed": outcome.status.signed,
            "awaited": outcome.status.awaited}


@endpoint("/components/<component>/signing/pending", methods=["DELETE"], roles=PUBLISHERS,
          summary="Discard the change waiting for signatures (an unsigned release is removed)", tag="signing")
def discard_pending(principal: Principal, component: str) -> dict:
    pending = claims.discard(db.session, component)
    audit(db.session, principal.actor, "release.sign_discard", f"component:{component}", {"action": pending.action})
    db.commit()
    return {"discarded": pending.action}



