"""Delta API: list and make the patches to a release; bytes saved per release and across the fleet."""
from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from ..accounts.auth import Principal
from ..accounts.services import audit
from ..api import PUBLISHERS, STAFF, endpoint
from ..db import db
from . import services


class DeltaOut(BaseModel):
    from_version: str
    to_version: str
    status: str
    reason: str | None
    target_path: str | None
    length: int | None
    full_length: int
    generation_seconds: float | None
    created_at: datetime


class DeltaList(BaseModel):
    items: list[DeltaOut]


class GenerateDeltas(BaseModel):
    from_versions: list[str] | None = Field(default=None, max_length=20,
                                            description="Earlier versions to patch from (default: the newest N)")
    force: bool = False


class TransferOut(BaseModel):
    component: str | None
    version: str | None
    updates: int
    bytes_downloaded: int
    bytes_full: int
    bytes_saved: int


class TransferList(BaseModel):
    items: list[TransferOut]
    total: TransferOut


def _transfer(t: services.TransferFigures) -> TransferOut:
    return TransferOut(component=t.component, version=t.version, updates=t.updates,
                       bytes_downloaded=t.bytes_downloaded, bytes_full=t.bytes_full, bytes_saved=t.bytes_saved)


def _list(component: str, version: str) -> DeltaList:
    release, rows = services.deltas_to(db.session, component, version)
    return DeltaList(items=[DeltaOut(from_version=d.from_release.version, to_version=release.version,
                                     status=d.status, reason=d.reason, target_path=d.target_path, length=d.length,
                                     full_length=release.artifact_size, generation_seconds=d.generation_seconds,
                                     created_at=d.created_at) for d in rows])


@endpoint("/components/<component>/releases/<version>/deltas", roles=STAFF, response=DeltaList,
          summary="Delta patches to a release", tag="releases")
def list_deltas(principal: Principal, component: str, version: str) -> DeltaList:
    return _list(component, version)


@endpoint("/components/<component>/releases/<version>/deltas", methods=["POST"], roles=PUBLISHERS,
          body=GenerateDeltas, response=DeltaList, readonly=True,
          summary="Make the missing delta patches to a release now", tag="releases")
def generate_deltas(principal: Principal, component: str, version: str, body: GenerateDeltas) -> DeltaList:
    results = services.generate(lambda write: db.new_session(write=write), component, version,
                                from_versions=body.from_versions, force=body.force)
    ws = db.new_session(write=True)
    try:
        audit(ws, principal.actor, "release.deltas", f"release:{component}/{version}",
              {"made": [r.from_version for r in results if r.status == "ready"]})
        ws.commit()
    finally:
        ws.close()
    db.rollback()  # end the request's read transaction, so the list sees what was just committed
    return _list(component, version)


@endpoint("/fleet/transfer", roles=STAFF, response=TransferList,
          summary="Bytes downloaded for updates against full downloads, per release and in total", tag="fleet")
def fleet_transfer(principal: Principal) -> TransferList:
    rows, total = services.transfer_figures(db.session)
    return TransferList(items=[_transfer(r) for r in rows], total=_transfer(total))
