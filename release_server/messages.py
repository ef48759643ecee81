"""Texts the system writes, stored as a message code with parameters and rendered in the reader's language.

A ticket subject written for a failed update, a timeline entry, a halt reason, an audit
action or a mail body is not stored as English prose: the writer stores a
:class:`Message` (a code from :data:`CATALOGUE` and JSON parameters, in the row's
``*_code``/``*_params`` columns) and each reader gets it rendered in their own language
when the text is shown or mailed, the way Django's ``gettext_lazy`` and Zammad's
notification templates work. The English rendering is kept in the row's text column too,
so search, the API and older clients read a sentence, and rows written before the codes
existed (text only) still display as they are.

Parameters are plain JSON. A value that itself needs the reader's language is a tagged
object made by the helpers here: :func:`size` (a file size in the reader's units),
:func:`pct` (a share), :func:`label` (a word from a label table, e.g. a ticket status),
:func:`when` (a moment, shown in the reader's time zone) and a nested :class:`Message`.

This module sits one floor below the domain packages: services import it to *write*
messages, the web layer and the mail outbox to *render* them. It imports only Flask-Babel.
Its strings are extracted with the ``_l`` keyword like the web package's.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flask import has_app_context
from flask_babel import force_locale, gettext, lazy_gettext as _l

LANGUAGES: dict[str, str] = {"en": "English", "ru": "Русский"}
DEFAULT_LANGUAGE = "en"


@dataclass(frozen=True)
class Message:
    """A code from the catalogue and its parameters; render it with :func:`render`."""

    code: str
    params: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "params": dict(self.params)}

    def __str__(self) -> str:  # the English rendering, for logs and the text columns
        return render(self, "en")


def M(code: str, /, **params: Any) -> Message:  # noqa: N802 - reads like a constructor at call sites
    """A message of ``code`` with ``params`` (checked against the catalogue)."""
    if code not in CATALOGUE:
        raise KeyError(f"unknown message code {code!r}")
    return Message(code, {k: _json(v) for k, v in params.items()})


def _json(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_json(v) for v in value]
    if isinstance(value, Message):
        return {"$": "msg", "code": value.code, "params": value.params}
    if isinstance(value, datetime):
        return when(value)
    return value


# ---------------------------------------------------------------- parameter helpers

def size(n: int | None) -> dict[str, Any]:
    return {"$": "size", "v": n}


def pct(x: float | None) -> dict[str, Any]:
    return {"$": "pct", "v": x}


def label(table: str, value: Any) -> dict[str, Any]:
    return {"$": "label", "t": table, "v": value}


def when(moment: datetime | None) -> dict[str, Any]:
    return {"$": "dt", "v": moment.isoformat() if moment is not None else None}


# ---------------------------------------------------------------- label tables (words used on many pages)

KIND_LABELS = {"incident": _l("Incident"), "problem": _l("Problem"), "service": _l("Service request"),
               "development": _l("Development request")}
STATUS_LABELS = {"new": _l("New"), "in_progress": _l("In progress"), "waiting_for_customer": _l("Waiting for customer"),
                 "processed": _l("Processed"), "closed": _l("Closed")}
PRIORITY_LABELS = {"low": _l("Low"), "normal": _l("Normal"), "high": _l("High"), "urgent": _l("Urgent")}
SOURCE_LABELS = {"mail": _l("E-mail"), "portal": _l("Customer portal"), "agent": _l("Installation agent"),
                 "api": _l("API"), "failure_report": _l("Failure report"), "phone": _l("Phone")}
DEPARTMENT_LABELS = {"support": _l("Support"), "development": _l("Development")}
REVIEW_LABELS = {"accepted": _l("Accepted"), "declined": _l("Declined")}
OUTCOME_LABELS = {"success": _l("Success"), "rolled_back": _l("Rolled back"), "failed": _l("Failed"),
                  "refused": _l("Refused"), "operator_rollback": _l("Rolled back by an operator")}
ROLLOUT_LABELS = {"draft": _l("Draft"), "running": _l("Running"), "paused": _l("Paused"), "halted": _l("Halted"),
                  "completed": _l("Completed")}
GROUP_STATE_LABELS = {"unresolved": _l("Unresolved"), "resolved": _l("Resolved"), "ignored": _l("Ignored")}
FIX_STATE_LABELS = {"fixed": _l("Fix installed"), "waiting": _l("Waiting for the fix"),
                    "failing": _l("Failing"), "stale": _l("Not seen lately")}
TUF_ROLE_LABELS = {"root": _l("Root (trust anchor)"), "targets": _l("Targets (what may be installed)"),
                   "snapshot": _l("Snapshot (consistent versions)"), "timestamp": _l("Timestamp (freshness)")}
FIELD_LABELS = {"kind": _l("Kind"), "priority": _l("Priority"), "assignee": _l("Assignee"),
                "customer": _l("Customer"), "subject": _l("Subject"), "status": _l("Status"),
                "comment": _l("Comment"), "release": _l("Release"), "channel": _l("Channel"),
                "percent": _l("Share"), "reason": _l("Reason"), "filename": _l("File"), "size": _l("Size"),
                "into": _l("Merged into"), "source": _l("Source"), "name": _l("Name"), "email": _l("E-mail"),
                "role": _l("Role"), "version": _l("Version"), "component": _l("Component"),
                "state": _l("State"), "tags": _l("Tags"), "customer_id": _l("Customer"),
                "installation": _l("Installation"), "max_uses": _l("Uses allowed"), "expires_at": _l("Expires"),
                "yanked": _l("Yanked"), "critical": _l("Critical"), "username": _l("User name"),
                "locale": _l("Language"), "timezone": _l("Time zone"),
                "in_version": _l("In version"), "cc": _l("Copies (CC)"),
                "maintenance_window": _l("Maintenance window"), "title": _l("Title"), "scope": _l("Pin for"),
                "pin": _l("Pinned to"), "value": _l("For")}
SIGNING_ACTION_LABELS = {"publish": _l("Publication"), "yank": _l("Withdrawal"), "unyank": _l("Restoration"),
                         "promote": _l("Promotion"), "renew": _l("Renewal"), "keys": _l("Change of keys"),
                         "claim": _l("Claim")}
LABEL_TABLES: dict[str, Mapping[Any, Any]] = {
    "kind": KIND_LABELS, "status": STATUS_LABELS, "priority": PRIORITY_LABELS, "source": SOURCE_LABELS,
    "outcome": OUTCOME_LABELS, "rollout": ROLLOUT_LABELS, "group_state": GROUP_STATE_LABELS,
    "fix_state": FIX_STATE_LABELS, "department": DEPARTMENT_LABELS, "review": REVIEW_LABELS,
    "tuf_role": TUF_ROLE_LABELS, "field": FIELD_LABELS, "signing_action": SIGNING_ACTION_LABELS,
}

# ---------------------------------------------------------------- the catalogue

CATALOGUE: dict[str, Any] = {
    # tickets opened for failed updates (support.failures)
    "failure.subject": _l("Update of %(component)s to %(version)s failed"),
    "failure.subject.stage": _l("Update of %(component)s to %(version)s failed at %(stage)s"),
    "failure.subject.code": _l("Update of %(component)s to %(version)s failed (%(code)s)"),
    "failure.subject.stage_code": _l("Update of %(component)s to %(version)s failed at %(stage)s (%(code)s)"),
    "failure.description": _l("Failure reports of %(component)s %(version)s with the same cause "
                              "(failure group #%(group)s).\nStage: %(stage)s\nError code: %(code)s\n"
                              "Message: %(message)s"),
    "failure.report.rolled_back": _l("%(component)s %(from)s → %(to)s on %(installation)s: "
                                     "rolled back to the previous release"),
    "failure.report.failed": _l("%(component)s %(from)s → %(to)s on %(installation)s: left not working"),
    "failure.report.details": _l("%(summary)s; stage %(stage)s, error %(code)s"),
    "failure.report.message": _l("%(summary)s\n%(message)s"),
    "failure.escalated": _l("Now a problem: an installation was left not working."),
    "failure.regression": _l("Reopened: the failure happened again after the request was processed (regression)."),
    "failure.mail_details": _l("Component: %(component)s\nTarget version: %(version)s"),
    # departments and development-request reviews (support.services)
    "department.escalated": _l("Escalated to the development department."),
    "department.escalated.note": _l("Escalated to the development department: %(note)s"),
    "department.returned": _l("Handed back to the support department."),
    "department.returned.note": _l("Handed back to the support department: %(note)s"),
    "review.accepted": _l("Your development request %(number)s was reviewed and accepted. We will tell you "
                          "which version implements it."),
    "review.accepted.reason": _l("Your development request %(number)s was reviewed and accepted: %(reason)s\n"
                                 "We will tell you which version implements it."),
    "review.declined": _l("Your development request %(number)s was reviewed and declined: %(reason)s"),
    # fix releases (support.fixes)
    "fix.linked": _l("Fixed in %(component)s %(version)s."),
    "fix.linked.development": _l("Implemented in %(component)s %(version)s."),
    "fix.implemented_mail": _l("Your request %(number)s is implemented in %(component)s %(version)s."),
    "fix.unlinked": _l("%(component)s %(version)s is no longer named as the fix."),
    "fix.installed": _l("%(installation)s now runs %(version)s, which fixes this failure "
                        "(installations still waiting: %(remaining)s)."),
    "fix.pending": _l("Still waiting for the fix: %(installations)s."),
    "fix.pending.installation": _l("%(name)s (%(running)s, %(state)s)"),
    "fix.processed": _l("Fixed: every affected installation now runs a fixing version (%(version)s): "
                        "%(installations)s."),
    # rollout halts (rollouts, support.services)
    "halt.reason.automatic": _l("failure rate %(rate)s above %(threshold)s after %(attempts)s attempts"),
    "halt.reason.default": _l("failure threshold exceeded"),
    "halt.subject": _l("Rollout halted: %(component)s %(version)s on %(channel)s"),
    "halt.description": _l("Rollout of %(component)s %(version)s on channel %(channel)s halted: "
                           "%(reason)s.\n\nAttempts: %(attempts)s, of them failed: %(failures)s (%(rate)s); "
                           "threshold %(threshold)s, counted from %(min_attempts)s attempts; "
                           "share of installations %(percent)s."),
    "halt.again": _l("Halted again. %(description)s"),
    # timeline entries (support.services)
    "ticket.no_subject": _l("(no subject)"),
    "ticket.continued_in": _l("Continued in %(ticket)s."),
    "ticket.merged_into": _l("Merged into %(ticket)s."),
    "ticket.merged_from": _l("%(ticket)s was merged into this request."),
    "ticket.reason.merged": _l("merged into %(ticket)s"),
    "ticket.reason.reopened_by_customer": _l("reopened by the customer's reply"),
    "ticket.reason.customer_answered": _l("the customer answered"),
    "ticket.reason.auto_closed": _l("closed automatically after processing"),
    "ticket.reason.reopened_by_reply": _l("reopened by a reply"),
    "ticket.reason.closed_by_customer": _l("closed by the customer"),
    "ticket.groups_linked": _l("Failure groups: %(groups)s"),
    "ticket.empty_message": _l("(empty message)"),
    # notes the mail gateway writes (support.mailin, support.mailout)
    "mail.bounce": _l("Delivery failure (%(sender)s): %(subject)s\n\n%(text)s"),
    "mail.bounce.mail_system": _l("mail system"),
    "mail.attachments_skipped": _l("Attachments not stored (they remain in the raw message): %(files)s"),
    "mail.attachment_skipped.too_large": _l("%(filename)s (%(size)s, more than the %(limit)s allowed)"),
    "mail.attachment_skipped.too_many": _l("%(filename)s (the request already has %(limit)s attachments)"),
    "mail.attachment_skipped.empty": _l("%(filename)s (the file is empty)"),
    "mail.refused": _l("The mail server refused the mail \"%(subject)s\" for good:\n%(recipients)s"),
    # mails (support.mailout); rendered in the recipient's language when queued
    "mail.registered": _l("Your request has been registered under the number %(number)s.\n"
                          "Please quote [%(number)s] in the subject of every message about it.\n\n"
                          "Subject: %(subject)s\n"),
    "mail.failure_opened": _l("An update on one of your installations did not complete, and we have opened "
                              "request %(number)s to follow it up; you do not need to do anything now."),
    "mail.request_info": _l("To continue with request %(number)s we need more information from you:"),
    "mail.request_info.hint": _l("Please answer this message; you may attach screenshots, event logs of the "
                                 "components, HTML packages and other details of your systems."),
    "mail.processed": _l("Request %(number)s has been processed."),
    "mail.processed.reopen": _l("If something is still wrong, answer this message within %(days)s days and the "
                                "request will be reopened."),
    "mail.auto_closed": _l("Request %(number)s was processed %(days)s days ago without a further message, and "
                           "has now been closed. If you write to us about it again, we will open a new request "
                           "linked to this one."),
    "mail.signature": _l("Support desk <%(address)s>\nPlease keep the request number in the subject when you "
                         "reply."),
    # audit actions (accounts.audit rows carry the action as their code)
    "audit.auth.login": _l("Logged in"),
    "audit.auth.login_failed": _l("Failed login"),
    "audit.channel.create": _l("Channel created"),
    "audit.component.create": _l("Component created"),
    "audit.customer.create": _l("Customer created"),
    "audit.customer.update": _l("Customer changed"),
    "audit.customer_token.create": _l("Customer API token created"),
    "audit.customer_user.create": _l("Customer user created"),
    "audit.enrollment.create": _l("Enrollment token created"),
    "audit.enrollment.revoke": _l("Enrollment token revoked"),
    "audit.installation.enroll": _l("Installation enrolled"),
    "audit.installation.revoke": _l("Installation revoked"),
    "audit.installation.update": _l("Installation changed"),
    "audit.pin.add": _l("Pin added"),
    "audit.pin.remove": _l("Pin removed"),
    "audit.release.promote": _l("Release promoted"),
    "audit.release.publish": _l("Release published"),
    "audit.release.restrict": _l("Release restricted"),
    "audit.release.unyank": _l("Release restored"),
    "audit.release.yank": _l("Release withdrawn"),
    "audit.rollout.create": _l("Rollout created"),
    "audit.rollout.start": _l("Rollout started"),
    "audit.rollout.pause": _l("Rollout paused"),
    "audit.rollout.resume": _l("Rollout resumed"),
    "audit.rollout.widen": _l("Rollout widened"),
    "audit.rollout.complete": _l("Rollout completed"),
    "audit.rollout.halt": _l("Rollout halted"),
    "audit.ticket.attach": _l("File attached to a ticket"),
    "audit.ticket.create": _l("Ticket created"),
    "audit.ticket.merge": _l("Tickets merged"),
    "audit.ticket.note": _l("Internal note added"),
    "audit.ticket.reply": _l("Reply sent"),
    "audit.ticket.request_info": _l("Information requested"),
    "audit.ticket.update": _l("Ticket changed"),
    "audit.token.create": _l("API token created"),
    "audit.token.revoke": _l("API token revoked"),
    "audit.user.create": _l("Staff user created"),
    "audit.failure_group.state": _l("Failure group state changed"),
    "audit.ticket.cc.add": _l("Contact copied on a ticket"),
    "audit.ticket.cc.remove": _l("Contact no longer copied on a ticket"),
    "audit.canned_reply.add": _l("Canned reply added"),
    "audit.canned_reply.remove": _l("Canned reply removed"),
    # service errors shown in the console and the portal (by ReleaseServerError.code)
    "error.rollout_state": _l("This rollout cannot do that in its current state."),
    "error.duplicate_rollout": _l("This release already has a rollout on that channel."),
    "error.unknown_release": _l("There is no such release."),
    "error.unknown_component": _l("There is no such component."),
    "error.unknown_channel": _l("There is no such channel."),
    "error.unknown_customer": _l("There is no such customer."),
    "error.unknown_installation": _l("There is no such installation."),
    "error.unknown_ticket": _l("There is no such request."),
    "error.unknown_failure_group": _l("There is no such failure group."),
    "error.unknown_attachment": _l("There is no such attachment."),
    "error.unknown_rollout": _l("There is no such rollout."),
    "error.unknown_customer_user": _l("There is no such customer user."),
    "error.duplicate_customer": _l("A customer with this name already exists."),
    "error.duplicate_customer_user": _l("A user with this e-mail address already exists."),
    "error.duplicate_user": _l("A user with this name already exists."),
    "error.duplicate_channel": _l("A channel with this name already exists."),
    "error.duplicate_component": _l("A component with this name already exists."),
    "error.duplicate_release": _l("This version of the component already exists."),
    "error.unknown_assignee": _l("There is no active support user with this name."),
    "error.invalid_status_transition": _l("The request cannot move to that status from its current one."),
    "error.invalid_ticket_field": _l("This value is not one of the allowed ones."),
    "error.invalid_merge": _l("These requests cannot be merged."),
    "error.ticket_closed": _l("The request is closed."),
    "error.attachment_too_large": _l("The file is larger than allowed."),
    "error.too_many_attachments": _l("The request already has the maximum number of attachments."),
    "error.empty_artifact": _l("The file is empty."),
    "error.too_large": _l("The upload is larger than allowed."),
    "error.storage_unavailable": _l("File storage is not available right now; try again later."),
    "error.forbidden": _l("You may not do this."),
    "error.not_found": _l("Not found."),
    "error.conflict": _l("This conflicts with the current state; reload the page and try again."),
    "error.invalid": _l("This value is not accepted."),
}


# ---------------------------------------------------------------- rendering

def _locale_of(locale: str | None) -> str | None:
    if locale is None:
        return None
    short = str(locale).replace("-", "_").split("_", 1)[0].lower()
    return short if short in LANGUAGES else DEFAULT_LANGUAGE


def render(message: Message | Mapping[str, Any] | None, locale: str | None = None) -> str:
    """``message`` in ``locale`` (default: the current page's language); "" for None."""
    if message is None:
        return ""
    if isinstance(message, Mapping):
        message = Message(str(message.get("code") or ""), dict(message.get("params") or {}))
    loc = _locale_of(locale)
    if loc is None or not has_app_context():
        return _render(message)
    with force_locale(loc):
        return _render(message)


def _render(message: Message) -> str:
    template = CATALOGUE.get(message.code)
    if template is None:  # a code from a newer version, or a typo: show what there is
        return message.code
    params = {k: _param(v) for k, v in (message.params or {}).items()}
    text = _gettext(template)
    try:
        return text % params if "%(" in text else text
    except (KeyError, ValueError, TypeError):  # a broken translation never hides the text: use the source
        try:
            return _msgid(template) % params
        except (KeyError, ValueError, TypeError):
            return _msgid(template)


def _msgid(template: Any) -> str:
    return template._args[0] if hasattr(template, "_args") else str(template)


def _gettext(template: Any) -> str:
    msgid = _msgid(template)
    return gettext(msgid) if has_app_context() else msgid


def _param(value: Any) -> Any:
    if isinstance(value, dict) and "$" in value:
        tag = value["$"]
        if tag == "msg":
            return _render(Message(str(value.get("code")), dict(value.get("params") or {})))
        if tag == "size":
            return format_size(value.get("v"))
        if tag == "pct":
            return format_percent(value.get("v"))
        if tag == "label":
            return label_text(str(value.get("t")), value.get("v"))
        if tag == "dt":
            raw = value.get("v")
            return format_moment(datetime.fromisoformat(raw)) if raw else "—"
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return gettext("yes") if has_app_context() else ("yes" if value else "no")
    if isinstance(value, (list, tuple)):
        return ", ".join(str(_param(v)) for v in value)
    return value


def label_text(table: str, value: Any) -> str:
    """The word for ``value`` in label table ``table`` in the current language (the value itself if unknown)."""
    found = LABEL_TABLES.get(table, {}).get(value)
    if found is None:
        return "—" if value in (None, "") else str(value)
    return _gettext(found)


def format_size(n: int | None) -> str:
    """A file size with the reader's units (B/KB/MB/GB in English, Б/КБ/МБ/ГБ in Russian)."""
    if n is None:
        return "—"
    from babel.units import format_unit
    from flask_babel import get_locale

    value, unit = float(n), "byte"
    for unit in ("byte", "kilobyte", "megabyte", "gigabyte"):
        if value < 1024 or unit == "gigabyte":
            break
        value /= 1024
    locale = str(get_locale() or DEFAULT_LANGUAGE) if has_app_context() else DEFAULT_LANGUAGE
    shown = round(value) if unit == "byte" else round(value, 1)
    return format_unit(shown, f"digital-{unit}", length="short", locale=locale)


def format_percent(x: float | None) -> str:
    if x is None:
        return "—"
    from flask_babel import format_decimal

    value = round(float(x) * 100, 1)
    return f"{format_decimal(value) if has_app_context() else value} %"


#: The one date-and-time format of the console, the portal and the mails: day, month name, year and
#: 24-hour time in the reader's zone, followed by the zone's offset ("1 Dec 2026, 11:28 UTC+3").
DATETIME_FORMAT = "d MMM y, HH:mm"


def zone_label(moment: datetime) -> str:
    """``UTC`` or ``UTC+3`` / ``UTC-4:30`` for an aware datetime."""
    offset = moment.utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset is not None else 0
    if minutes == 0:
        return "UTC"
    sign, minutes = ("+" if minutes > 0 else "-"), abs(minutes)
    return f"UTC{sign}{minutes // 60}" + (f":{minutes % 60:02d}" if minutes % 60 else "")


def format_moment(moment: datetime | None) -> str:
    """``moment`` in the reader's time zone and language, with the zone named."""
    if moment is None:
        return "—"
    if not has_app_context():
        return moment.strftime("%Y-%m-%d %H:%M UTC")
    from flask_babel import format_datetime, get_timezone

    zone = get_timezone()
    local = moment.astimezone(zone) if zone is not None and moment.tzinfo is not None else moment
    return f"{format_datetime(moment, DATETIME_FORMAT)} {zone_label(local)}"


def text_of(row: Any, column: str, locale: str | None = None) -> str:
    """A row's system text in the reader's language: ``<column>_code``/``_params`` if set, else the stored text."""
    code = getattr(row, f"{column}_code", None)
    if code:
        return render(Message(code, dict(getattr(row, f"{column}_params", None) or {})), locale)
    return getattr(row, column, "") or ""


def stored(message: Message | str | None, column: str) -> dict[str, Any]:
    """Column values for writing ``message`` into ``column``: the English text plus its code and parameters."""
    if isinstance(message, Message):
        return {column: render(message, "en"), f"{column}_code": message.code,
                f"{column}_params": dict(message.params)}
    return {column: message or "", f"{column}_code": None, f"{column}_params": None}
