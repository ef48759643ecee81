"""Typed errors of the support desk; each carries the offending value."""
from __future__ import annotations

from ..errors import ConflictError, NotFoundError, PayloadTooLargeError, ReleaseServerError, ValidationError


class UnknownTicketError(NotFoundError):
    code = "unknown_ticket"

    def __init__(self, ref: str) -> None:
        super().__init__(f"no ticket {ref!r}", field="number")
        self.ref = ref


class InvalidTicketFieldError(ValidationError):
    code = "invalid_ticket_field"

    def __init__(self, name: str, value: object, allowed: tuple[str, ...]) -> None:
        super().__init__(f"{name} {value!r} is not one of {', '.join(allowed)}", field=name)
        self.value = value


class StatusTransitionError(ConflictError):
    code = "invalid_status_transition"

    def __init__(self, number: str, current: str, wanted: str) -> None:
        super().__init__(f"ticket {number} cannot go from {current} to {wanted}", field="status")
        self.current, self.wanted = current, wanted


class TicketClosedError(ConflictError):
    code = "ticket_closed"

    def __init__(self, number: str) -> None:
        super().__init__(f"ticket {number} is closed; reopen it or open a new one", field="number")
        self.number = number


class MergeError(ConflictError):
    code = "invalid_merge"

    def __init__(self, message: str) -> None:
        super().__init__(message, field="into")


class AttachmentTooLargeError(PayloadTooLargeError):
    code = "attachment_too_large"

    def __init__(self, filename: str, size: int, limit: int) -> None:
        super().__init__(f"attachment {filename!r} has {size} bytes; the limit is {limit}", field="file")
        self.filename, self.size, self.limit = filename, size, limit


class TooManyAttachmentsError(ConflictError):
    code = "too_many_attachments"

    def __init__(self, number: str, limit: int) -> None:
        super().__init__(f"ticket {number} already has the maximum of {limit} attachments", field="file")
        self.limit = limit


class UnknownAttachmentError(NotFoundError):
    code = "unknown_attachment"

    def __init__(self, attachment_id: int) -> None:
        super().__init__(f"no attachment {attachment_id}", field="attachment")


class UnknownFailureGroupError(NotFoundError):
    code = "unknown_failure_group"

    def __init__(self, group_id: int) -> None:
        super().__init__(f"no failure group {group_id}", field="failure_group")


class UnknownStaffUserError(NotFoundError):
    code = "unknown_assignee"

    def __init__(self, username: str) -> None:
        super().__init__(f"no active staff user {username!r}", field="assignee")


class DuplicateCustomerUserError(ConflictError):
    code = "duplicate_customer_user"

    def __init__(self, email: str) -> None:
        super().__init__(f"a customer user {email!r} already exists", field="email")


class UnknownCustomerUserError(NotFoundError):
    code = "unknown_customer_user"

    def __init__(self, ref: object) -> None:
        super().__init__(f"no customer user {ref!r}", field="customer_user")


class MailTooLargeError(PayloadTooLargeError):
    code = "mail_too_large"

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"message larger than the limit of {limit} bytes", field="message")
        self.size, self.limit = size, limit


class MailDeliveryError(ReleaseServerError):
    """Sending a mail failed; ``temporary`` tells the outbox whether to try again."""

    status = 503
    code = "mail_delivery_failed"

    def __init__(self, message: str, *, temporary: bool = True,
                 refused: dict[str, tuple[int, str]] | None = None) -> None:
        super().__init__(message)
        self.temporary = temporary
        #: Recipients the SMTP server refused, with its reply code and text.
        self.refused = refused or {}


class MailFetchError(ReleaseServerError):
    """The IMAP mailbox could not be read."""

    status = 503
    code = "mail_fetch_failed"
