"""Fleet API: customers, enrollment, installations and update reports."""
from __future__ import annotations

import uuid

from flask import current_app, request

from .. import metrics
from ..accounts.services import audit
from ..api import STAFF, SUPPORT, endpoint
from ..db import db
from ..rollouts.catalog import bump_auth
from . import services
from .auth import InstallationPrincipal
from .models import EnrollmentToken, Installation
from .schemas import (CreateCustomer, CreateEnrollmentToken, CustomerList, CustomerOut, EnrollmentTokenOut,
                      EnrollRequest, EnrollResponse, InstallationList, InstallationOut, InstallationQuery, ReportAck,
                      ReportBatch, ReportList, ReportOut, UpdateInstallation)

ADMIN_SUPPORT = SUPPORT


def installation_out(inst: Installation) -> InstallationOut:
    return InstallationOut(
        id=inst.id, customer=inst.customer.name, name=inst.name, hostname=inst.hostname, platform=inst.platform,
        agent_version=inst.agent_version, channel=inst.channel, tags=inst.tags or [],
        maintenance_window=inst.maintenance_window, state=inst.state, health=services.health_of(inst),
        versions=inst.versions, enrolled_at=inst.enrolled_at, last_seen_at=inst.last_seen_at,
        revoked=inst.revoked_at is not None)


def enrollment_out(t: EnrollmentToken, secret: str | None = None) -> EnrollmentTokenOut:
    return EnrollmentTokenOut(prefix=t.prefix, customer=t.customer.name, max_uses=t.max_uses, uses=t.uses,
                              expires_at=t.expires_at, revoked_at=t.revoked_at, token=secret)


@endpoint("/customers", methods=["POST"], roles=ADMIN_SUPPORT, body=CreateCustomer, response=CustomerOut,
          status=201, summary="Create a customer", tag="fleet")
def create_customer(principal, body: CreateCustomer) -> CustomerOut:  # noqa: ANN001
    c = services.create_customer(db.session, body.name, body.contact_email, body.mail_domains)
    audit(db.session, principal.actor, "customer.create", f"customer:{c.id}", {"name": c.name})
    db.commit()
    return CustomerOut.model_validate(c, from_attributes=True)


@endpoint("/customers", roles=STAFF, response=CustomerList, summary="List customers", tag="fleet")
def list_customers(principal) -> CustomerList:  # noqa: ANN001
    return CustomerList(items=[CustomerOut.model_validate(c, from_attributes=True)
                               for c in services.list_customers(db.session)])


@endpoint("/customers/<customer>/enrollment-tokens", methods=["POST"], roles=ADMIN_SUPPORT,
          body=CreateEnrollmentToken, response=EnrollmentTokenOut, status=201,
          summary="Create an enrollment token for a customer (secret shown once)", tag="fleet")
def create_enrollment_token(principal, customer: str, body: CreateEnrollmentToken) -> EnrollmentTokenOut:  # noqa
    cust = services.get_customer(db.session, customer)
    token, secret = services.create_enrollment_token(db.session, cust, actor=principal.actor,
                                                     max_uses=body.max_uses, expires_at=body.expires_at)
    audit(db.session, principal.actor, "enrollment.create", f"enrollment:{token.prefix}",
          {"customer": cust.name, "max_uses": body.max_uses})
    db.commit()
    return enrollment_out(token, secret)


@endpoint("/customers/<customer>/enrollment-tokens", roles=ADMIN_SUPPORT,
          summary="List a customer's enrollment tokens", tag="fleet")
def list_enrollment_tokens(principal, customer: str) -> dict:  # noqa: ANN001
    cust = services.get_customer(db.session, customer)
    return {"items": [enrollment_out(t).model_dump(mode="json")
                      for t in services.list_enrollment_tokens(db.session, cust)]}


@endpoint("/enrollment-tokens/<prefix>", methods=["DELETE"], roles=ADMIN_SUPPORT, response=EnrollmentTokenOut,
          summary="Revoke an enrollment token", tag="fleet")
def revoke_enrollment_token(principal, prefix: str) -> EnrollmentTokenOut:  # noqa: ANN001
    t = services.revoke_enrollment_token(db.session, prefix)
    audit(db.session, principal.actor, "enrollment.revoke", f"enrollment:{prefix}")
    db.commit()
    return enrollment_out(t)


def trusted_root() -> dict | None:
    """The TUF root an agent bootstraps from, or None while the repository is not set up."""
    import json

    from ..signing import services as signing_services

    if not signing_services.repository_ready(db.session):
        return None
    return json.loads(signing_services.trusted_root_json(db.session))


@endpoint("/enroll", methods=["POST"], roles={"public"}, body=EnrollRequest, response=EnrollResponse, status=201,
          summary="Register an installation with an enrollment token", tag="agent")
def enroll(principal, body: EnrollRequest) -> EnrollResponse:  # noqa: ANN001
    inst, secret = services.enroll(db.session, body)
    audit(db.session, f"installation:{inst.id}", "installation.enroll", f"installation:{inst.id}",
          {"customer": inst.customer.name, "name": inst.name})
    db.commit()
    base = request.host_url.rstrip("/")
    return EnrollResponse(installation_id=inst.id, token=secret, customer=inst.customer.name, channel=inst.channel,
                          root_json=trusted_root(), tuf_metadata_url=f"{base}/tuf/metadata/",
                          tuf_targets_url=f"{base}/tuf/targets/",
                          poll_interval=current_app.config["POLL_INTERVAL_SECONDS"],
                          unknown_components=services.unknown_components(db.session, body.components))


@endpoint("/reports", methods=["POST"], roles={"installation"}, body=ReportBatch, response=ReportAck,
          summary="Store update reports (idempotent by report id)", tag="agent")
def post_reports(principal: InstallationPrincipal, body: ReportBatch) -> ReportAck:
    inst = services.get_installation(db.session, principal.installation_id)
    accepted, duplicates = services.store_reports(db.session, inst, body.reports)
    db.commit()
    accepted_ids = set(accepted)
    for report in body.reports:
        metrics.count_report(report.outcome if str(uuid.UUID(report.id)) in accepted_ids else "duplicate")
    return ReportAck(accepted=accepted, duplicates=duplicates)


@endpoint("/installations", roles=STAFF, query=InstallationQuery, response=InstallationList,
          summary="List installations with filters", tag="fleet")
def list_installations(principal, query: InstallationQuery) -> InstallationList:  # noqa: ANN001
    rows, total = services.list_installations(
        db.session, customer=query.customer, health=query.health, component=query.component,
        version=query.version, tag=query.tag, page=query.page, per_page=query.per_page)
    return InstallationList(items=[installation_out(i) for i in rows], total=total)


@endpoint("/installations/<installation_id>", roles=STAFF, response=InstallationOut,
          summary="Get one installation", tag="fleet")
def get_installation(principal, installation_id: str) -> InstallationOut:  # noqa: ANN001
    return installation_out(services.get_installation(db.session, installation_id))


@endpoint("/installations/<installation_id>", methods=["PATCH"], roles=ADMIN_SUPPORT | {"publisher"},
          body=UpdateInstallation, response=InstallationOut, summary="Change an installation's channel, tags, "
                                                                      "window or name", tag="fleet")
def update_installation(principal, installation_id: str, body: UpdateInstallation) -> InstallationOut:  # noqa
    inst = services.get_installation(db.session, installation_id)
    given = body.model_dump(exclude_unset=True)
    if "maintenance_window" in given and given["maintenance_window"] is None:
        given["maintenance_window"] = ""  # null clears the window
    changes = services.update_installation(db.session, inst, services.InstallationSettings(**given))
    audit(db.session, principal.actor, "installation.update", f"installation:{inst.id}", changes)
    db.commit()
    return installation_out(inst)


@endpoint("/installations/<installation_id>/revoke", methods=["POST"], roles=ADMIN_SUPPORT,
          response=InstallationOut, summary="Revoke an installation's token", tag="fleet")
def revoke_installation(principal, installation_id: str) -> InstallationOut:  # noqa: ANN001
    inst = services.revoke_installation(db.session, installation_id)
    bump_auth(db.session, inst.id)
    audit(db.session, principal.actor, "installation.revoke", f"installation:{inst.id}")
    db.commit()
    return installation_out(inst)


@endpoint("/installations/<installation_id>/reports", roles=STAFF, response=ReportList,
          summary="An installation's update reports, newest first", tag="fleet")
def installation_reports(principal, installation_id: str) -> ReportList:  # noqa: ANN001
    services.get_installation(db.session, installation_id)
    rows = services.list_reports(db.session, installation_id=installation_id)
    return ReportList(items=[ReportOut.model_validate(r, from_attributes=True) for r in rows])
