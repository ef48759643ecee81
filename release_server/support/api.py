"""Support API: tickets and their timeline, attachments, failure groups, inbound mail, customer users.

Staff (admin, support) see and change every ticket. Customer users (``rsc_`` tokens) and
installations (their own ``rsi_`` token) see and open only their own customer's tickets;
a ticket they may not see answers 404 like one that does not exist.
"""
from __future__ import annotations

from urllib.parse import quote

from flask import Response, current_app, jsonify, request

from .. import metrics
from ..api import STAFF, SUPPORT, endpoint, error_response
from ..accounts.models import User
from ..db import db
from ..downloads import blob_response
from ..errors import NotFoundError, ReleaseServerError, ValidationError
from ..fleet import services as fleet_services
from ..storage import get_storage
from . import customers, failures, fixes, mailin, services
from .errors import AttachmentTooLargeError
from .models import FailureGroup, MailMessage, Ticket, TicketAttachment
from .schemas import (AttachmentList, AttachmentOut, DepartmentBody, ReviewBody, CustomerFiguresOut, CustomerSpanOut, CustomerTokenCreate,
                      CustomerTokenOut, CustomerUserCreate, CustomerUserOut, EventOut, FailureGroupList,
                      FailureGroupOut, FailureGroupQuery, FixLinkBody, FixRefOut, GroupFixStatusOut, GroupSpanOut,
                      InstallationFixOut, MailIngestOut, MergeBody, ReleaseFixesOut, SpanOut, TextBody, TicketCreate,
                      TicketDetail, TicketList, TicketOut, TicketPatch, TicketQuery)

CUSTOMER_SIDE = frozenset({"customer", "installation"})
#: Content types a browser could render or run: always served as opaque bytes.
ACTIVE_TYPES = ("text/html", "application/xhtml+xml", "image/svg+xml", "text/xml", "application/xml",
                "text/javascript", "application/javascript")


# ---------------------------------------------------------------- output shapes

def ticket_out(t: Ticket) -> TicketOut:
    return TicketOut(**_ticket_fields(t))


def _ticket_fields(t: Ticket) -> dict:
    session = db.session
    assignee = session.get(User, t.assignee_id) if t.assignee_id else None
    previous = session.get(Ticket, t.previous_ticket_id) if t.previous_ticket_id else None
    merged = session.get(Ticket, t.merged_into_id) if t.merged_into_id else None
    return dict(number=t.number, kind=t.kind, subject=t.subject, status=t.status, priority=t.priority,
                customer=t.customer.name if t.customer else None, requester_email=t.requester_email,
                assignee=assignee.username if assignee else None, source=t.source, internal=t.internal,
                regression=t.regression, installation_id=t.installation_id, release_id=t.release_id,
                failure_group_id=t.failure_group_id, previous_ticket=previous.number if previous else None,
                merged_into=merged.number if merged else None, created_at=t.created_at, updated_at=t.updated_at,
                processed_at=t.processed_at, closed_at=t.closed_at, department=t.department, review=t.review,
                review_reason=t.review_reason)


def attachment_out(t: Ticket, a: TicketAttachment) -> AttachmentOut:
    return AttachmentOut(id=a.id, filename=a.filename, content_type=a.content_type, size=a.size, sha256=a.sha256,
                         public=a.public, uploaded_by=a.uploaded_by, created_at=a.created_at,
                         url=f"/api/v1/tickets/{t.number}/attachments/{a.id}")


def ticket_detail(t: Ticket, actor: services.Actor) -> TicketDetail:
    """A ticket as ``actor`` may see it; every response that returns a ticket goes through here."""
    services.require_visible(t, actor)
    session = db.session
    events = [EventOut.model_validate(e, from_attributes=True) for e in services.timeline(session, t, actor)]
    atts = [attachment_out(t, a) for a in services.attachments_of(session, t, actor)]
    return TicketDetail(**_ticket_fields(t), description=t.description,
                        failure_groups=services.linked_groups(session, t) if actor.staff else [],
                        timeline=events, attachments=atts,
                        fixed_by=[FixRefOut(component=f.component, version=f.version)
                                  for f in fixes.fixes_of_ticket(session, t)])


def group_out(g: FailureGroup, s: failures.GroupStats) -> FailureGroupOut:
    return FailureGroupOut(id=g.id, fingerprint=g.fingerprint, component=g.component, target_version=g.target_version,
                           stage=g.stage, error_code=g.error_code, message_pattern=g.message_pattern,
                           sample_message=g.sample_message, reports=s.reports, rolled_back=s.rolled_back,
                           failed=s.failed, installations=s.installations, customers=s.customers, tickets=s.tickets,
                           regressions=g.regressions, first_seen_at=s.first_seen_at or g.first_seen_at,
                           last_seen_at=s.last_seen_at, state=g.state, resolved_in_version=g.resolved_in_version,
                           fixed_by=[FixRefOut(component=c, version=v)
                                     for c, v, _at, _by in fixes.fixes_of_group(db.session, g.id)])


# ---------------------------------------------------------------- tickets

@endpoint("/tickets", methods=["POST"], roles=SUPPORT | CUSTOMER_SIDE, body=TicketCreate, response=TicketDetail,
          status=201, summary="Open a ticket (customers and installations: for their own customer)", tag="support")
def create_ticket(principal, body: TicketCreate) -> TicketDetail:  # noqa: ANN001
    actor = services.actor_of(principal)
    session = db.session
    if actor.staff:
        customer = fleet_services.get_customer(session, body.customer) if body.customer else None
        requester, source, installation = body.requester_email, body.source, body.installation_id
        if source == "phone" and not (requester or customer):
            raise ValidationError("a request taken by phone names the contact (requester_email) or the customer",
                                  field="requester_email")
    else:
        if body.source != "api":
            raise ValidationError("only staff register requests received by phone", field="source")
        customer = fleet_services.get_customer(session, actor.customer_id)
        if actor.kind == "installation":
            requester = customers.installation_requester(session, customer, body.requester_email)
        else:
            requester = actor.email or customer.contact_email
        source = "agent" if actor.kind == "installation" else "api"
        installation = actor.installation_id or body.installation_id
    if requester:
        requester = customers.check_email(requester, "requester_email")
    ticket = services.create_ticket(session, actor, subject=body.subject, description=body.description,
                                    kind=body.kind, priority=body.priority, customer=customer,
                                    requester_email=requester, requester_name=body.requester_name, source=source,
                                    installation_id=installation)
    db.commit()
    return ticket_detail(ticket, actor)


@endpoint("/tickets", roles=SUPPORT | {"customer"}, query=TicketQuery, response=TicketList,
          summary="List and search tickets", tag="support")
def list_tickets(principal, query: TicketQuery) -> TicketList:  # noqa: ANN001
    statuses = query.status if isinstance(query.status, list) else ([query.status] if query.status else [])
    flt = services.TicketFilter(number=query.number, status=statuses, kind=query.kind, customer=query.customer,
                                unassigned_queue=query.queue == "unassigned", assignee=query.assignee,
                                source=query.source, failure_group=query.failure_group,
                                department=query.department, q=query.q,
                                page=query.page, per_page=query.per_page)
    rows, total = services.list_tickets(db.session, services.actor_of(principal), flt)
    return TicketList(items=[ticket_out(t) for t in rows], total=total, page=query.page, per_page=query.per_page)


@endpoint("/tickets/<number>", roles=SUPPORT | CUSTOMER_SIDE, response=TicketDetail,
          summary="One ticket with its timeline (customers: public entries only)", tag="support")
def get_ticket(principal, number: str) -> TicketDetail:  # noqa: ANN001
    actor = services.actor_of(principal)
    return ticket_detail(services.get_ticket(db.session, number, actor), actor)


@endpoint("/tickets/<number>", methods=["PATCH"], roles=SUPPORT, body=TicketPatch, response=TicketDetail,
          summary="Change status (with a comment), kind, priority, assignee, customer or subject", tag="support")
def update_ticket(principal, number: str, body: TicketPatch) -> TicketDetail:  # noqa: ANN001
    actor = services.actor_of(principal)
    ticket = services.get_ticket(db.session, number, actor)
    services.update_ticket(db.session, ticket, actor, body.model_dump(exclude_unset=True))
    db.commit()
    return ticket_detail(ticket, actor)


@endpoint("/tickets/<number>/replies", methods=["POST"], roles=SUPPORT | {"customer"}, body=TextBody,
          response=TicketDetail, status=201,
          summary="A public message (staff: mailed to the requester; customer: may reopen)", tag="support")
def reply(principal, number: str, body: TextBody) -> TicketDetail:  # noqa: ANN001
    actor = services.actor_of(principal)
    ticket = services.get_ticket(db.session, number, actor)
    if actor.staff:
        services.staff_reply(db.session, ticket, actor, body.body)
    else:
        ticket, _ = services.customer_message(db.session, ticket, actor, body.body)
    db.commit()
    return ticket_detail(ticket, actor)


@endpoint("/tickets/<number>/department", methods=["POST"], roles=SUPPORT, body=DepartmentBody,
          response=TicketDetail, summary="Escalate to development, or hand back to support (on the timeline)",
          tag="support")
def set_department(principal, number: str, body: DepartmentBody) -> TicketDetail:  # noqa: ANN001
    actor = services.actor_of(principal)
    ticket = services.get_ticket(db.session, number, actor)
    services.set_department(db.session, ticket, actor, body.department, body.note)
    db.commit()
    return ticket_detail(ticket, actor)


@endpoint("/tickets/<number>/review", methods=["POST"], roles=SUPPORT, body=ReviewBody, response=TicketDetail,
          summary="Review a development request: accepted, or declined with a reason (the customer is told)",
          tag="support")
def review_request(principal, number: str, body: ReviewBody) -> TicketDetail:  # noqa: ANN001
    actor = services.actor_of(principal)
    ticket = services.get_ticket(db.session, number, actor)
    services.review_request(db.session, ticket, actor, body.outcome, body.reason)
    db.commit()
    return ticket_detail(ticket, actor)


@endpoint("/tickets/<number>/notes", methods=["POST"], roles=SUPPORT, body=TextBody, response=TicketDetail,
          status=201, summary="An internal note (never shown to the customer)", tag="support")
def note(principal, number: str, body: TextBody) -> TicketDetail:  # noqa: ANN001
    actor = services.actor_of(principal)
    ticket = services.get_ticket(db.session, number, actor)
    services.add_note(db.session, ticket, actor, body.body)
    db.commit()
    return ticket_detail(ticket, actor)


@endpoint("/tickets/<number>/request-info", methods=["POST"], roles=SUPPORT, body=TextBody, response=TicketDetail,
          summary="Ask the customer for clarification or logs (waiting for customer; mails the requester)",
          tag="support")
def request_info(principal, number: str, body: TextBody) -> TicketDetail:  # noqa: ANN001
    actor = services.actor_of(principal)
    ticket = services.get_ticket(db.session, number, actor)
    services.request_information(db.session, ticket, actor, body.body)
    db.commit()
    return ticket_detail(ticket, actor)


@endpoint("/tickets/<number>/merge", methods=["POST"], roles=SUPPORT, body=MergeBody, response=TicketDetail,
          summary="Merge this duplicate into another ticket", tag="support")
def merge(principal, number: str, body: MergeBody) -> TicketDetail:  # noqa: ANN001
    actor = services.actor_of(principal)
    source = services.get_ticket(db.session, number, actor)
    target = services.merge(db.session, source, services.get_ticket(db.session, body.into, actor), actor)
    db.commit()
    return ticket_detail(target, actor)


# ---------------------------------------------------------------- attachments

@endpoint("/tickets/<number>/attachments", methods=["POST"], roles=SUPPORT | CUSTOMER_SIDE, response=AttachmentList,
          status=201, multipart={"file": {"type": "string", "format": "binary"}},
          summary="Attach files (multipart parts named 'file'; staff may send internal=true)", tag="support")
def upload_attachments(principal, number: str) -> AttachmentList:  # noqa: ANN001
    actor = services.actor_of(principal)
    limit = int(current_app.config["MAX_ATTACHMENT_SIZE"])
    if request.content_length is not None and request.content_length > limit + 1024 * 1024:
        raise AttachmentTooLargeError("(request body)", request.content_length, limit)
    ticket = services.get_ticket(db.session, number, actor)
    if request.mimetype != "multipart/form-data":
        raise ReleaseServerError("attachments are sent as multipart/form-data with parts named 'file'",
                                 status=415, code="unsupported_media_type", field="body")
    uploads = request.files.getlist("file")
    if not uploads:
        raise ValidationError("the 'file' part is missing", field="file")
    public = not (actor.staff and request.form.get("internal", "").lower() in ("1", "true", "yes"))
    stored = services.attach_uploads(db.session, get_storage(), ticket, actor, uploads, public=public)
    db.commit()
    return AttachmentList(items=[attachment_out(ticket, a) for a in stored])


@endpoint("/tickets/<number>/attachments/<int:attachment_id>", roles=SUPPORT | CUSTOMER_SIDE, binary=True,
          summary="Download an attachment (always as a download, never rendered)", tag="support")
def download_attachment(principal, number: str, attachment_id: int) -> Response:  # noqa: ANN001
    actor = services.actor_of(principal)
    ticket = services.get_ticket(db.session, number, actor)
    att = services.get_attachment(db.session, ticket, attachment_id, actor)
    ctype = att.content_type.split(";")[0].strip().lower()
    mimetype = "application/octet-stream" if ctype in ACTIVE_TYPES or "/" not in ctype else ctype
    return blob_download(att.blob_key, att.size, att.filename, mimetype, att.sha256)


def blob_download(key: str, size: int, filename: str, mimetype: str, etag: str) -> Response:
    resp = blob_response(key, size=size, etag=etag, mimetype=mimetype)
    ascii_name = filename.encode("ascii", "replace").decode().replace('"', "_").replace("?", "_")
    resp.headers["Content-Disposition"] = f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}"
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    metrics.count_bytes("attachment", resp.content_length if resp.status_code in (200, 206) else 0)
    return resp


# ---------------------------------------------------------------- failure groups

@endpoint("/failure-groups", roles=STAFF, query=FailureGroupQuery, response=FailureGroupList,
          summary="Failure groups (reports with one fingerprint), most recently seen first", tag="support")
def list_failure_groups(principal, query: FailureGroupQuery) -> FailureGroupList:  # noqa: ANN001
    rows, total = failures.list_groups(db.session, component=query.component, version=query.version,
                                       limit=query.limit, offset=query.offset)
    stats = failures.stats(db.session, [g.id for g in rows])
    return FailureGroupList(items=[group_out(g, stats[g.id]) for g in rows], total=total)


@endpoint("/failure-groups/<int:group_id>", roles=STAFF, response=FailureGroupOut,
          summary="One failure group with its counts", tag="support")
def get_failure_group(principal, group_id: int) -> FailureGroupOut:  # noqa: ANN001
    group = failures.get_group(db.session, group_id)
    return group_out(group, failures.stats(db.session, [group.id])[group.id])


@endpoint("/failure-groups/<int:group_id>/fix-status", roles=STAFF, response=GroupFixStatusOut,
          summary="Where the fix of a failure group stands: each affected installation, and the time to fix",
          tag="support")
def group_fix_status(principal, group_id: int) -> GroupFixStatusOut:  # noqa: ANN001
    group = failures.get_group(db.session, group_id)
    figs = fixes.figures(db.session, group.id)
    rows = fixes.status_rows(db.session, group.id, None)
    return GroupFixStatusOut(
        group_id=group.id, state=group.state, resolved_in_version=group.resolved_in_version,
        fixed_by=[FixRefOut(component=c, version=v) for c, v, _at, _by in fixes.fixes_of_group(db.session, group.id)],
        installations=[InstallationFixOut(installation_id=r.installation_id, name=r.name, customer=r.customer,
                                          state=r.state, first_failed_at=r.first_failed_at, fixed_at=r.fixed_at,
                                          fixed_version=r.fixed_version, running=r.running, health=r.health)
                       for r in rows],
        figures=SpanOut(**figs.overall.as_dict()),
        customers=[CustomerSpanOut(customer=name, **span.as_dict()) for name, span in sorted(figs.customers.items())])


@endpoint("/customers/<customer>/fix-figures", roles=STAFF, response=CustomerFiguresOut,
          summary="Time from first failure to fix published, installed and ticket processed, per group of a customer",
          tag="support")
def customer_fix_figures(principal, customer: str) -> CustomerFiguresOut:  # noqa: ANN001
    cust = fleet_services.get_customer(db.session, customer)
    items = []
    for gid, span in fixes.customer_figures(db.session, cust):
        group = db.session.get(FailureGroup, gid)
        items.append(GroupSpanOut(group_id=gid, component=group.component, target_version=group.target_version,
                                  **span.as_dict()))
    return CustomerFiguresOut(customer=cust.name, items=items)


def _release_fixes_out(release) -> ReleaseFixesOut:  # noqa: ANN001
    from ..rollouts.services import restrictions_of

    links = fixes.of_release(db.session, release)
    return ReleaseFixesOut(component=release.component.name, version=release.version,
                           tickets=[t.number for t in links.tickets], groups=links.group_ids,
                           restricted_installations=restrictions_of(db.session, release)["installations"])


@endpoint("/components/<component>/releases/<version>/fixes", methods=["POST"], roles=STAFF, body=FixLinkBody,
          response=ReleaseFixesOut, summary="Name tickets and failure groups a published release fixes (audited); "
          "optionally restrict it to the affected installations", tag="support")
def link_fixes(principal, component: str, version: str, body: FixLinkBody) -> ReleaseFixesOut:  # noqa: ANN001
    from ..releases.services import get_release

    release = get_release(db.session, component, version)
    plan = fixes.resolve(db.session, release.component, body.tickets, body.groups)
    if not plan:
        raise ValidationError("name at least one ticket or failure group", field="tickets")
    fixes.fix_for_affected(db.session, release, plan, principal.actor, restrict=body.restrict_to_affected)
    db.commit()
    return _release_fixes_out(release)


@endpoint("/components/<component>/releases/<version>/fixes/unlink", methods=["POST"], roles=STAFF,
          body=FixLinkBody, response=ReleaseFixesOut,
          summary="Take back tickets and failure groups a release was said to fix (audited)", tag="support")
def unlink_fixes(principal, component: str, version: str, body: FixLinkBody) -> ReleaseFixesOut:  # noqa: ANN001
    from ..releases.services import get_release

    release = get_release(db.session, component, version)
    plan = fixes.resolve(db.session, release.component, body.tickets, body.groups)
    fixes.unlink(db.session, release, plan, principal.actor)
    db.commit()
    return _release_fixes_out(release)


@endpoint("/components/<component>/releases/<version>/fixes", roles=STAFF, response=ReleaseFixesOut,
          summary="The tickets and failure groups a release fixes", tag="support")
def release_fixes(principal, component: str, version: str) -> ReleaseFixesOut:  # noqa: ANN001
    from ..releases.services import get_release

    return _release_fixes_out(get_release(db.session, component, version))


# ---------------------------------------------------------------- mail

@endpoint("/support/mail", methods=["POST"], roles=SUPPORT, response=MailIngestOut, status=201,
          summary="Ingest one raw RFC 822 message (body: message/rfc822); used by 'release-server mailgate'",
          tag="support")
def ingest_mail(principal) -> Response | MailIngestOut:  # noqa: ANN001
    limit = int(current_app.config["MAX_MAIL_SIZE"])
    raw = request.stream.read(limit + 1)
    result = mailin.ingest(db.session, get_storage(), raw)
    db.commit()
    out = MailIngestOut(mail_id=result.mail_id, outcome=result.outcome, ticket=result.ticket,
                        auto_answer=result.auto_answer, detail=result.detail)
    if result.outcome == "unparseable":  # stored raw; 422 tells the mailgate not to retry (exit 65)
        return error_response(422, "unparseable_mail", f"not an e-mail message ({result.detail}); kept as "
                                                       f"mail {result.mail_id}", "message")
    if result.outcome == "duplicate":  # already stored earlier (an MTA retry): 200, not 201
        return jsonify(out.model_dump(mode="json"))
    return out


@endpoint("/support/mail/<int:mail_id>/raw", roles=SUPPORT, binary=True,
          summary="The raw inbound message as received", tag="support")
def raw_mail(principal, mail_id: int) -> Response:  # noqa: ANN001
    mail = db.session.get(MailMessage, mail_id)
    if mail is None or mail.blob_key is None:
        raise NotFoundError(f"no stored mail {mail_id}", field="mail_id")
    return blob_download(mail.blob_key, mail.size, f"mail-{mail.id}.eml", "application/octet-stream",
                         mail.blob_key.rsplit("/", 1)[-1])


# ---------------------------------------------------------------- customer users

def customer_user_out(u) -> CustomerUserOut:  # noqa: ANN001
    return CustomerUserOut(id=u.id, email=u.email, name=u.name, customer=u.customer.name, active=u.active,
                           created_at=u.created_at)


@endpoint("/customer-users", methods=["POST"], roles=SUPPORT, body=CustomerUserCreate, response=CustomerUserOut,
          status=201, summary="Create a customer user", tag="support")
def create_customer_user(principal, body: CustomerUserCreate) -> CustomerUserOut:  # noqa: ANN001
    from ..accounts.services import audit

    cust = fleet_services.get_customer(db.session, body.customer)
    user = customers.create_customer_user(db.session, cust, body.email, body.name, body.password)
    audit(db.session, principal.actor, "customer_user.create", f"customer-user:{user.email}", {"customer": cust.name})
    db.commit()
    return customer_user_out(user)


@endpoint("/customer-users/<int:user_id>/tokens", methods=["POST"], roles=SUPPORT, body=CustomerTokenCreate,
          response=CustomerTokenOut, status=201, summary="Issue an API token to a customer user (shown once)",
          tag="support")
def issue_customer_token(principal, user_id: int, body: CustomerTokenCreate) -> CustomerTokenOut:  # noqa: ANN001
    from ..accounts.services import audit

    user = customers.get_customer_user(db.session, user_id)
    token, secret = customers.issue_token(db.session, user, body.name, body.expires_at)
    audit(db.session, principal.actor, "customer_token.create", f"customer-token:{token.prefix}",
          {"customer_user": user.email})
    db.commit()
    return CustomerTokenOut(prefix=token.prefix, name=token.name, customer_user=user.email,
                            created_at=token.created_at, expires_at=token.expires_at, token=secret)
