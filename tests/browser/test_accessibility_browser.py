"""WCAG 2.1 AA on the main pages, checked by axe-core (from npm, a test-time dependency) run inside each page.

``tests/browser/package.json`` pins axe-core; ``npm ci --prefix tests/browser`` installs it
(``.ci/run`` does). Without it the test skips with the reason, unless ``REQUIRE_BROWSER=1``.
The pages are checked in English and Russian, at desktop and phone widths; any violation
of a WCAG 2.0/2.1 A or AA rule fails the test and names the rule and the elements.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conftest import skip_or_fail

from browser.helpers import CHROMIUM, DESKTOP, PHONE, PASSWORD, shot

AXE = Path(__file__).parent / "node_modules" / "axe-core" / "axe.min.js"
RULES = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


def violations(page: Any) -> list[str]:
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("(tags) => axe.run(document, {runOnly: {type: 'tag', values: tags}})", RULES)
    out = []
    for v in result["violations"]:
        nodes = "; ".join(n["target"][0] if isinstance(n["target"][0], str) else str(n["target"][0])
                          for n in v["nodes"][:6])
        detail = v["nodes"][0].get("failureSummary", "").replace("\n", " ")[:240] if v["nodes"] else ""
        out.append(f"{v['id']} ({len(v['nodes'])}): {nodes} | {detail}")
    return out


def context(browser: Any, base_url: str, viewport: dict, locale: str) -> Any:
    # axe is injected as a script: the pages' Content-Security-Policy would refuse it, so the test context bypasses it
    ctx = browser.new_context(viewport=viewport, locale=locale, base_url=base_url, bypass_csp=True)
    ctx.set_default_timeout(15_000)
    return ctx


@pytest.mark.parametrize("viewport, locale", [(DESKTOP, "en-GB"), (PHONE, "ru-RU")], ids=["desktop-en", "phone-ru"])
def test_main_pages_have_no_wcag_aa_violations(browser: Any, site: Any, viewport: dict, locale: str) -> None:
    if not AXE.exists():
        skip_or_fail("REQUIRE_BROWSER", f"axe-core is not installed ({AXE}); run: npm ci --prefix tests/browser")
    s = site.summary
    ctx = context(browser, site.url, viewport, locale)
    try:
        page = ctx.new_page()
        found: dict[str, list[str]] = {}
        for url in ("/console/login", "/portal/login"):
            page.goto(url)
            found[url] = violations(page)
        page.goto("/console/login")
        page.locator("#f-username").fill("oleg.support")
        page.locator("#f-password").fill(PASSWORD)
        with page.expect_navigation():
            page.locator("main button[type=submit]").click()
        for url in ("/console/", "/console/tickets", f"/console/tickets/{s.failure_ticket}", "/console/installations",
                    "/console/customers", "/console/customers/1", "/console/failure-groups",
                    f"/console/rollouts/{s.halted_rollout_id}", f"/console/rollouts/{s.running_rollout_id}",
                    "/console/releases", "/console/no-such-page", "/preferences"):
            page.goto(url)
            found[url] = violations(page)
        page.goto("/console/failure-groups")
        page.locator("table.groups tbody tr a").first.click()
        found["failure group"] = violations(page)
        # the pages of pins, installation actions and the ticket desk
        for url in ("/console/pins", "/console/canned-replies", "/console/tickets/phone",
                    f"/console/tickets/{s.tickets['service']}", "/console/rollouts",
                    "/console/releases?component=server&page=1"):
            page.goto(url)
            found[url] = violations(page)
        page.goto("/console/installations")
        page.locator("table tbody tr a[href*='/console/installations/']").first.click()
        found["installation"] = violations(page)
        page.goto(page.url + "/revoke")
        found["installation revoke"] = violations(page)
        page.goto("/console/pins")
        page.locator("#pin-form button[type=submit]").click()  # refused: the error summary and marked fields
        found["pins with errors"] = violations(page)
        portal = ctx.new_page()
        portal.goto("/portal/login")
        portal.locator("#f-email").fill(s.customers[0][0])
        portal.locator("#f-password").fill(PASSWORD)
        with portal.expect_navigation():
            portal.locator("main button[type=submit]").click()
        for url in ("/portal/tickets", "/portal/tickets/new", "/portal/installations",
                    f"/portal/tickets/{s.failure_ticket}"):
            portal.goto(url)
            found[url] = violations(portal)
        shot(portal, f"a11y-portal-{locale}")
        bad = {u: v for u, v in found.items() if v}
        assert not bad, "\n".join(f"{u}:\n  " + "\n  ".join(v) for u, v in bad.items())
    finally:
        ctx.close()
