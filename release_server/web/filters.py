"""Template filters and globals: dates, sizes, labels, system texts, audit details, the sanitised changelog.

Dates have one format everywhere (:data:`release_server.messages.DATETIME_FORMAT`), in the
reader's time zone with the zone named; a relative time ("2 days ago") carries the exact
time on hover.
"""
from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from flask import Flask, request, url_for
from flask_babel import format_decimal, format_timedelta, gettext as _
from markupsafe import Markup, escape

from .. import messages
from ..models_common import utcnow
from . import i18n


def dt(value: datetime | None, fmt: str | None = None) -> str:
    """A date and time in the reader's time zone and language, with the zone named (one format everywhere)."""
    return messages.format_moment(value)


def ago(value: datetime | None) -> Markup:
    """"2 days ago", with the exact time (and zone) on hover and in the ``datetime`` attribute."""
    if value is None:
        return Markup("—")
    text = format_timedelta(value - utcnow(), add_direction=True)
    return Markup('<time datetime="{}" title="{}">{}</time>').format(value.isoformat(), dt(value), text)


def filesize(n: int | None) -> str:
    return messages.format_size(n)


def percent(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "—"
    return f"{format_decimal(round(value * 100, digits))} %"


def changelog_html(text: str | None) -> Markup:
    """Markdown rendered and sanitised by the releases package (never raw); too deep nesting shown as text."""
    from ..releases.changelog import ChangelogTooDeepError, ChangelogTooLargeError, render

    try:
        return Markup(render(text or ""))  # noqa: S704 - nh3-sanitised HTML
    except (ChangelogTooDeepError, ChangelogTooLargeError):
        return Markup("<pre>%s</pre>") % (text or "")


def stored_changelog(release: Any) -> Markup:
    """A release's changelog as rendered and sanitised when it was published."""
    return Markup(release.changelog_html or "")  # noqa: S704 - sanitised at publish


def label(value: Any, table: str | None) -> str:
    if table is None:
        return "—" if value in (None, "") else str(value)
    labels = getattr(i18n, f"{table.upper()}_LABELS")
    found = labels.get(value)
    return str(found) if found is not None else ("—" if value in (None, "") else str(value))


def systext(row: Any, column: str) -> str:
    """A system-written text of a row in the reader's language (stored text for older rows)."""
    return messages.text_of(row, column)


def render_message(message: Any) -> str:
    """A Message (or its JSON) in the reader's language; a plain string is a person's words, shown as written."""
    if isinstance(message, str):
        return message
    return messages.render(message)


GROUP_REF = re.compile(r"(?<![\w&])#(\d{1,9})\b")


def group_links(text: str, staff: bool = False) -> Markup:
    """Escape ``text`` and, for staff, turn ``#12`` references into links to failure group 12."""
    escaped = str(escape(text))
    if not staff:
        return Markup(escaped)  # noqa: S704 - escaped above
    return Markup(GROUP_REF.sub(  # noqa: S704 - escaped above; the link is built from digits only
        lambda m: f'<a href="{url_for("console.failure_group_detail", group_id=int(m.group(1)))}">#{m.group(1)}</a>',
        escaped))


def audit_action(action: str) -> str:
    code = f"audit.{action}"
    return messages.render(messages.Message(code)) if code in messages.CATALOGUE else action


def audit_value(key: str, value: Any) -> str:
    """An audit detail's value in words: labels, shares, sizes and lists instead of Python reprs."""
    if isinstance(value, bool):
        return str(_("yes") if value else _("no"))
    if value is None or value == "":
        return "—"
    if key in ("percent", "threshold", "failure_rate") and isinstance(value, (int, float)):
        return messages.format_percent(value)
    if key == "size" and isinstance(value, int):
        return messages.format_size(value)
    if key in ("kind", "status", "priority", "source") and isinstance(value, str):
        return messages.label_text(key, value)
    if isinstance(value, (list, tuple)):
        return ", ".join(audit_value(key, v) for v in value) or "—"
    if isinstance(value, dict):
        return "; ".join(f"{field_label(k)}: {audit_value(k, v)}" for k, v in value.items()) or "—"
    return str(value)


def field_label(key: str) -> str:
    return messages.label_text("field", key) if key in messages.FIELD_LABELS else key.replace("_", " ")


def url_with(**changes: Any) -> str:
    """The current page's URL with some query arguments replaced (None removes one)."""
    args = request.args.to_dict(flat=False)
    for k, v in changes.items():
        if v is None or v == "":
            args.pop(k, None)
        else:
            args[k] = [str(v)]
    return url_for(request.endpoint or "index", **(request.view_args or {}), **args)


def duration(seconds: float | None) -> str:
    """A span of time in the reader's language, to the two largest units ("2 days 3 hours")."""
    if seconds is None:
        return "—"
    from babel.dates import format_timedelta
    from datetime import timedelta
    from flask_babel import get_locale

    return format_timedelta(timedelta(seconds=seconds), threshold=1.5, locale=str(get_locale() or "en"))


def init_app(app: Flask) -> None:
    app.jinja_env.filters.update(duration=duration, dt=dt, ago=ago, filesize=filesize, percent=percent, changelog=changelog_html,
                                 stored_changelog=stored_changelog, label=label, systext=systext, message=render_message, audit_action=audit_action,
                                 field_label=field_label, group_links=group_links)
    from ..support.services import halt_reason

    app.jinja_env.globals.update(url_with=url_with, i18n=i18n, halt_reason=halt_reason, audit_value=audit_value)
    app.jinja_env.trim_blocks = True
    app.jinja_env.lstrip_blocks = True
