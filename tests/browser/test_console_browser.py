"""The staff console in Chromium: login, a rollout started and widened with its chart, phone width, Russian."""
from __future__ import annotations

import re
from typing import Any

from browser.helpers import PHONE, no_sideways_scroll, shot, staff_login


def test_staff_login_and_dashboard(pages: Any, site: Any) -> None:
    page = pages.new()
    staff_login(page, "oleg.support", "wrong password")
    assert page.locator("#f-password-error").is_visible()
    shot(page, "console-login-error")
    staff_login(page, "oleg.support")
    assert page.url.endswith("/console/")
    assert page.get_by_role("heading", name="Dashboard").is_visible()
    nav = page.get_by_role("navigation", name="Sections")
    assert nav.get_by_role("link", name="Tickets").is_visible()
    assert nav.get_by_role("link", name="Audit log").count() == 0  # support is no admin
    assert page.locator("#adoption-chart svg").count() == 1 and page.locator("#tickets-chart svg rect").count() > 3
    assert page.locator("tr.row-halted").count() == 1
    shot(page, "console-dashboard")
    for url, name in (("/console/installations", "console-installations"), ("/console/releases/server/2.4.0",
                                                                            "console-release"),
                      ("/console/tickets", "console-tickets"), ("/console/customers/1", "console-customer"),
                      (f"/console/rollouts/{site.summary.halted_rollout_id}", "console-rollout-halted")):
        page.goto(url)
        shot(page, name)
    assert page.locator("#halt-box").is_visible()


def test_start_and_widen_a_rollout_and_see_its_chart(pages: Any, site: Any) -> None:
    page = pages.new()
    staff_login(page, "maria.release")
    # start the draft after the confirmation page
    page.goto(f"/console/rollouts/{site.summary.draft_rollout_id}")
    page.get_by_role("link", name="Start").click()
    assert page.get_by_role("heading", name="Start this rollout?").is_visible()
    page.get_by_label("Start with this share (%)").fill("10")
    shot(page, "console-rollout-confirm")
    page.get_by_role("button", name=re.compile("Yes, start")).click()
    assert page.locator("#rollout-state").inner_text() == "Running"
    assert page.locator("#rollout-percent").inner_text() == "10%"
    # widen the running rollout, which has attempts to draw
    page.goto(f"/console/rollouts/{site.summary.running_rollout_id}")
    before = page.locator("#rollout-percent").inner_text()
    page.get_by_role("link", name="Widen").click()
    page.get_by_label("New share of installations (%)").fill("5")
    page.get_by_role("button", name=re.compile("Yes, widen")).click()
    assert page.locator("#f-percent-error").is_visible()  # a rollout only widens
    page.get_by_label("New share of installations (%)").fill("75")
    page.get_by_role("button", name=re.compile("Yes, widen")).click()
    assert page.locator("#rollout-percent").inner_text() == "75%" != before
    chart = page.locator("#rollout-chart svg")
    assert chart.is_visible()
    assert chart.locator("rect").count() > 3 and chart.locator("rect.fail").count() >= 1
    assert chart.locator("path.rate").count() == 1
    shot(page, "console-rollout-chart")


def test_pages_fit_a_phone(pages: Any, site: Any) -> None:
    page = pages.new(viewport=PHONE)
    staff_login(page, "oleg.support")
    for url, name in (("/console/", "phone-console-dashboard"),
                      (f"/console/tickets/{site.summary.failure_ticket}", "phone-console-ticket"),
                      (f"/console/rollouts/{site.summary.running_rollout_id}", "phone-console-rollout")):
        page.goto(url)
        assert no_sideways_scroll(page), url
        shot(page, name)


def test_switching_to_russian(pages: Any, site: Any) -> None:
    page = pages.new(locale="en-GB")
    staff_login(page, "oleg.support")
    assert page.get_by_role("heading", name="Dashboard").is_visible()
    page.get_by_label("Language").select_option("ru")
    with page.expect_navigation():
        page.get_by_role("button", name="Switch").click()
    assert page.locator("html").get_attribute("lang") == "ru"
    assert page.get_by_role("heading", name="Сводка").is_visible()
    assert page.get_by_role("navigation", name="Разделы").get_by_role("link", name="Заявки").is_visible()
    shot(page, "console-dashboard-ru")
    page.goto(f"/console/tickets/{site.summary.failure_ticket}")
    assert page.get_by_role("button", name="Отправить ответ").is_visible()
    shot(page, "console-ticket-ru")
    # the choice stays after logging out and in again
    page.get_by_role("button", name="Выйти").click()
    assert page.get_by_role("heading", name="Вход для сотрудников").is_visible()
