"""Languages of the console and portal (Flask-Babel).

Shipped: English (the source language) and Russian (``translations/ru``). The language
of a page is, in order: the logged-in person's setting (stored on their account by the
``/language`` form, so it follows them to any browser); for a customer's user, the
customer's default language (set on the customer's console page); the choice made in this browser
before logging in (session and a one-year ``lang`` cookie); the best match of the
browser's ``Accept-Language``; English.

Times are shown in the person's time zone (``timezone`` on their account, set on the
preferences page), else their customer's, else UTC, and always with the zone named.

Compiled catalogs (``.mo``) are committed beside their ``.po`` sources; a test checks
that they match. ``scripts/i18n`` extracts every translatable string of the package (code
and templates, with the keywords in :data:`KEYWORDS`), updates the catalogs and compiles
them; ``scripts/i18n check`` (or ``python -m release_server.web.i18n check``) lists the
strings that have no translation, with where they are used.
"""
from __future__ import annotations

import sys
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from flask import Flask, current_app, has_request_context, redirect, request, session
from flask_babel import Babel, lazy_gettext as _l
from werkzeug.wrappers import Response

from ..messages import DEFAULT_LANGUAGE as DEFAULT, LANGUAGES  # noqa: F401 - re-exported
from ..messages import (DEPARTMENT_LABELS, FIELD_LABELS, FIX_STATE_LABELS, GROUP_STATE_LABELS,  # noqa: F401
                        KIND_LABELS, OUTCOME_LABELS, PRIORITY_LABELS, REVIEW_LABELS, ROLLOUT_LABELS,
                        SOURCE_LABELS, STATUS_LABELS, TUF_ROLE_LABELS)

COOKIE = "lang"
TRANSLATIONS_DIR = Path(__file__).parent / "translations"
PACKAGE_DIR = Path(__file__).resolve().parents[1]
#: Extraction keywords beyond Babel's defaults (``_``, ``gettext``, ``ngettext``, ...).
KEYWORDS = ("_l", "lazy_gettext", "lazy_ngettext:1,2")


def _account() -> object | None:
    from .security import current_customer_user, current_staff

    return current_staff() or current_customer_user()


def select_locale() -> str:
    if not has_request_context():
        return DEFAULT
    account = _account()
    if account is not None and getattr(account, "locale", None) in LANGUAGES:
        return account.locale  # type: ignore[attr-defined]
    customer = getattr(account, "customer", None)  # a customer's user: the customer's default language
    if customer is not None and customer.locale in LANGUAGES:
        return customer.locale
    chosen = session.get("lang") or request.cookies.get(COOKIE)
    if chosen in LANGUAGES:
        return chosen
    return request.accept_languages.best_match(list(LANGUAGES), default=DEFAULT) or DEFAULT


def select_timezone() -> str | None:
    """The person's time zone, else their customer's (for a customer's users), else the server's (UTC)."""
    if not has_request_context():
        return None
    account = _account()
    zone = getattr(account, "timezone", None)
    if not zone and account is not None and getattr(account, "customer", None) is not None:
        zone = account.customer.timezone  # type: ignore[attr-defined]
    return zone if zone in time_zones() else None


@lru_cache(maxsize=1)
def time_zones() -> frozenset[str]:
    import zoneinfo

    return frozenset(z for z in zoneinfo.available_timezones() if "/" in z and not z.startswith(("Etc/", "SystemV/")))


def init_app(app: Flask) -> None:
    app.config.setdefault("BABEL_DEFAULT_LOCALE", DEFAULT)
    app.config.setdefault("BABEL_DEFAULT_TIMEZONE", "UTC")
    app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES", str(TRANSLATIONS_DIR))
    Babel(app, locale_selector=select_locale, timezone_selector=select_timezone)

    @app.context_processor
    def _languages() -> dict:
        from flask_babel import get_locale

        return {"LANGUAGES": LANGUAGES, "current_language": str(get_locale() or DEFAULT)}


def _safe_next(target: str | None) -> str:
    """Only same-site relative paths: never an open redirect, never a control character or line break
    (a ``Location`` header cannot hold one); anything else goes home."""
    if not target or not isinstance(target, str):
        return "/"
    if any(ord(ch) < 0x20 or ch in "\x7f\x85\u2028\u2029" for ch in target):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def set_language_view() -> Response:
    lang = request.form.get("lang", "")
    resp = redirect(_safe_next(request.form.get("next")))
    if lang in LANGUAGES:
        session["lang"] = lang
        account = _account()
        if account is not None:  # remembered on the account too, for every browser
            from ..db import db

            account.locale = lang  # type: ignore[attr-defined]
            db.commit()
        resp.set_cookie(COOKIE, lang, max_age=365 * 24 * 3600, samesite="Lax", httponly=True,
                        secure=bool(current_app.config.get("SESSION_COOKIE_SECURE")))
    return resp


def preferences_view() -> Response | tuple[str, int] | str:
    """``/preferences``: the logged-in person's language and time zone, and for staff the name customers
    see (redirect after a save)."""
    from flask import abort, flash, render_template
    from flask_babel import gettext

    from ..db import db
    from .forms import Form

    account = _account()
    if account is None:
        abort(404)
    staff = hasattr(account, "role")
    form = Form(request.form if request.method == "POST" else
                {"lang": getattr(account, "locale", None) or "", "timezone": getattr(account, "timezone", None) or "",
                 "display_name": getattr(account, "display_name", None) or ""})
    form.ids["display_name"] = "pref-display-name"
    status = 200
    if request.method == "POST":
        lang = form.choice("lang", list(LANGUAGES), required=False)
        zone = form.choice("timezone", time_zones(), required=False)
        shown = form.text("display_name", max_length=120) if staff else None
        if form.ok:
            account.locale = lang  # type: ignore[attr-defined]
            account.timezone = zone  # type: ignore[attr-defined]
            if staff:
                from ..support.desk import set_display_name

                set_display_name(db.session, account, shown)
            if lang:
                session["lang"] = lang
            db.commit()
            flash(gettext("Preferences saved."))
            return redirect("/preferences")
        status = 400
    return render_template("preferences.html", form=form, portal=not staff, zones=sorted(time_zones())), status


# Words used on many pages, translated once (the shared tables live in release_server.messages).
KIND_HELP = {"incident": _l("A failure that happened to one of your users"),
             "problem": _l("A failure that stopped the application or made it unusable"),
             "service": _l("A request for information"),
             "development": _l("A request to change or extend the application")}
HEALTH_LABELS = {"up_to_date": _l("Up to date"), "updating": _l("Updating"), "failing": _l("Failing"),
                 "stale": _l("Stale"), "updates_pending": _l("Updates pending")}
MEMBER_LABELS = {"installed": _l("Installed"), "failed": _l("Failed, not working"), "rolled_back": _l("Rolled back"),
                 "offered": _l("Offered, no attempt yet"), "downloading": _l("Downloading or waiting for its window"),
                 "not_in_share": _l("Not yet in the share")}
ROLE_LABELS = {"admin": _l("Administrator"), "publisher": _l("Publisher"), "support": _l("Support")}
EVENT_LABELS = {"created": _l("Request registered"), "reply": _l("Reply"), "note": _l("Internal note"),
                "request_info": _l("Information requested"), "customer_message": _l("Message from the customer"),
                "status": _l("Status changed"), "changed": _l("Changed"), "attachment": _l("Attachment"),
                "linked": _l("Failure groups linked"), "merged": _l("Merged"), "follow_up": _l("Follow-up"),
                "failure_report": _l("Failure report"), "mail_note": _l("Mail")}


def compile_catalogs() -> list[Path]:
    """Compile every ``messages.po`` under translations/ to its ``.mo`` (build step and tests)."""
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    written = []
    for po in sorted(TRANSLATIONS_DIR.glob("*/LC_MESSAGES/messages.po")):
        with po.open("rb") as fh:
            catalog = read_po(fh)
        mo = po.with_suffix(".mo")
        with mo.open("wb") as fh:
            write_mo(fh, catalog)
        written.append(mo)
    return written


def extract_messages() -> dict[str, list[tuple[str, int]]]:
    """Every translatable string of the package (code and templates) with where it is used."""
    from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
    from babel.messages.frontend import parse_mapping_cfg
    from babel.messages.frontend import parse_keywords

    with (TRANSLATIONS_DIR / "babel.cfg").open() as fh:
        method_map, options_map = parse_mapping_cfg(fh)
    keywords = dict(DEFAULT_KEYWORDS)
    keywords.update(parse_keywords(list(KEYWORDS)))
    found: dict[str, list[tuple[str, int]]] = {}
    for filename, lineno, message, _comments, _context in extract_from_dir(
            str(PACKAGE_DIR), method_map, options_map, keywords=keywords):
        msgid = message[0] if isinstance(message, (tuple, list)) else message
        if msgid:
            found.setdefault(msgid, []).append((f"release_server/{filename}", lineno))
    return found


def missing_translations(locale: str) -> dict[str, list[tuple[str, int]]]:
    """Strings used in the package that the locale's catalog lacks, leaves empty or marks fuzzy."""
    from babel.messages.pofile import read_po

    with (TRANSLATIONS_DIR / locale / "LC_MESSAGES" / "messages.po").open("rb") as fh:
        catalog = read_po(fh)
    missing = {}
    for msgid, where in extract_messages().items():
        entry = catalog.get(msgid)
        strings = entry.string if entry is not None else None
        translated = all(strings) if isinstance(strings, (tuple, list)) else bool(strings)
        if entry is None or entry.fuzzy or not translated:
            missing[msgid] = where
    return missing


def format_missing(locale: str, missing: dict[str, list[tuple[str, int]]]) -> str:
    lines = [f"{len(missing)} string(s) without a {locale} translation "
             f"(add them to release_server/web/translations/{locale}/LC_MESSAGES/messages.po, then scripts/i18n):"]
    for msgid, where in sorted(missing.items(), key=lambda item: item[1][0]):
        places = ", ".join(f"{f}:{n}" for f, n in where[:3]) + (" ..." if len(where) > 3 else "")
        lines.append(f"  {msgid!r}  ({places})")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover - maintenance helper
    if sys.argv[1:] == ["compile"]:
        for path in compile_catalogs():
            print(path)
    elif sys.argv[1:] == ["check"]:
        failed = False
        for lang in LANGUAGES:
            if lang == DEFAULT:
                continue
            gaps = missing_translations(lang)
            if gaps:
                failed = True
                print(format_missing(lang, gaps), file=sys.stderr)
            else:
                print(f"{lang}: every string translated")
        sys.exit(1 if failed else 0)
    else:
        print("usage: python -m release_server.web.i18n compile|check", file=sys.stderr)
        sys.exit(2)
