"""Browser tests: Playwright driving Debian's Chromium (``/usr/bin/chromium``) against a live server.

They run on the embedded deployment only (SQLite + local disk): this folder overrides the
``backend`` fixture, so no ``-k`` is needed. They skip, with the reason, when Playwright or
Chromium is missing, unless ``REQUIRE_BROWSER=1`` (CI), which turns the skip into a failure.
Playwright's own browser downloads are never used (``executable_path``). Screenshots of the
main pages are written to ``tests/browser/screenshots/`` (git-ignored) on every run.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from conftest import skip_or_fail

from browser.helpers import CHROMIUM, CHROMIUM_ARGS, DESKTOP, PASSWORD


@pytest.fixture
def backend() -> str:
    """Browser tests run on SQLite + local disk only (the scale-out pairing is covered by the functional tests)."""
    return "sqlite-local"


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        skip_or_fail("REQUIRE_BROWSER", "playwright is not installed (pip install playwright)")
    if not os.path.exists(CHROMIUM):
        skip_or_fail("REQUIRE_BROWSER", f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


class Pages:
    """Opens browser contexts (one per person) and closes them all at the end of a test."""

    def __init__(self, browser: Any, base_url: str) -> None:
        self.browser, self.base_url = browser, base_url
        self._contexts: list[Any] = []

    def new(self, viewport: dict[str, int] | None = None, locale: str = "en-GB") -> Any:
        ctx = self.browser.new_context(viewport=viewport or DESKTOP, locale=locale, base_url=self.base_url)
        ctx.set_default_timeout(15_000)
        self._contexts.append(ctx)
        return ctx.new_page()

    def close(self) -> None:
        for ctx in self._contexts:
            for page in ctx.pages:
                page.close()
            ctx.close()


@dataclass
class DemoSite:
    url: str
    summary: Any
    app: Any


@pytest.fixture
def site(app: Any, live_server: Any) -> DemoSite:
    """The demo data, served by gunicorn; every demo user's password is PASSWORD."""
    from release_server import demo
    from release_server.db import db

    with app.app_context():
        summary = demo.load(db.session, staff_password=PASSWORD, customer_password=PASSWORD)
        db.commit()
    return DemoSite(live_server.url, summary, app)


@pytest.fixture
def pages(browser: Any, site: DemoSite) -> Iterator[Pages]:
    p = Pages(browser, site.url)
    yield p
    p.close()
