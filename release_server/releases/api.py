"""Releases API: components, channels, publish, list, download, promote, yank, changelogs."""
from __future__ import annotations

import json

from flask import Response, current_app, redirect, request, send_file, url_for

from .. import metrics
from ..accounts.auth import Principal
from ..accounts.services import audit
from ..api import PUBLISHERS, STAFF, endpoint, parse_model
from ..db import db
from ..errors import ReleaseServerError, ValidationError
from ..storage import get_storage
from ..uploads import HashingSpoolFile
from . import services
from .models import Release
from .schemas import (FILENAME_RE, ChangelogEntry, ChangelogQuery, ChannelList, ChannelOut, CombinedChangelog,
                      ComponentList, ComponentOut, CreateChannel, CreateComponent, PromoteBody, PublishMetadata,
                      ReleaseOut, ReleasePage, ReleaseQuery, YankBody)


def release_out(r: Release) -> ReleaseOut:
    return ReleaseOut(
        component=r.component.name, version=r.version, channels=r.channel_names,
        artifact={"filename": r.artifact_filename, "sha256": r.artifact_sha256, "size": r.artifact_size},
        changelog=r.changelog, changelog_html=services.render_changelog(r.changelog), critical=r.critical,
        min_from_version=r.min_from_version, requires=r.requires or {}, created_by=r.created_by,
        created_at=r.created_at, yanked=r.yanked, yank_reason=r.yank_reason,
        download_url=url_for("api_v1.download_artifact", component=r.component.name, version=r.version))


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
    ch = services.create_channel(db.session, body.name, body.description)
    audit(db.session, principal.actor, "channel.create", f"channel:{ch.name}")
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
    if request.mimetype != "multipart/form-data":
        raise ReleaseServerError("publish expects multipart/form-data with parts 'metadata' and 'artifact'",
                                 status=415, code="unsupported_media_type", field="body")
    raw = request.form.get("metadata")
    if raw is None and "metadata" in request.files:  # sent as a file part (curl -F metadata=@meta.json)
        raw = request.files["metadata"].stream.read(2 * 1024 * 1024 + 1)
        if len(raw) > 2 * 1024 * 1024:
            raise ValidationError("the 'metadata' part is too large", field="metadata")
    if raw is None:
        raise ValidationError("the 'metadata' part is missing", field="metadata")
    try:
        data = json.loads(raw)
    except ValueError:
        raise ValidationError("the 'metadata' part is not valid JSON", field="metadata") from None
    metadata = parse_model(PublishMetadata, data)
    upload = request.files.get("artifact")
    if upload is None:
        raise ValidationError("the 'artifact' part is missing", field="artifact")
    filename = metadata.filename or (upload.filename or "").rsplit("/", 1)[-1]
    if not FILENAME_RE.match(filename or ""):
        raise ValidationError(f"artifact file name {filename!r} is not allowed (letters, digits, '.', '_', '+', '-')",
                              field="artifact")
    plan = services.plan_publish(db.session, component, metadata)

    spool = upload.stream
    if not isinstance(spool, HashingSpoolFile):  # pragma: no cover - only small in-memory parts
        raise ValidationError("the artifact must be sent as a file part", field="artifact")
    if spool.size == 0:
        raise services.EmptyArtifactError()
    spool.finish()
    storage = get_storage()
    blob = storage.put_file(spool.name, sha256=spool.sha256, size=spool.size, move=True)
    spool.claimed = True
    try:
        release = services.create_release(db.session, plan, blob, filename, principal.actor)
        audit(db.session, principal.actor, "release.publish", f"release:{component}/{release.version}",
              {"sha256": blob.sha256, "size": blob.size, "channels": metadata.channels})
        db.commit()
    except BaseException:
        db.rollback()
        services.discard_blob_if_unused(db.session, storage, blob.key)
        raise
    return release_out(release)


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
    local = storage.local_path(release.blob_key)
    if local is not None:
        resp = send_file(local, mimetype="application/octet-stream", as_attachment=True,
                         download_name=release.artifact_filename, conditional=True, etag=release.artifact_sha256)
        metrics.count_bytes("artifact", resp.content_length)
        return resp
    if cfg.get("S3_PRESIGNED_DOWNLOADS"):
        url = storage.presigned_url(release.blob_key, ttl=cfg["S3_PRESIGNED_TTL"],
                                    filename=release.artifact_filename)
        if url:
            return redirect(url, code=302)
    chunks = storage.iter_chunks(release.blob_key)
    resp = Response(chunks, mimetype="application/octet-stream", direct_passthrough=True)
    resp.headers["Content-Length"] = str(release.artifact_size)
    resp.headers["Content-Disposition"] = f'attachment; filename="{release.artifact_filename}"'
    resp.set_etag(release.artifact_sha256)
    metrics.count_bytes("artifact", release.artifact_size)
    return resp


@endpoint("/components/<component>/releases/<version>/promote", methods=["POST"], roles=PUBLISHERS,
          body=PromoteBody, response=ReleaseOut, summary="Add a release to a channel", tag="releases")
def promote(principal: Principal, component: str, version: str, body: PromoteBody) -> ReleaseOut:
    release = services.promote(db.session, services.get_release(db.session, component, version), body.channel)
    audit(db.session, principal.actor, "release.promote", f"release:{component}/{release.version}",
          {"channel": body.channel})
    db.commit()
    return release_out(release)


@endpoint("/components/<component>/releases/<version>/yank", methods=["POST"], roles=PUBLISHERS, body=YankBody,
          response=ReleaseOut, summary="Yank a release (never offered again)", tag="releases")
def yank(principal: Principal, component: str, version: str, body: YankBody) -> ReleaseOut:
    release = services.yank(db.session, services.get_release(db.session, component, version), body.reason)
    audit(db.session, principal.actor, "release.yank", f"release:{component}/{release.version}",
          {"reason": body.reason})
    db.commit()
    return release_out(release)


@endpoint("/components/<component>/releases/<version>/unyank", methods=["POST"], roles=PUBLISHERS,
          response=ReleaseOut, summary="Undo a yank", tag="releases")
def unyank(principal: Principal, component: str, version: str) -> ReleaseOut:
    release = services.unyank(db.session, services.get_release(db.session, component, version))
    audit(db.session, principal.actor, "release.unyank", f"release:{component}/{release.version}")
    db.commit()
    return release_out(release)


@endpoint("/components/<component>/changelog", roles=STAFF, query=ChangelogQuery, response=CombinedChangelog,
          summary="Combined changelog of the releases after 'from' up to 'to', newest first", tag="releases")
def combined_changelog(principal: Principal, component: str, query: ChangelogQuery) -> CombinedChangelog:
    comp, rows = services.combined_changelog(db.session, component, query.from_version, query.to_version)
    entries = [ChangelogEntry(version=r.version, created_at=r.created_at, critical=r.critical, yanked=r.yanked,
                              changelog=r.changelog, changelog_html=services.render_changelog(r.changelog))
               for r in rows]
    md = "\n\n".join(f"## {e.version}\n\n{e.changelog}".rstrip() for e in entries)
    return CombinedChangelog(component=comp.name, from_version=query.from_version, to_version=query.to_version,
                             entries=entries, markdown=md, html=services.render_changelog(md))
