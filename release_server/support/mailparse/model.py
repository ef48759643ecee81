"""The parser's results and its one error: :class:`ParsedMail`, :class:`Attachment`, :class:`MailParseError`,
and the bounds the parser keeps to."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

#: Ticket numbers are rendered with at least this many digits ("OTK-000123").
TICKET_NUMBER_DIGITS = 6
#: Longest filename (in characters) handed out for an attachment.
MAX_FILENAME_LENGTH = 200
#: Message ids kept from one References/In-Reply-To header: the first (the thread's root) and the latest.
MAX_REFERENCES = 100
#: Addresses kept from one address header (To, Cc, ...); the first ones are kept.
MAX_ADDRESSES = 200
#: Longest header field (bytes, folded) handed to the MIME parser; longer ones are cut.
MAX_HEADER_BYTES = 16 * 1024
#: Longest address header (bytes) handed to the MIME parser; it is cut between two addresses.
MAX_ADDRESS_HEADER_BYTES = 16 * 1024
#: Multipart and enclosed-message containers opened in one message; deeper ones are opaque data.
MAX_CONTAINERS = 64

#: MIME nesting deeper than this is treated as opaque data.
MAX_DEPTH = 40


class MailParseError(Exception):
    """The bytes cannot be parsed as an e-mail message at all."""


@dataclass(frozen=True)
class Attachment:
    """One non-body part of a message."""

    filename: str
    content_type: str
    data: bytes = field(repr=False)
    content_id: str | None = None
    inline: bool = False

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass(frozen=True)
class ParsedMail:
    """The parts of an inbound message the support desk works with."""

    subject: str
    from_addr: str
    from_name: str
    to: list[str] = field(default_factory=list)
    cc: list[str] = field(default_factory=list)
    reply_to: list[str] = field(default_factory=list)
    message_id: str = ""
    in_reply_to: str = ""
    references: list[str] = field(default_factory=list)
    date: datetime | None = None
    text: str = ""
    html: str | None = None
    reply_text: str = ""
    attachments: list[Attachment] = field(default_factory=list)
    auto_submitted_reason: str | None = None
    is_bounce: bool = False
    bounce_original_subject: str | None = None
    bounce_original_message_id: str | None = None
    ticket_numbers: list[str] = field(default_factory=list)
