"""Releases API: components, channels, publish, list, download, promote, yank, changelogs."""
from __future__ import annotations

import json

from flask import Response, current_app, redirect, request, url_for
from werkzeug.exceptions import RequestEntityTooLarge

from .. import metrics
from ..accounts.auth import Principal
from ..accounts.services import audit
from ..api import PUBLISHERS, STAFF, endpoint, parse_json_body, parse_model
from ..db import db
from ..downloads import blob_response
from ..errors import PayloadTooLargeError, ReleaseServerError, ValidationError
from ..storage import get_storage
from ..signing import claims
from ..signing import services as tuf
from ..uploads import HashingSpoolFile, multipart_reader
from . import services
from .models import Release
from .schemas import (FILENAME_RE, ChangelogEntry, ChangelogQuery, ChannelList, ChannelOut, ChannelSettings,
                      CombinedChangelog,
                      ComponentList, ComponentOut, CreateChannel, CreateComponent, PromoteBody, PublishMetadata,
                      ReleaseOut, ReleasePage, ReleaseQuery, UnyankBody, YankBody)


def release_out(r: Release, outcome: claims.Outcome | None = None) -> ReleaseOut:
    sigs = None
    if outcome is not None and not outcome.applied:
        sigs = {"action": outcome.action, "role_version": outcome.role_version, "threshold": outcome.status.threshold,
                "signed": outcome.status.signed, "awaited": outcome.status.awaited}
    return ReleaseOut(
        signatures_pending=r.signatures_pending or sigs is not None, signatures=sigs,
        component=r.component.name, version=r.version, channels=r.channel_names,
        artifact={"filename": r.artifact_filename, "sha256": r.artifact_sha256, "size": r.artifact_size},
        changelog=r.changelog, changelog_html=r.changelog_html, critical=r.critical,
        min_from_version=r.min_from_version, requires=r.requires or {}, created_by=r.created_by,
        created_at=r.created_at, yanked=r.yanked, yank_reason=r.yank_reason,
        download_url=url_for("api_v1.download_artifact", component=r.component.name, version=r.version),
        **_fixes(r))


def _fixes(r: Release) -> dict[str, list]:
    links = services.fixes_of(db.session, r)
    return {"fixes": links["tickets"], "fixes_groups": links["groups"]}


@endpoint("/components", methods=["POST"], roles=PUBLISHERS, body=CreateComponent, response=ComponentOut,
          status=201, summary="Create a component", tag="releases")
def create_component(principal: Principal, body: CreateComponent) -> ComponentOut:
    comp = services.create_component(db.session, body.name, body.description)
    audit(db.session, principal.actor, "component.create", f"component:{comp.name}")
    db.commit()
    return ComponentOut.model_validate(comp, from_attributes=True)


@endpoint("/components", roles=STAFF, response=ComponentList, summary="List components", tag="releases")
def list_components(principal: Principal) -> ComponentList:
    return ComponentList(items=[ComponentOut.model_validate(c, from_attributes=True)
                                for c in services.list_components(db.session)])


@endpoint("/channels", methods=["POST"], roles=PUBLISHERS, body=CreateChannel, response=ChannelOut, status=201,
          summary="Create a channel", tag="releases")
def create_channel(principal: Principal, body: CreateChannel) -> ChannelOut:
    ch = services.create_channel(db.session, body.name, body.description,
                                 require_staged_rollout=body.require_staged_rollout)
    audit(db.session, principal.actor, "channel.create", f"channel:{ch.name}",
          {"require_staged_rollout": ch.require_staged_rollout})
    db.commit()
    return ChannelOut.model_validate(ch, from_attributes=True)


@endpoint("/channels/<channel>", methods=["PATCH"], roles=PUBLISHERS, body=ChannelSettings, response=ChannelOut,
          summary="Change a channel's settings (e.g. require a staged rollout for every release)", tag="releases")
def update_channel(principal: Principal, channel: str, body: ChannelSettings) -> ChannelOut:
    ch = services.set_channel_settings(db.session, channel, require_staged_rollout=body.require_staged_rollout)
    audit(db.session, principal.actor, "channel.update", f"channel:{ch.name}",
          {"require_staged_rollout": ch.require_staged_rollout})
    db.commit()
    return ChannelOut.model_validate(ch, from_attributes=True)


@endpoint("/channels", roles=STAFF, response=ChannelList, summary="List channels", tag="releases")
def list_channels(principal: Principal) -> ChannelList:
    return ChannelList(items=[ChannelOut.model_validate(c, from_attributes=True)
                              for c in services.list_channels(db.session)])


@endpoint("/components/<component>/releases", methods=["POST"], roles=PUBLISHERS, response=ReleaseOut, status=201,
          multipart={"metadata": PublishMetadata, "artifact": {"type": "string", "format": "binary"}},
          summary="Publish a release (multipart: metadata JSON + artifact file)", tag="releases")
def publish_release(principal: Principal, component: str) -> ReleaseOut:
    """Parts are read in order: a ``metadata`` part sent first is checked (unknown component,
    duplicate version or target path, bad fields, declared ``size`` over the limit) before
    the artifact is read, so a refusal arrives while the client is still sending."""
    if request.mimetype != "multipart/form-data":
        raise ReleaseServerError("publish expects multipart/form-data with parts 'metadata' and 'artifact'",
                                 status=415, code="unsupported_media_type", field="body")
    cfg = current_app.config
    limit = cfg["MAX_ARTIFACT_SIZE"]
    reader = multipart_reader(request)
    metadata: PublishMetadata | None = None
    plan = None
    spool: HashingSpoolFile | None = None
    checked = False  # the artifact passed its check while it was received
    upload_name = ""
    try:
        whole_limit = cfg.get("MAX_CONTENT_LENGTH")
        if request.content_length is not None and whole_limit is not None and request.content_length > whole_limit:
            raise RequestEntityTooLarge()
        if request.content_length is not None and request.content_length > limit + METADATA_LIMIT + 64 * 1024:
            raise PayloadTooLargeError(f"artifact larger than the limit of {limit} bytes", field="artifact")
        while (part := reader.next_part()) is not None:
            if part.name == "metadata" and metadata is None:
                metadata = _parse_metadata(part.read(METADATA_LIMIT))
                plan = _plan(component, metadata, upload_name if spool is not None else None)
                if spool is not None and metadata.size is not None and metadata.size != spool.size:
                    raise ValidationError(f"the artifact has {spool.size} bytes, the metadata declares "
                                          f"{metadata.size}", field="size")
            elif part.name == "artifact" and spool is None:
                upload_name = (part.filename or "").rsplit("/", 1)[-1]
                if plan is not None:
                    plan = _plan(component, metadata, upload_name)
                spool = HashingSpoolFile(cfg["UPLOAD_TMP_DIR"], limit,
                                         bypass_cache=get_storage().adopts_files_from(cfg["UPLOAD_TMP_DIR"]))
                request.__dict__.setdefault("_spools", []).append(spool)
                checked = part.save(spool, inspect=services.artifact_passes_while_received,
                                    length=metadata.size if metadata is not None else None)
                if metadata is not None and metadata.size is not None and metadata.size != spool.size:
                    raise ValidationError(f"the artifact has {spool.size} bytes, the metadata declares "
                                          f"{metadata.size}", field="size")
            else:
                part.read(METADATA_LIMIT)  # an unknown part: skipped (small ones only)
    except BaseException:
        reader.abandon()
        raise
    if metadata is None:
        raise ValidationError("the 'metadata' part is missing", field="metadata")
    if spool is None:
        raise ValidationError("the 'artifact' part is missing", field="artifact")
    filename = metadata.filename or upload_name
    if spool.size == 0:
        raise services.EmptyArtifactError()
    spool.finish()
    if not checked:
        services.check_artifact(spool.name)
    storage = get_storage()
    blob = storage.put_file(spool.name, sha256=spool.sha256, size=spool.size, move=True)
    spool.claimed = True
    try:
        release = services.create_release(db.session, plan, blob, filename, principal.actor)
        outcome = None
        if metadata.tuf_role is not None:
            outcome = claims.submit(db.session, component, "publish", metadata.tuf_role, actor=principal.actor,
                                    release=release)
        audit(db.session, principal.actor, "release.publish", f"release:{component}/{release.version}",
              {"sha256": blob.sha256, "size": blob.size, "channels": metadata.channels,
               "rollout": metadata.rollout.model_dump() if metadata.rollout else None})
        db.commit()
    except BaseException:
        db.rollback()
        services.discard_blob_if_unused(db.session, storage, blob.key)
        raise
    return release_out(release, outcome)


METADATA_LIMIT = 2 * 1024 * 1024


def _parse_metadata(raw: bytes) -> PublishMetadata:
    try:
        data = json.loads(raw)
    except ValueError:
        raise ValidationError("the 'metadata' part is not valid JSON", field="metadata") from None
    return parse_model(PublishMetadata, data)


def _plan(component: str, metadata: PublishMetadata, upload_name: str | None) -> services.PublishPlan:
    """Everything that can be checked before the artifact's bytes: refused here, nothing was stored."""
    limit = current_app.config["MAX_ARTIFACT_SIZE"]
    if metadata.size is not None and metadata.size > limit:
        raise PayloadTooLargeError(f"artifact larger than the limit of {limit} bytes", field="size")
    plan = services.plan_publish(db.session, component, metadata)
    if tuf.repository_ready(db.session) and claims.is_claimed(db.session, plan.component.name):
        if metadata.tuf_role is None:
            raise ValidationError(f"component {plan.component.name!r} is claimed: its releases are signed by its "
                                  "publishers (release-server publish --sign-with KEY)", field="tuf_role")
        pending = claims.pending_of(db.session, plan.component.name)
        if pending is not None:
            raise claims.PendingChangeError(plan.component.name, pending.action)
    elif metadata.tuf_role is not None:
        raise ValidationError(f"component {plan.component.name!r} is not claimed: its releases are signed by the "
                              "server", field="tuf_role")
    filename = metadata.filename or upload_name
    if filename is not None:
        if not FILENAME_RE.fullmatch(filename):
            raise ValidationError(f"artifact file name {filename!r} is not allowed (letters, digits, '.', '_', '+', "
                                  "'-')", field="artifact")
        tuf.ensure_target_path_free(db.session, tuf.artifact_target_path(plan.component.name, filename))
    return plan


@endpoint("/components/<component>/releases", roles=STAFF, query=ReleaseQuery, response=ReleasePage,
          summary="List a component's releases, newest version first", tag="releases")
def list_releases(principal: Principal, component: str, query: ReleaseQuery) -> ReleasePage:
    rows, total = services.list_releases(db.session, component, channel=query.channel, page=query.page,
                                         per_page=query.per_page, include_yanked=query.include_yanked)
    return ReleasePage(items=[release_out(r) for r in rows], page=query.page, per_page=query.per_page, total=total)


@endpoint("/components/<component>/releases/<version>", roles=STAFF, response=ReleaseOut,
          summary="Get one release", tag="releases")
def get_release(principal: Principal, component: str, version: str) -> ReleaseOut:
    return release_out(services.get_release(db.session, component, version))


@endpoint("/components/<component>/releases/<version>/artifact", roles=STAFF, binary=True,
          summary="Download a release's artifact (streamed; may redirect to a presigned URL)", tag="releases")
def download_artifact(principal: Principal, component: str, version: str) -> Response:
    release = services.get_release(db.session, component, version)
    return artifact_response(release)


def artifact_response(release: Release) -> Response:
    storage = get_storage()
    cfg = current_app.config
    if storage.local_path(release.blob_key) is None and cfg.get("S3_PRESIGNED_DOWNLOADS"):
        url = storage.presigned_url(release.blob_key, ttl=cfg["S3_PRESIGNED_TTL"],
                                    filename=release.artifact_filename)
        if url:
            return redirect(url, code=302)
    resp = blob_response(release.blob_key, size=release.artifact_size, etag=release.artifact_sha256,
                         download_name=release.artifact_filename)
    metrics.count_bytes("artifact", resp.content_length if resp.status_code in (200, 206) else 0)
    return resp


@endpoint("/components/<component>/releases/<version>/promote", methods=["POST"], roles=PUBLISHERS,
          body=PromoteBody, response=ReleaseOut, summary="Add a release to a channel", tag="releases")
def promote(principal: Principal, component: str, version: str, body: PromoteBody) -> ReleaseOut:
    release = services.get_release(db.session, component, version)
    outcome = _claimed_change(principal, release, "promote", body.tuf_role, {"channel": body.channel})
    if outcome is None:
        release = services.promote(db.session, release, body.channel)
    audit(db.session, principal.actor, "release.promote", f"release:{component}/{release.version}",
          {"channel": body.channel})
    db.commit()
    return release_out(release, outcome)


@endpoint("/components/<component>/releases/<version>/yank", methods=["POST"], roles=PUBLISHERS, body=YankBody,
          response=ReleaseOut, summary="Yank a release (never offered again)", tag="releases")
def yank(principal: Principal, component: str, version: str, body: YankBody) -> ReleaseOut:
    release = services.get_release(db.session, component, version)
    outcome = _claimed_change(principal, release, "yank", body.tuf_role, {"reason": body.reason})
    if outcome is None:
        release = services.yank(db.session, release, body.reason)
    audit(db.session, principal.actor, "release.yank", f"release:{component}/{release.version}",
          {"reason": body.reason})
    db.commit()
    return release_out(release, outcome)


def _claimed_change(principal: Principal, release: Release, action: str, role: dict | None,
                    params: dict) -> claims.Outcome | None:
    """A claimed component's yank/unyank/promote: only with its publishers' signed role (None: not claimed)."""
    if not (tuf.repository_ready(db.session) and claims.is_claimed(db.session, release.component.name)):
        if role is not None:
            raise ValidationError(f"component {release.component.name!r} is not claimed", field="tuf_role")
        return None
    if role is None:
        raise ValidationError(f"component {release.component.name!r} is claimed: a {action} is signed by its "
                              f"publishers (release-server {action} --sign-with KEY)", field="tuf_role")
    if action == "promote":
        services.get_channel(db.session, params["channel"])
    return claims.submit(db.session, release.component.name, action, role, actor=principal.actor, release=release,
                         params=params)


@endpoint("/components/<component>/releases/<version>/unyank", methods=["POST"], roles=PUBLISHERS,
          response=ReleaseOut, summary="Undo a yank (JSON body with 'tuf_role' for a claimed component)",
          tag="releases")
def unyank(principal: Principal, component: str, version: str) -> ReleaseOut:
    release = services.get_release(db.session, component, version)
    role = parse_json_body(UnyankBody).tuf_role if request.is_json and request.content_length else None
    outcome = _claimed_change(principal, release, "unyank", role, {})
    if outcome is None:
        release = services.unyank(db.session, release)
    audit(db.session, principal.actor, "release.unyank", f"release:{component}/{release.version}")
    db.commit()
    return release_out(release, outcome)


@endpoint("/components/<component>/changelog", roles=STAFF, query=ChangelogQuery, response=CombinedChangelog,
          summary="Combined changelog of the releases after 'from' up to 'to', newest first", tag="releases")
def combined_changelog(principal: Principal, component: str, query: ChangelogQuery) -> CombinedChangelog:
    comp, rows = services.combined_changelog(db.session, component, query.from_version, query.to_version)
    entries = [ChangelogEntry(version=r.version, created_at=r.created_at, critical=r.critical, yanked=r.yanked,
                              changelog=r.changelog, changelog_html=r.changelog_html)
               for r in rows]
    md = "\n\n".join(f"## {e.version}\n\n{e.changelog}".rstrip() for e in entries)
    html = services.combined_changelog_html([(e.version, e.changelog_html) for e in entries])
    return CombinedChangelog(component=comp.name, from_version=query.from_version, to_version=query.to_version,
                             entries=entries, markdown=md, html=html)
