"""Form handling for the web views: read fields, collect errors by field, map service errors.

A view builds a :class:`Form` from ``request.form``, reads typed values with the helpers
(each records a message next to its field instead of raising), and, when the form is
clean, calls one service. A :class:`~release_server.errors.ReleaseServerError` from the
service is put next to its ``field`` with :meth:`Form.service_error` (or shown above the
form when it names no field the form has).
"""
from __future__ import annotations

from typing import Any

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from werkzeug.datastructures import MultiDict

from ..errors import ReleaseServerError

#: Translated messages for the service errors people meet most; others show the service's own text.
ERROR_MESSAGES: dict[str, Any] = {
    "rollout_state": _l("This rollout cannot do that in its current state."),
    "duplicate_rollout": _l("This release already has a rollout on that channel."),
    "unknown_release": _l("There is no such release."),
    "unknown_component": _l("There is no such component."),
    "unknown_channel": _l("There is no such channel."),
    "unknown_customer": _l("There is no such customer."),
    "duplicate_customer": _l("A customer with this name already exists."),
    "duplicate_customer_user": _l("A user with this e-mail address already exists."),
    "unknown_assignee": _l("There is no active support user with this name."),
    "invalid_status_transition": _l("The request cannot move to that status from its current one."),
    "ticket_closed": _l("The request is closed."),
    "attachment_too_large": _l("The file is larger than allowed."),
    "too_many_attachments": _l("The request already has the maximum number of attachments."),
}


class Form:
    """Submitted values and the errors found in them, by field name."""

    def __init__(self, data: MultiDict | dict | None = None) -> None:
        self.data: MultiDict = data if isinstance(data, MultiDict) else MultiDict(data or {})
        self.errors: dict[str, str] = {}
        self.general: list[str] = []

    def __getitem__(self, name: str) -> str:
        return self.data.get(name, "")

    def get(self, name: str, default: str = "") -> str:
        return self.data.get(name, default)

    @property
    def ok(self) -> bool:
        return not self.errors and not self.general

    def error(self, name: str, message: Any) -> None:
        self.errors.setdefault(name, str(message))

    def text(self, name: str, *, required: bool = False, max_length: int = 10_000, strip: bool = True) -> str:
        value = self.data.get(name, "") or ""
        if strip:
            value = value.strip()
        if required and not value:
            self.error(name, _("This field is required."))
        elif len(value) > max_length:
            self.error(name, _("At most %(n)d characters.", n=max_length))
        return value

    def choice(self, name: str, allowed: Any, *, required: bool = True, default: str | None = None) -> str | None:
        value = (self.data.get(name) or "").strip() or default
        if value is None or value == "":
            if required:
                self.error(name, _("Choose one."))
            return None
        if value not in allowed:
            self.error(name, _("Choose one of the offered values."))
            return None
        return value

    def number(self, name: str, *, minimum: float | None = None, maximum: float | None = None,
               required: bool = True, integer: bool = False) -> float | None:
        raw = (self.data.get(name) or "").strip().replace(",", ".")
        if not raw:
            if required:
                self.error(name, _("This field is required."))
            return None
        try:
            value: float = int(raw) if integer else float(raw)
        except ValueError:
            self.error(name, _("Enter a whole number.") if integer else _("Enter a number."))
            return None
        if value != value or value in (float("inf"), float("-inf")):
            self.error(name, _("Enter a number."))
            return None
        if minimum is not None and value < minimum:
            self.error(name, _("At least %(n)s.", n=format(minimum, "g")))
            return None
        if maximum is not None and value > maximum:
            self.error(name, _("At most %(n)s.", n=format(maximum, "g")))
            return None
        return value

    def service_error(self, e: ReleaseServerError, fields: dict[str, str] | None = None) -> None:
        """Put a service error next to its field; ``fields`` maps service field names to form field names."""
        message = ERROR_MESSAGES.get(e.code)
        text = f"{message} ({e.message})" if message is not None else e.message
        raw = e.field or ""
        fields = fields or {}
        name = fields.get(raw) or fields.get(raw.split(".", 1)[0]) or raw  # "schedule.1" -> the schedule field
        if name and (name in self.data or name in fields.values()):
            self.error(name, text)
        else:
            self.general.append(text)
