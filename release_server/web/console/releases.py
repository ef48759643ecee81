"""Releases: list by component, detail (changelog, artifact, signed TUF target), promote, yank."""
from __future__ import annotations

import json
from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import select

from ...accounts.services import audit
from ...db import db
from ...deltas import services as deltas
from ...errors import ReleaseServerError
from ...messages import label_text
from ...releases import services as releases
from ...rollouts import services as rollouts
from ..forms import Form
from ..security import current_staff, staff_required
from . import ALL, PUBLISHERS, bp


PER_PAGE = 30


def tuf_info(release: Any) -> list[dict[str, Any]]:
    """The release's signed targets as the TUF repository lists them (empty before bootstrap)."""
    from ...signing.models import TufTarget
    from ...signing.services import target_file_for

    out = []
    for row in db.session.scalars(select(TufTarget).where(TufTarget.release_id == release.id)
                                  .order_by(TufTarget.kind, TufTarget.path)):
        tf = target_file_for(row)
        out.append({"path": row.path, "role": row.role, "kind": row.kind, "length": tf.length,
                    "hashes": dict(tf.hashes),
                    "custom": json.dumps(tf.custom or {}, indent=2, sort_keys=True, ensure_ascii=False)})
    return out


def signing_info(release: Any) -> dict[str, Any] | None:
    """A claimed component's publisher keys, and who signed / who is awaited for its pending change."""
    from ...signing import claims
    from ...signing.services import repository_ready

    session = db.session
    if not repository_ready(session) or not claims.is_claimed(session, release.component.name):
        return None
    claim = claims.get_claim(session, release.component.name)
    pending = claims.pending_of(session, release.component.name)
    info: dict[str, Any] = {"threshold": claim.threshold, "keys": sorted(claim.keys), "pending": None}
    if pending is not None:
        st = claims.pending_status(session, pending)
        info["pending"] = {"action": label_text("signing_action", pending.action), "signed": st.signed,
                           "awaited": st.awaited,
                           "threshold": st.threshold, "created_by": pending.created_by,
                           "created_at": pending.created_at,
                           "version": pending.release.version if pending.release is not None else None}
    return info


def _refuse_claimed(release: Any, component: str, version: str) -> Any:
    """A claimed component's release changes are signed by its publishers, never from the console."""
    if signing_info(release) is None:
        return None
    flash(_("%(component)s is signed by its publishers: change it with 'release-server yank/unyank/promote "
            "--sign-with KEY' on a publisher's machine.", component=release.component.name), "error")
    return redirect(url_for("console.release_detail", component=component, version=release.version)), 303


@bp.get("/releases", endpoint="releases")
@staff_required(*ALL)
def releases_list() -> Any:
    session = db.session
    components = releases.list_components(session)
    name = request.args.get("component") or (components[0].name if components else None)
    comp = next((c for c in components if c.name == name), components[0] if components else None)
    channel = request.args.get("channel") or ""
    if channel and channel not in [c.name for c in releases.list_channels(session)]:
        channel = ""
    from .rollouts import page_arg

    page = page_arg()
    rows, total = releases.list_releases(session, comp.name, channel=channel or None, page=page,
                                         per_page=PER_PAGE) if comp else ([], 0)
    by_release: dict[int, list[Any]] = {}
    for ro in rollouts.list_rollouts(session, component=comp.name if comp else None):
        by_release.setdefault(ro.release_id, []).append(ro)
    return render_template("console/releases.html", components=components, comp=comp, rows=rows,
                           channels=releases.list_channels(session), channel=channel, by_release=by_release,
                           page=page, per_page=PER_PAGE, total=total)


def _detail(component: str, version: str, form: Form | None = None, status: int = 200) -> Any:
    session = db.session
    release = releases.get_release(session, component, version)
    ros = [r for r in rollouts.list_rollouts(session, component=release.component.name) if r.release_id == release.id]
    _, patches = deltas.deltas_to(session, component, version)
    _, transfer = deltas.transfer_figures(session, component=release.component.name, version=release.version)
    return render_template(
        "console/release.html", release=release, tuf=tuf_info(release), signing=signing_info(release),
        rollouts=ros, deltas=patches,
        transfer=transfer,
        restrictions=rollouts.restrictions_of(session, release), fixes=releases.fixes_of(session, release),
        channels=[c for c in releases.list_channels(session) if c.name not in release.channel_names],
        form=form or Form()), status


@bp.get("/releases/<component>/<version>")
@staff_required(*ALL)
def release_detail(component: str, version: str) -> Any:
    return _detail(component, version)


@bp.get("/releases/<component>/<version>/artifact")
@staff_required(*ALL)
def release_artifact(component: str, version: str) -> Any:
    from ...releases.api import artifact_response

    return artifact_response(releases.get_release(db.session, component, version))


@bp.post("/releases/<component>/<version>/promote")
@staff_required(*PUBLISHERS)
def release_promote(component: str, version: str) -> Any:
    form = Form(request.form)
    channel = form.text("channel", required=True, max_length=64)
    refused = _refuse_claimed(releases.get_release(db.session, component, version), component, version)
    if refused is not None:
        return refused
    if form.ok:
        try:
            release = releases.promote(db.session, releases.get_release(db.session, component, version), channel)
            audit(db.session, current_staff().username, "release.promote",
                  f"release:{release.component.name}/{release.version}", {"channel": channel})
            db.commit()
            flash(_("%(version)s is now on %(channel)s.", version=release.version, channel=channel))
            return redirect(url_for("console.release_detail", component=component, version=release.version))
        except ReleaseServerError as e:
            db.rollback()
            form.service_error(e, {"channels": "channel"})
    return _detail(component, version, form, 400)


@bp.post("/releases/<component>/<version>/yank")
@staff_required(*PUBLISHERS)
def release_yank(component: str, version: str) -> Any:
    form = Form(request.form)
    reason = form.text("reason", required=True, max_length=2000)
    refused = _refuse_claimed(releases.get_release(db.session, component, version), component, version)
    if refused is not None:
        return refused
    if form.ok:
        release = releases.get_release(db.session, component, version)
        if release.yanked:
            abort(409)
        releases.yank(db.session, release, reason)
        audit(db.session, current_staff().username, "release.yank",
              f"release:{release.component.name}/{release.version}", {"reason": reason})
        db.commit()
        flash(_("%(version)s is yanked: it will not be offered again.", version=release.version))
        return redirect(url_for("console.release_detail", component=component, version=release.version))
    return _detail(component, version, form, 400)


@bp.post("/releases/<component>/<version>/unyank")
@staff_required(*PUBLISHERS)
def release_unyank(component: str, version: str) -> Any:
    refused = _refuse_claimed(releases.get_release(db.session, component, version), component, version)
    if refused is not None:
        return refused
    release = releases.unyank(db.session, releases.get_release(db.session, component, version))
    audit(db.session, current_staff().username, "release.unyank",
          f"release:{release.component.name}/{release.version}")
    db.commit()
    flash(_("%(version)s is no longer yanked.", version=release.version))
    return redirect(url_for("console.release_detail", component=component, version=release.version))
