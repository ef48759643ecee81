"""Template filters and globals: dates, sizes, labels, the sanitised changelog."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Flask, request, url_for
from flask_babel import format_datetime, format_decimal, format_timedelta
from markupsafe import Markup

from ..models_common import utcnow
from . import i18n


def dt(value: datetime | None, fmt: str = "d MMM y, HH:mm") -> str:
    """A date and time in UTC, with month names in the page's language."""
    if value is None:
        return "—"
    return format_datetime(value, fmt)


def ago(value: datetime | None) -> str:
    if value is None:
        return "—"
    return format_timedelta(value - utcnow(), add_direction=True)


def filesize(n: int | None) -> str:
    if n is None:
        return "—"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{format_decimal(round(size, 1))} {unit}"
        size /= 1024
    return str(n)  # pragma: no cover


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


def label(value: Any, table: str) -> str:
    labels = getattr(i18n, f"{table.upper()}_LABELS")
    found = labels.get(value)
    return str(found) if found is not None else str(value)


def url_with(**changes: Any) -> str:
    """The current page's URL with some query arguments replaced (None removes one)."""
    args = request.args.to_dict(flat=False)
    for k, v in changes.items():
        if v is None or v == "":
            args.pop(k, None)
        else:
            args[k] = [str(v)]
    return url_for(request.endpoint or "index", **(request.view_args or {}), **args)


def init_app(app: Flask) -> None:
    app.jinja_env.filters.update(dt=dt, ago=ago, filesize=filesize, percent=percent, changelog=changelog_html,
                                 stored_changelog=stored_changelog,
                                 label=label)
    app.jinja_env.globals.update(url_with=url_with, i18n=i18n)
    app.jinja_env.trim_blocks = True
    app.jinja_env.lstrip_blocks = True
