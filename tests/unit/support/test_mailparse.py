"""Tests of the inbound mail parser of the support desk.

Most tests run against the corpus of raw sample messages in ``tests/data/mail/``
(its INDEX.md gives each message's source and licence). Without that folder they
are skipped, unless ``REQUIRE_MAIL_SAMPLES=1`` is set, in which case they fail.
The remaining tests build their messages by hand.
"""
from __future__ import annotations

import dataclasses
import os
import unicodedata
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from functools import lru_cache
from pathlib import Path

import pytest

from release_server.support.mailparse import (
    MAX_FILENAME_LENGTH,
    Attachment,
    MailParseError,
    ParsedMail,
    find_ticket_numbers,
    html_to_text,
    parse_message,
    safe_filename,
    sanitize_html,
    strip_quoted_history,
)

SAMPLES_DIR = Path(__file__).resolve().parents[2] / "data" / "mail"
_MISSING = "<mail samples missing>"

# Decoded subjects as listed in INDEX.md. The parser collapses runs of
# whitespace, so the comparison does the same to these strings.
EXPECTED_SUBJECTS = {
    "otrs-email6-plain-utf8-euro.box": "Testski mit Euro (Kostet 10 €)",
    "rt-text-html-only-umlaut.eml":
        "An example of mail containing text-html with an umlaut in the content",
    "kix-PostMaster-Test16-apple-alternative-crlf.box": "test.org",
    "zbateson-m0011-outlook-png-attachments.eml": "Test message from Microsoft Outlook 00",
    "kix-PostMaster-Test6-outlook-pdf-rfc2047-filenames.box": "Und hier das UTF-8 Mail   ÜÄÖ",
    "sisimai-postfix62-bounce-virus-zip.eml": "Undelivered Mail Returned to Sender",
    "lore-lkml-rjw-reply-quoted-x-log-attachment.eml":
        "Re: 2.6.9-rc2-mm3: swsusp horribly slow on AMD64 (update)",
    "zammad-mail024-csv-attachment-empty-body.box": "Regelsets im Test-Status gefunden: 1",
    "kix-Win7SnippingTool-inline-cid-broken-folding.box": "Vom Snipping Tool gesendet",
    "zbateson-m0016-outlook-related-cid-images.eml": "Test message from Microsoft Outlook 00",
    "imaptools-mailru-utf8-ru-inline-cid.eml":
        "Mail.Ru – больше, чем почта. Познакомьтесь с проектами Mail.Ru Group",
    "kix-PostMaster-Test4-multicharset-rfc2047-subject.box":
        'utf8: 使って / ISO-8859-1: Priorität"  / cp-1251: Сергей Углицких',
    "kix-PostMaster-Test3-utf8-rfc2231-filename.box": "UTF-8 Test äöü 顧客コンタクト管理",
    "rt-rfc2231-filename-continuations-iso2022jp.eml": "Client ? Japanese Attachment Name issue",
    "kix-UTF8Filename-nfd-pdf-longline.box": "---OBSCURED---M",
    "rt-russian-koi8r-8bit-no-content-type.eml": "тест тест",
    "kix-PostMaster-Test13-koi8r-msword-only.box": "Заявка на генерацию 402 240108 (3)",
    "mimekit-ukr-tnef-winmail-koi8r.eml": "rr test 7",
    "rspamd-spam-cp1251-ru-qp-txt-attachment.eml":
        "Аудиоэнциклопедии для детей - великолепная коллекция в отличном качестве. "
        "08_01_2019 02_10 251564",
    "imaptools-cp1251-8bit-ru-fwd-utf8.eml": "S19 IZM A7-342",
    "otrs-email8-bulgarian-cp1251-8bit.box": "Bulgarian demo email!",
    "sisimai-yandex01-dsn-ru-utf8.eml": "Недоставленное сообщение",
    "kix-PostMaster-Test10-postfix-dsn-ticket.box": "Undelivered Mail Returned to Sender",
    "spamscope-malformed2-mailsite-dsn-rfc822-headers.eml": "Delivery failure (abh@netpar.com.br)",
    "sisimai-rfc3834-04-exchange-automatic-reply.eml": "Automatic reply: Nyaan",
    "sisimai-rfc3834-06-auto-submitted-precedence-bulk.eml": "AutoRespons :Nyaan?",
    "zammad-mail003-de-outlook-reply-quoted-history.box": "Ticket Templates",
    "phpmime-issue84-en-reply-quoted-gmail.eml": "Re: [PHP-DEV] [RFC] Remove PHP 4 Constructors",
    "rt-nested-rfc822-gnus-forward-sv-reply.eml": "[Jonas Liljegren] Re: [Para] Nivåer?",
    "rt-outlook-attached-message-rfc822-crlf.eml": "msg attachment",
    "mikel-illegal-unquoted-boundary-outlook-express.eml": "Testing outlook",
    "zbateson-invalid-charset.eml": "Test invalid charset",
    "kix-BrokenEncoding-encoded-word-in-charset-param.box": "Datarecovery - Adatmentés garanciával",
    "kix-UTF-7-charset-broken-encoded-word.box":
        "Microsoft Forefront Protection for SharePoint successfully updated the Command scan "
        "engine on server XXX",
    "mikel-encoding-madness-8bit-header.eml":
        "eBay Bid - 2008 Ford Super Duty F-350 DRW King Ranch Crew Cab 4x4 (156) - Stock# XXXX",
    "rt-very-long-subject.eml": "0123456789" * 30,  # the 309-character line minus "Subject: "
    "rt-smime-signed-thunderbird.eml": "Test Email ID:1",
}


def _collapse(text: str) -> str:
    return " ".join(text.split())


def _sample_names() -> list[str]:
    if not SAMPLES_DIR.is_dir():
        return [_MISSING]
    return sorted(p.name for p in SAMPLES_DIR.iterdir()
                  if p.is_file() and p.name != "INDEX.md" and not p.name.startswith("."))


def _require_samples() -> Path:
    if not SAMPLES_DIR.is_dir():
        reason = f"mail samples folder not found: {SAMPLES_DIR.resolve()}"
        if os.environ.get("REQUIRE_MAIL_SAMPLES") == "1":
            pytest.fail(reason + " (REQUIRE_MAIL_SAMPLES=1)")
        pytest.skip(reason + " (set REQUIRE_MAIL_SAMPLES=1 to make this an error)")
    return SAMPLES_DIR


@lru_cache(maxsize=None)
def _parse_file(name: str, ticket_prefix: str = "OTK") -> ParsedMail:
    return parse_message((SAMPLES_DIR / name).read_bytes(), ticket_prefix=ticket_prefix)


def sample(name: str, ticket_prefix: str = "OTK") -> ParsedMail:
    _require_samples()
    return _parse_file(name, ticket_prefix)


def attachment(mail: ParsedMail, filename: str) -> Attachment:
    found = [a for a in mail.attachments if a.filename == filename]
    assert found, f"{filename!r} not in {[a.filename for a in mail.attachments]}"
    return found[0]


# ---------------------------------------------------------------------------
# The whole corpus
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", _sample_names())
def test_every_sample_parses(name: str) -> None:
    _require_samples()
    mail = _parse_file(name)
    assert isinstance(mail, ParsedMail)
    if name in EXPECTED_SUBJECTS:
        assert mail.subject
    for att in mail.attachments:
        assert att.filename and "/" not in att.filename and "\\" not in att.filename
        assert len(att.filename) <= MAX_FILENAME_LENGTH
        assert isinstance(att.data, bytes)
    assert "\ufffd" not in mail.subject
    assert "\ufffd" not in mail.text


def test_index_lists_every_sample() -> None:
    _require_samples()
    assert set(EXPECTED_SUBJECTS) == set(_sample_names())


@pytest.mark.parametrize("name", sorted(EXPECTED_SUBJECTS))
def test_decoded_subject(name: str) -> None:
    assert sample(name).subject == _collapse(EXPECTED_SUBJECTS[name])


# ---------------------------------------------------------------------------
# Charsets and bodies
# ---------------------------------------------------------------------------

def test_koi8r_without_content_type_is_guessed_for_header_and_body() -> None:
    mail = sample("rt-russian-koi8r-8bit-no-content-type.eml")
    assert mail.subject == "тест тест"
    assert mail.text == "ТЕСТ"


def test_windows_1251_8bit_body() -> None:
    mail = sample("otrs-email8-bulgarian-cp1251-8bit.box")
    assert "това е тестов отговор" in mail.text


def test_two_charsets_in_one_message() -> None:
    mail = sample("imaptools-cp1251-8bit-ru-fwd-utf8.eml")
    assert "отдел расписания" in mail.text
    assert mail.from_name == "Каукин Владимир"
    forwarded = attachment(mail, "Message01.eml")
    assert forwarded.content_type == "message/rfc822"
    inner = parse_message(forwarded.data)
    assert "Добрый день, уважаемые коллеги!" in _collapse(inner.text)  # has no-break spaces


def test_utf8_body_with_euro_and_mbox_line() -> None:
    mail = sample("otrs-email6-plain-utf8-euro.box")
    assert "€ € €" in mail.text
    assert mail.from_addr == "euro@example.com"
    assert mail.from_name == "Euro Tester"


def test_invalid_charset_name_does_not_lose_text() -> None:
    mail = sample("zbateson-invalid-charset.eml")
    assert mail.text.startswith("The Hare and the Tortoise")
    assert "Slow but steady wins the race." in mail.text


def test_koi8r_quoted_printable_body() -> None:
    assert "шостий" in sample("mimekit-ukr-tnef-winmail-koi8r.eml").text


def test_html_charset_from_meta_when_content_type_is_broken() -> None:
    mail = sample("kix-BrokenEncoding-encoded-word-in-charset-param.box")
    assert "Majdnem mindenkivel előfordult már" in mail.text
    assert "<" not in mail.text.split("\n", 1)[0]


def test_rfc2047_encoded_sender_name() -> None:
    assert sample("kix-PostMaster-Test16-apple-alternative-crlf.box").from_name == "André Moller"
    assert sample("zammad-mail003-de-outlook-reply-quoted-history.box").from_name == \
        "Günther John | Example GmbH"


def test_multipart_alternative_prefers_plain_text_and_keeps_html() -> None:
    mail = sample("kix-PostMaster-Test16-apple-alternative-crlf.box")
    assert mail.text.startswith("Hi Martin,")
    assert mail.html is not None and "<a href=\"http://www.test.org/\"" in mail.html


@pytest.mark.parametrize("name", [
    "rt-text-html-only-umlaut.eml",
    "kix-PostMaster-Test4-multicharset-rfc2047-subject.box",
    "kix-BrokenEncoding-encoded-word-in-charset-param.box",
])
def test_html_only_mail_gives_text_without_tags(name: str) -> None:
    mail = sample(name)
    assert mail.html
    assert mail.text.strip()
    assert "<div" not in mail.text.lower() and "<p" not in mail.text.lower()
    assert "<br" not in mail.text.lower() and "&nbsp;" not in mail.text


def test_html_only_umlaut_text() -> None:
    mail = sample("rt-text-html-only-umlaut.eml")
    assert "Mit freundlichen Grüßen" in mail.text
    assert mail.text.startswith("Hello,\n\nist this kind of Messages")


def test_unquoted_boundary_with_equals_sign_is_split() -> None:
    mail = sample("mikel-illegal-unquoted-boundary-outlook-express.eml")
    assert mail.text == "Hello\nThis is an outlook test\n\nSo there.\n\nMe."
    assert mail.html is not None and "<strong>" in mail.html


def test_broken_header_folding_in_top_level_header() -> None:
    mail = sample("phpmime-issue84-en-reply-quoted-gmail.eml")
    assert mail.from_addr == "tyra3l@gmail.com"
    assert mail.from_name == "Ferenc Kovacs"
    assert mail.cc == ["internals@lists.php.net"]
    assert "+1 from me." in mail.text


def test_malformed_8bit_reply_to_does_not_break_parsing() -> None:
    mail = sample("mikel-encoding-madness-8bit-header.eml")
    assert mail.text == "Body Text"
    assert mail.reply_to == []
    assert mail.from_addr == "no-reply@crm.el-example.org"


def test_missing_from_date_and_message_id() -> None:
    mail = sample("kix-UTF-7-charset-broken-encoded-word.box")
    assert (mail.from_addr, mail.from_name, mail.message_id, mail.date) == ("", "", "", None)
    assert mail.text == "Microsoft Forefront Protection performed a successful scan engine update."


def test_headers_of_a_normal_message() -> None:
    mail = sample("lore-lkml-rjw-reply-quoted-x-log-attachment.eml")
    assert mail.message_id == "200409280123.54857.rjw@sisk.pl"
    assert mail.in_reply_to == "20040926132036.GG826@openzaurus.ucw.cz"
    assert mail.references[-1] == "20040926132036.GG826@openzaurus.ucw.cz"
    assert mail.to == ["akpm@osdl.org"]
    assert mail.cc == ["pavel@suse.cz", "linux-kernel@vger.kernel.org"]
    assert mail.date == datetime(2004, 9, 28, 1, 23, 54, tzinfo=timezone(timedelta(hours=2)))


# ---------------------------------------------------------------------------
# Attachments
# ---------------------------------------------------------------------------

def test_rfc2231_filename_with_split_utf8_sequence() -> None:
    mail = sample("kix-PostMaster-Test3-utf8-rfc2231-filename.box")
    att = attachment(mail, "utf-8-file-äöüß-カスタマ.txt")
    assert att.content_type == "text/plain"
    assert "äöüß" not in mail.text or att.filename not in mail.text


def test_rfc2231_filename_iso2022jp_with_language() -> None:
    mail = sample("rt-rfc2231-filename-continuations-iso2022jp.eml")
    attachment(mail, "新しいテキスト ドキュメント.txt")
    assert mail.text == "Some data in a file"


def test_nfd_filename_is_normalised_to_nfc() -> None:
    mail = sample("kix-UTF8Filename-nfd-pdf-longline.box")
    att = attachment(mail, "Documentación.pdf")
    assert unicodedata.is_normalized("NFC", att.filename)
    assert att.data.startswith(b"%PDF") or att.content_type == "application/pdf"


def test_rfc2047_filenames_in_quoted_parameters() -> None:
    mail = sample("kix-PostMaster-Test6-outlook-pdf-rfc2047-filenames.box")
    pdf = attachment(mail, "test-attachment-äöüß.pdf")
    assert pdf.content_type == "application/pdf"
    assert pdf.data.startswith(b"%PDF")
    assert {a.filename for a in mail.attachments} == {
        "test-attachment-äöüß.pdf",
        "test-attachment-äöüß-utf-8.txt",
        "test-attachment-äöüß-iso-8859-1.txt",
    }
    assert mail.text.startswith("Hallöle,")


def test_windows_1251_rfc2047_filename() -> None:
    mail = sample("rspamd-spam-cp1251-ru-qp-txt-attachment.eml")
    att = attachment(mail, "Список-Аудиоэнциклопедии.txt")
    assert att.content_type == "text/plain"
    assert not att.inline


def test_koi8r_filename_of_the_only_part() -> None:
    mail = sample("kix-PostMaster-Test13-koi8r-msword-only.box")
    att = attachment(mail, "Заявка на генерацию 402 240108 (3).doc")
    assert att.content_type == "application/msword"
    assert mail.text == ""


@pytest.mark.parametrize("name, expected", [
    ("zbateson-m0016-outlook-related-cid-images.eml", {
        "blueball.png": "823504223@17052000-0f8d",
        "redball.png": "823504223@17052000-0f94",
    }),
    ("imaptools-mailru-utf8-ru-inline-cid.eml", {
        "blank.png": "part1.02000503.06000807@mail.ru",
        "sm-ok.png": "part41.01020108.09060604@mail.ru",
        "logo.png": "part51.09060808.01070700@mail.ru",
    }),
    ("kix-Win7SnippingTool-inline-cid-broken-folding.box", {
        "image001.png": "image001.png@01CCD5EE.430AB650",
    }),
])
def test_inline_cid_images(name: str, expected: dict[str, str]) -> None:
    mail = sample(name)
    for filename, content_id in expected.items():
        att = attachment(mail, filename)
        assert att.inline
        assert att.content_id == content_id
        assert att.content_type == "image/png"
        assert att.data.startswith(b"\x89PNG")
    assert mail.html is not None
    assert f'src="cid:{next(iter(expected.values()))}"' in mail.html


def test_plain_image_attachments_are_not_inline() -> None:
    mail = sample("zbateson-m0011-outlook-png-attachments.eml")
    assert [a.filename for a in mail.attachments] == ["blueball.png", "greenball.png", "redball.png"]
    assert all(not a.inline and a.content_id is None for a in mail.attachments)
    assert all(a.data.startswith(b"\x89PNG") for a in mail.attachments)


def test_csv_attachment_of_mail_with_empty_body() -> None:
    mail = sample("zammad-mail024-csv-attachment-empty-body.box")
    att = attachment(mail, "rulesets-report.csv")
    assert att.content_type == "text/csv"
    assert att.data
    assert len(mail.attachments) == 1


def test_text_log_attachment_is_not_part_of_the_body() -> None:
    mail = sample("lore-lkml-rjw-reply-quoted-x-log-attachment.eml")
    att = attachment(mail, "swsusp-double_fault.log")
    assert att.content_type == "text/x-log"
    assert att.data.decode("latin-1") not in mail.text


@pytest.mark.parametrize("name, filename, inner_subject", [
    ("rt-nested-rfc822-gnus-forward-sv-reply.eml", "Re_ [Para] Nivåer_.eml", "Re: [Para] Nivåer?"),
    ("rt-outlook-attached-message-rfc822-crlf.eml", "Updates to our terms of use.eml",
     "Updates to our terms of use"),
])
def test_forwarded_message_becomes_eml_attachment(name: str, filename: str, inner_subject: str) -> None:
    mail = sample(name)
    att = attachment(mail, filename)
    assert att.content_type == "message/rfc822"
    assert not att.inline
    assert parse_message(att.data).subject == inner_subject


def test_smime_signature_is_an_attachment() -> None:
    mail = sample("rt-smime-signed-thunderbird.eml")
    assert attachment(mail, "smime.p7s").content_type == "application/pkcs7-signature"
    assert mail.text.startswith("This is a test email with detached signature.")


def test_tnef_attachment_is_kept() -> None:
    mail = sample("mimekit-ukr-tnef-winmail-koi8r.eml")
    assert attachment(mail, "winmail.dat").content_type == "application/ms-tnef"


# ---------------------------------------------------------------------------
# Bounces and automatic replies
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", [
    "kix-PostMaster-Test10-postfix-dsn-ticket.box",
    "sisimai-postfix62-bounce-virus-zip.eml",
    "sisimai-yandex01-dsn-ru-utf8.eml",
    "spamscope-malformed2-mailsite-dsn-rfc822-headers.eml",
])
def test_bounces(name: str) -> None:
    mail = sample(name)
    assert mail.is_bounce
    assert mail.auto_submitted_reason
    assert mail.bounce_original_subject
    assert mail.bounce_original_message_id


def test_postfix_bounce_returns_the_original_ticket_subject() -> None:
    mail = sample("kix-PostMaster-Test10-postfix-dsn-ticket.box")
    assert mail.bounce_original_subject == "[Ticket#2007070610001801] test mail"
    assert mail.bounce_original_message_id == "1183717051.586927.929001308.97809.36@mail.test.org"
    assert mail.ticket_numbers == []
    with_prefix = sample("kix-PostMaster-Test10-postfix-dsn-ticket.box", ticket_prefix="Ticket")
    assert with_prefix.ticket_numbers == ["TICKET-2007070610001801"]


def test_bounce_with_only_the_original_headers() -> None:
    mail = sample("spamscope-malformed2-mailsite-dsn-rfc822-headers.eml")
    assert mail.bounce_original_subject == "Trabajo perfecto a distancia"
    assert attachment(mail, "DSN57BAC498.txt").content_type == "message/delivery-status"


def test_bounce_keeps_the_returned_message_as_attachment() -> None:
    mail = sample("sisimai-postfix62-bounce-virus-zip.eml")
    returned = [a for a in mail.attachments if a.content_type == "message/rfc822"]
    assert len(returned) == 1
    assert parse_message(returned[0].data).attachments[0].filename == "nyaan.zip"


def test_exchange_automatic_reply_without_auto_submitted() -> None:
    mail = sample("sisimai-rfc3834-04-exchange-automatic-reply.eml")
    assert not mail.is_bounce
    assert mail.auto_submitted_reason


def test_auto_submitted_and_precedence_bulk() -> None:
    mail = sample("sisimai-rfc3834-06-auto-submitted-precedence-bulk.eml")
    assert mail.auto_submitted_reason == "Auto-Submitted: auto-replied"
    assert not mail.is_bounce


def test_mailing_list_mail_is_flagged() -> None:
    assert sample("kix-UTF8Filename-nfd-pdf-longline.box").auto_submitted_reason == "Precedence: list"


@pytest.mark.parametrize("name", [
    "zbateson-m0011-outlook-png-attachments.eml",
    "otrs-email6-plain-utf8-euro.box",
    "zammad-mail003-de-outlook-reply-quoted-history.box",
    "kix-UTF-7-charset-broken-encoded-word.box",
])
def test_normal_mail_is_not_flagged(name: str) -> None:
    mail = sample(name)
    assert mail.auto_submitted_reason is None
    assert not mail.is_bounce
    assert mail.bounce_original_subject is None


# ---------------------------------------------------------------------------
# Reply trimming
# ---------------------------------------------------------------------------

def test_german_outlook_reply_history_is_trimmed() -> None:
    mail = sample("zammad-mail003-de-outlook-reply-quoted-history.box")
    assert mail.reply_text.startswith("Hallo Fritz,")
    assert "Beta-Test für die Ticket Templates" in mail.reply_text
    for marker in ("Gesendet:", "Von: Fritz Bauer", "schrieb", "wrote:", "Moin Moin"):
        assert marker not in mail.reply_text
        assert marker in mail.text


def test_english_interleaved_reply_drops_quotes() -> None:
    mail = sample("lore-lkml-rjw-reply-quoted-x-log-attachment.eml")
    assert "You are right, but I don't think it's a module." in mail.reply_text
    assert "Is it still slow with init=/bin/bash?" not in mail.reply_text
    assert "Pavel Machek wrote:" not in mail.reply_text
    assert "AFAICS." not in mail.reply_text
    assert "Is it still slow with init=/bin/bash?" in mail.text


def test_english_bottom_posted_reply_drops_quotes() -> None:
    mail = sample("phpmime-issue84-en-reply-quoted-gmail.eml")
    assert mail.reply_text.startswith("+1 from me.")
    assert "Dear Internals" not in mail.reply_text
    assert "Levi Morrison" not in mail.reply_text
    assert "Dear Internals" in mail.text


@pytest.mark.parametrize("text, expected", [
    ("Thanks!\n\nOn Mon, 3 Jun 2024 at 10:00, Bob <bob@example.com> wrote:\n> old\n> text",
     "Thanks!"),
    ("Thanks!\n\nOn Mon, 3 Jun 2024 at 10:00, Bob <bob@example.com>\nwrote:\n\n> old", "Thanks!"),
    ("Danke.\n\nAm 03.06.2024 um 10:00 schrieb Bob <bob@example.com>:\nAlter Text", "Danke."),
    ("Fixed.\n\n-----Original Message-----\nFrom: Bob\nSent: Monday\nold text", "Fixed."),
    ("Erledigt.\n\n-----Ursprüngliche Nachricht-----\nVon: Bob\nalt", "Erledigt."),
    ("Готово.\n\nОт: Боб\nОтправлено: 3 июня 2024 г.\nТема: старое", "Готово."),
    ("Done.\n________________________________\nFrom: Bob <bob@example.com>\n"
     "Sent: Monday, June 3, 2024 10:00\nTo: Support\nold", "Done."),
    ("> only quoted\n> text", "> only quoted\n> text"),
    ("From: me\nno sent line follows, so this is not a reply header", None),
])
def test_strip_quoted_history(text: str, expected: str | None) -> None:
    assert strip_quoted_history(text) == (text if expected is None else expected)


# ---------------------------------------------------------------------------
# Ticket numbers
# ---------------------------------------------------------------------------

def _message(subject: str = "Hello", body: str = "Body text", **headers: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = headers.pop("From", "Customer Name <Customer@Example.COM>")
    msg["To"] = headers.pop("To", "support@example.net")
    msg["Subject"] = subject
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body)
    return msg


def test_ticket_number_in_subject() -> None:
    mail = parse_message(bytes(_message("Re: [OTK-000123] Update failed")))
    assert mail.ticket_numbers == ["OTK-000123"]


def test_ticket_number_with_custom_prefix_is_normalised() -> None:
    raw = bytes(_message("AW: [hd-42] Frage zum Update"))
    assert parse_message(raw, ticket_prefix="HD").ticket_numbers == ["HD-000042"]
    assert parse_message(raw).ticket_numbers == []
    assert parse_message(bytes(_message("AW: [otk-42]"))).ticket_numbers == ["OTK-000042"]


@pytest.mark.parametrize("text, prefix, expected", [
    ("Re: [OTK-000123] Update failed", "OTK", ["OTK-000123"]),
    ("AW: [otk-42]", "otk", ["OTK-000042"]),
    ("[OTK-1] and [OTK-000001] and [OTK-7]", "OTK", ["OTK-000001", "OTK-000007"]),
    ("OTK-123 without brackets", "OTK", []),
    ("[XOTK-5] [OTK-] [OTK-12a]", "OTK", []),
    ("[ OTK-1234567 ]", "OTK", ["OTK-1234567"]),
    ("", "OTK", []),
])
def test_find_ticket_numbers(text: str, prefix: str, expected: list[str]) -> None:
    assert find_ticket_numbers(text, prefix) == expected


# ---------------------------------------------------------------------------
# Hand-built messages
# ---------------------------------------------------------------------------

def test_threading_headers() -> None:
    msg = _message(
        "Re: Update",
        Message_ID="<new.1@example.com>",
        In_Reply_To="<parent.2@example.net>",
        References="<root.1@example.net> <parent.2@example.net>",
    )
    mail = parse_message(bytes(msg))
    assert mail.message_id == "new.1@example.com"
    assert mail.in_reply_to == "parent.2@example.net"
    assert mail.references == ["root.1@example.net", "parent.2@example.net"]


def test_threading_headers_best_effort() -> None:
    raw = (b"From: a@example.com\r\nSubject: x\r\nMessage-ID: bare-id@example.com\r\n"
           b"In-Reply-To: <p@example.com> (Bob's message of Monday)\r\n"
           b"References: r1@example.com, <r2@example.com>\r\n <r3@example.com>\r\n\r\nbody\r\n")
    mail = parse_message(raw)
    assert mail.message_id == "bare-id@example.com"
    assert mail.in_reply_to == "p@example.com"
    assert mail.references == ["r2@example.com", "r3@example.com"]


def test_addresses_are_lowercased_and_names_decoded() -> None:
    msg = _message(Cc="Zoë <ZOE@Example.org>, other@example.org", Reply_To="Desk <desk@example.com>")
    msg.replace_header("From", "Jürgen Müller <Juergen.Mueller@Example.COM>")
    mail = parse_message(bytes(msg))
    assert mail.from_addr == "juergen.mueller@example.com"
    assert mail.from_name == "Jürgen Müller"
    assert mail.cc == ["zoe@example.org", "other@example.org"]
    assert mail.reply_to == ["desk@example.com"]
    assert mail.to == ["support@example.net"]


def test_missing_from() -> None:
    raw = b"To: support@example.net\r\nSubject: no sender\r\n\r\nHello\r\n"
    mail = parse_message(raw)
    assert (mail.from_addr, mail.from_name) == ("", "")
    assert mail.subject == "no sender"
    assert mail.text == "Hello"
    assert mail.auto_submitted_reason is None


def test_malformed_headers_degrade_instead_of_raising() -> None:
    raw = (b"From: <<<broken@@example..com\r\nTo: undisclosed-recipients:;\r\n"
           b"Cc: ,,,\r\nDate: yesterday-ish\r\nSubject: =?x-unknown?Q?caf=E9?= =?utf-8?B?broken\r\n"
           b"Content-Type: text/plain; charset=\"no-such-charset\r\n\r\ncaf\xe9\r\n")
    mail = parse_message(raw)
    assert mail.date is None
    assert mail.to == []
    assert mail.subject.startswith("café")
    assert mail.text == "café"


def test_empty_input_raises() -> None:
    with pytest.raises(MailParseError):
        parse_message(b"")
    with pytest.raises(MailParseError):
        parse_message(b" \r\n\r\n")
    with pytest.raises(MailParseError):
        parse_message(b"From MAILER-DAEMON Thu Jan  1 00:00:00 2024\n")


def test_input_without_headers_raises() -> None:
    # Decision: bytes that do not start with a header field are not a message
    # (no sender, nothing to thread); the caller keeps them aside.
    with pytest.raises(MailParseError):
        parse_message(b"garbage without headers")
    with pytest.raises(TypeError):
        parse_message("From: a@example.com\r\n\r\nx")  # type: ignore[arg-type]


def test_headers_only_message_parses() -> None:
    mail = parse_message(b"Subject: only a header")
    assert mail.subject == "only a header"
    assert mail.text == "" and mail.attachments == []


def test_naive_date_is_taken_as_utc() -> None:
    mail = parse_message(b"From: a@example.com\r\nDate: Mon, 3 Jun 2024 10:00:00 -0000\r\n\r\nx")
    assert mail.date == datetime(2024, 6, 3, 10, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("body, expected", [
    ("Grüße aus München, schöne Straße".encode("cp1252"), "Grüße aus München, schöne Straße"),
    ("Привет, как дела? Всё хорошо.".encode("cp1251"), "Привет, как дела? Всё хорошо."),
    ("Привет, как дела? Всё хорошо.".encode("koi8-r"), "Привет, как дела? Всё хорошо."),
    ("Größe € 10".encode("utf-8"), "Größe € 10"),
])
def test_8bit_body_without_charset_is_guessed(body: bytes, expected: str) -> None:
    raw = b"From: a@example.com\r\nSubject: guess\r\n\r\n" + body + b"\r\n"
    assert parse_message(raw).text == expected


@pytest.mark.parametrize("charset, text", [
    ("iso-2022-jp", "日本語のテキスト"),
    ("utf-7", "Grüße + 10 €"),
    ("iso-8859-2", "Adatmentés garanciával, őrült"),
    ("windows-1251", "Сергей Углицких"),
])
def test_declared_charsets(charset: str, text: str) -> None:
    raw = (f"From: a@example.com\r\nSubject: cs\r\nMIME-Version: 1.0\r\n"
           f"Content-Type: text/plain; charset={charset}\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
           ).encode("ascii") + text.encode(charset) + b"\r\n"
    assert parse_message(raw).text == text


def test_format_flowed_is_unwrapped() -> None:
    raw = (b"From: a@example.com\r\nSubject: f\r\nContent-Type: text/plain; charset=utf-8; "
           b"format=flowed\r\n\r\nThis is a long \r\nparagraph.\r\n\r\n> quoted \r\n> more\r\n-- \r\nsig\r\n")
    assert parse_message(raw).text == "This is a long paragraph.\n\n> quoted more\n--\nsig"


def test_html_only_message_is_sanitised_and_converted() -> None:
    msg = EmailMessage()
    msg["From"] = "a@example.com"
    msg["Subject"] = "html"
    msg.set_content(
        "<html><head><title>T</title><style>p{color:red}</style></head><body>"
        "<p>Hello <b>there</b>,</p><script>alert(1)</script>"
        "<p>Steps:</p><ol><li>Download</li><li>Install</li></ol>"
        "<ul><li>first</li><li>second</li></ul>"
        "<p>Line one<br>Line two</p>"
        "<img src=\"https://tracker.example/pixel.gif\"><img src=\"cid:logo@x\" alt=\"Logo\">"
        "<a href=\"javascript:alert(1)\">bad</a> <a href=\"https://example.com/help\">help</a>"
        "<p onclick=\"x()\" style=\"color:red\">End &amp; bye&nbsp;now</p></body></html>",
        subtype="html",
    )
    mail = parse_message(bytes(msg))
    assert mail.html is not None
    for forbidden in ("<script", "alert(1)", "<style", "color:red", "tracker.example", "javascript:",
                      "onclick", "<title"):
        assert forbidden not in mail.html
    assert 'src="cid:logo@x"' in mail.html
    assert mail.text == (
        "Hello there,\n\nSteps:\n\n1. Download\n2. Install\n\n- first\n- second\n\n"
        "Line one\nLine two\n\n[Logo]bad help <https://example.com/help>\n\nEnd & bye now"
    )


def test_sanitize_html_and_html_to_text_helpers() -> None:
    assert sanitize_html('<div><iframe src="https://x"></iframe>ok</div>') == "<div>ok</div>"
    assert html_to_text("<pre>a\n  b</pre><p>c</p>") == "a\n  b\n\nc"
    assert html_to_text("<ul><li>a<ul><li>b</li></ul></li></ul>") == "- a\n  - b"


def test_unnamed_non_text_part_gets_a_fallback_name() -> None:
    msg = _message()
    msg.add_attachment(b"\x89PNG\r\n\x1a\nxx", maintype="image", subtype="png")
    msg.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf",
                       filename="../../etc/\u202egnp.pdf")
    mail = parse_message(bytes(msg))
    assert [a.filename for a in mail.attachments] == ["attachment-1.png", "gnp.pdf"]
    assert mail.text == "Body text"


@pytest.mark.parametrize("name, expected", [
    ("C:\\Users\\me\\report.pdf", "report.pdf"),
    ("../../etc/passwd", "passwd"),
    ("bad\x00name\x1f.txt", "badname.txt"),
    ("a:b*c?.txt", "a_b_c_.txt"),
    ("  .hidden  ", "hidden"),
    ("", "attachment-3.png"),
    ("..", "attachment-3.png"),
])
def test_safe_filename(name: str, expected: str) -> None:
    assert safe_filename(name, 3, "image/png") == expected


def test_safe_filename_is_limited_and_keeps_extension() -> None:
    result = safe_filename("x" * 500 + ".pdf", 1, "application/pdf")
    assert len(result) == MAX_FILENAME_LENGTH
    assert result.endswith(".pdf")


@pytest.mark.parametrize("headers, reason", [
    ({"Auto-Submitted": "auto-generated"}, "Auto-Submitted: auto-generated"),
    ({"Auto-Submitted": "no"}, None),
    ({"Precedence": "junk"}, "Precedence: junk"),
    ({"Precedence": "first-class"}, None),
    ({"X-Autoreply": "yes"}, "X-Autoreply present"),
    ({"X-Autorespond": "x"}, "X-Autorespond present"),
    ({"X-Auto-Response-Suppress": "All"}, "X-Auto-Response-Suppress: All"),
    ({"X-Auto-Response-Suppress": "OOF, AutoReply"}, "X-Auto-Response-Suppress: OOF, AutoReply"),
    ({"X-Auto-Response-Suppress": "OOF"}, None),
    ({"X-Auto-Response-Suppress": "DR, RN, NRN"}, None),
    ({"Return-Path": "<>"}, "empty Return-Path"),
    ({"From": "MAILER-DAEMON@example.com"}, "sent by mailer-daemon"),
    ({"From": "Postmaster <postmaster@example.com>"}, "sent by postmaster"),
    ({"List-Id": "<users.lists.example.com>"}, "List-Id present"),
    ({"Subject": "Out of Office: back Monday"}, "automatic-reply subject"),
    ({"Subject": "Автоответ: Re: обновление"}, "automatic-reply subject"),
    ({"Subject": "Auto: Re: update"}, "automatic-reply subject"),
    ({"Subject": "Re: Automatic updates fail"}, None),
])
def test_auto_submitted_reason(headers: dict[str, str], reason: str | None) -> None:
    msg = _message(headers.pop("Subject", "Hello"), From=headers.pop("From", "a@example.com"))
    for name, value in headers.items():
        msg[name] = value
    assert parse_message(bytes(msg)).auto_submitted_reason == reason


def test_parsed_mail_is_frozen() -> None:
    mail = parse_message(bytes(_message()))
    with pytest.raises(dataclasses.FrozenInstanceError):
        mail.subject = "changed"  # type: ignore[misc]
    assert mail.reply_text == mail.text == "Body text"
