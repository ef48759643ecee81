"""System texts in the reader's language, failure group pages, error pages, internal tickets, redirect after
post, rollout start and chart: Chromium at desktop and phone widths, in English and Russian."""
from __future__ import annotations

import re
from typing import Any

import pytest

from browser.helpers import PHONE, customer_login, no_sideways_scroll, shot, staff_login

WIDE = {"width": 1366, "height": 900}
LATIN_SENTENCE = re.compile(r"\b(the|was|were|failed|rolled back|installation|update of)\b", re.I)


def russian(page: Any) -> None:
    page.get_by_label("Language").select_option("ru")
    with page.expect_navigation():
        page.get_by_role("button", name="Switch").click()
    assert page.locator("html").get_attribute("lang") == "ru"


@pytest.mark.parametrize("viewport", [WIDE, PHONE], ids=["desktop", "phone"])
def test_failure_ticket_and_group_in_russian_and_english(pages: Any, site: Any, viewport: dict) -> None:
    tag = "phone" if viewport is PHONE else "desktop"
    number = site.summary.failure_ticket
    page = pages.new(viewport=viewport)
    staff_login(page, "oleg.support")
    page.goto(f"/console/tickets/{number}")
    english_subject = page.locator("h1").inner_text()
    assert "Update of" in english_subject
    assert page.locator(".ev-ev-created, .ev-created .ev-body").first.inner_text().count("<n>") == 0
    russian(page)
    page.goto(f"/console/tickets/{number}")
    subject = page.locator("h1").inner_text()
    assert "Не удалось обновить" in subject and "Update of" not in subject
    timeline = page.locator("#timeline").inner_text()
    assert not LATIN_SENTENCE.search(re.sub(r"^.*\n.*(ERROR|error|at |Traceback).*$", "", timeline, flags=re.M)
                                     .split("\n")[0])
    assert "Отчёт о сбое" in page.locator(".ticket-main").inner_text()
    hover = page.locator("#timeline time").first.get_attribute("datetime")
    assert hover and re.search(r"UTC", page.locator("#timeline time").first.inner_text())
    assert no_sideways_scroll(page)
    shot(page, f"{tag}-console-ticket-failure-ru")
    # the group is a page of its own, reached from the ticket and from the navigation
    page.locator(".failure-group h2 a").first.click()
    assert page.get_by_role("heading", name=re.compile("Группа сбоев №")).is_visible()
    assert page.locator("#group-chart svg").count() == 1 and page.locator("#group-sample").inner_text() != "—"
    assert page.locator("#group-tickets a", has_text=number).count() == 1
    assert no_sideways_scroll(page)
    shot(page, f"{tag}-console-failure-group-ru")
    page.goto("/console/failure-groups")
    assert page.get_by_role("heading", name="Группы сбоев").is_visible()
    assert page.locator("table.groups tbody tr").count() >= 1
    assert no_sideways_scroll(page)
    shot(page, f"{tag}-console-failure-groups-ru")


def test_failure_group_resolve_and_filter_in_english(pages: Any, site: Any) -> None:
    page = pages.new(viewport=WIDE)
    staff_login(page, "oleg.support")
    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Failure groups").click()
    before = int(page.locator("#group-count").inner_text().split()[0])
    assert before >= 1
    page.locator("table.groups tbody tr a").first.click()
    url = page.url
    page.get_by_label("Resolved", exact=True).check()
    page.get_by_label("Resolved in version (optional)").fill("2.4.2")
    page.get_by_role("button", name="Save state").click()
    assert page.url == url  # redirect after post back to the group
    assert page.get_by_text("State saved.").is_visible()
    assert page.locator("#group-state").inner_text() == "Resolved"
    assert page.get_by_text("Resolved in version 2.4.2.").is_visible()
    page.reload()  # a reload repeats nothing
    assert page.locator(".flash").count() == 0
    page.goto("/console/failure-groups")
    assert int(page.locator("#group-count").inner_text().split()[0]) == before - 1
    page.get_by_label("State").select_option("resolved")
    page.get_by_label("Sort by").select_option("count")
    page.get_by_role("button", name="Show").click()
    assert int(page.locator("#group-count").inner_text().split()[0]) == 1
    shot(page, "console-failure-groups-resolved")


def test_internal_halt_ticket_has_notes_and_status_only(pages: Any, site: Any) -> None:
    page = pages.new()
    staff_login(page, "oleg.support")
    page.goto(f"/console/rollouts/{site.summary.halted_rollout_id}")
    assert "Как остановлена" not in page.content()
    assert page.get_by_text("automatically, by the failure-rate rule").is_visible()
    page.locator("#halt-box a[href*='/console/tickets/']").first.click()
    assert page.locator("#internal-hint").is_visible()
    for name in ("Send reply", "Ask the customer", "Mark processed"):
        assert page.get_by_role("button", name=name).count() == 0
    assert page.get_by_role("button", name="Add note").is_visible()
    assert "automatic: True" not in page.content() and "failure_rate:" not in page.content()
    assert page.locator("#change-status option[selected]").inner_text().endswith("(current)")
    shot(page, "console-ticket-internal")
    russian(page)
    assert "Раскатка остановлена" in page.locator("h1").inner_text()
    assert page.get_by_role("button", name="Сменить статус").is_visible()
    shot(page, "console-ticket-internal-ru")


@pytest.mark.parametrize("lang", ["en", "ru"])
def test_error_pages_are_styled_translated_and_have_navigation(pages: Any, site: Any, lang: str) -> None:
    page = pages.new(locale="ru-RU" if lang == "ru" else "en-GB")
    resp = page.goto("/console/no-such-page")
    assert resp.status == 404
    assert page.locator("#error-page").is_visible()
    assert page.locator("h1").inner_text() == ("Не найдено" if lang == "ru" else "Not found")
    page = pages.new()
    staff_login(page, "oleg.support")
    if lang == "ru":
        russian(page)
    resp = page.goto("/console/nothing/here")
    assert resp.status == 404 and page.get_by_role("navigation").count() >= 1
    assert page.locator("#error-page a.button").first.is_visible()
    resp = page.goto("/console/audit")  # support may not open the audit log
    assert resp.status == 403 and page.locator("#error-page").is_visible()
    shot(page, f"console-403-{lang}")
    portal = pages.new(viewport=PHONE)
    customer_login(portal, site.summary.customers[1 if lang == "ru" else 0][0])  # Ромашка reads Russian
    resp = portal.goto("/portal/no-such-thing")
    assert resp.status == 404 and portal.locator("#error-page").is_visible()
    assert portal.get_by_role("navigation").count() >= 1 and no_sideways_scroll(portal)
    shot(portal, f"phone-portal-404-{lang}")


def test_enrollment_token_redirect_after_post_and_customer_defaults(pages: Any, site: Any) -> None:
    page = pages.new(viewport=WIDE)
    staff_login(page, "oleg.support")
    page.goto("/console/customers")
    assert no_sideways_scroll(page)
    box = page.locator("main table").first.bounding_box()
    assert box is not None and box["x"] + box["width"] <= 1366  # the customers table is not clipped
    shot(page, "console-customers-1366")
    page.goto("/console/customers/2")
    tokens_before = page.locator("text=/rse_|Prefix|Префикс/").count()
    page.get_by_role("button", name=re.compile("token", re.I)).first.click()
    assert page.url.endswith("/console/customers/2")  # redirected: a reload makes no second token
    assert page.locator("#new-secret code").inner_text().startswith("rse_")
    page.reload()
    assert page.locator("#new-secret").count() == 0
    del tokens_before
    # the Russian customer's defaults
    assert page.locator("#cust-locale").input_value() == "ru"
    assert page.locator("#cust-tz").input_value() == "Europe/Moscow"


def test_russian_customer_reads_the_portal_in_russian_with_its_zone(pages: Any, site: Any) -> None:
    email = site.summary.customers[1][0]  # ООО «Ромашка»: Russian by default, Moscow time
    for viewport, tag in ((WIDE, "desktop"), (PHONE, "phone")):
        page = pages.new(viewport=viewport, locale="en-GB")
        customer_login(page, email)
        assert page.locator("html").get_attribute("lang") == "ru"
        page.goto("/portal/installations")
        assert no_sideways_scroll(page)
        labels = page.locator(".installation h2 .badge").all_inner_texts()
        assert "Up to date" not in labels
        for card in page.locator(".installation").all():  # no "up to date" beside pending updates
            if card.get_by_text("Ожидающие обновления").count() or card.locator("details.offer").count():
                assert card.locator("h2 .badge").inner_text() != "Актуальна"
        assert "UTC+3" in (page.locator(".installation time").first.get_attribute("title") or "")  # Moscow
        shot(page, f"{tag}-portal-ticket-ru")


def test_draft_start_confirmation_and_rollout_chart(pages: Any, site: Any) -> None:
    page = pages.new(viewport=WIDE)
    staff_login(page, "maria.release")
    page.goto(f"/console/rollouts/{site.summary.draft_rollout_id}/start")
    notes = page.locator("#no-schedule-note, #start-share, #critical-note")
    assert notes.count() == 1
    assert re.search(r"\d+%", notes.inner_text()) or notes.get_attribute("id") == "critical-note"
    shot(page, "console-rollout-start-confirm")
    page.goto(f"/console/rollouts/{site.summary.running_rollout_id}")
    chart = page.locator("#rollout-chart svg")
    texts = chart.locator("text").evaluate_all("els => els.map(e => e.textContent)")
    ticks = [t for t in texts if re.fullmatch(r"\d+(\.\d+)?", t or "")]
    assert ticks and all(float(t).is_integer() for t in ticks)  # no half attempts on the axis
    assert "failure rate so far" in chart.locator("title").first.text_content().lower()
    russian(page)
    assert "нарастающим итогом" in page.locator("#rollout-chart").inner_html()
    phone = pages.new(viewport=PHONE)
    staff_login(phone, "maria.release")
    phone.goto(f"/console/rollouts/{site.summary.running_rollout_id}")
    assert no_sideways_scroll(phone)
    size = phone.evaluate("parseFloat(getComputedStyle(document.querySelector('#rollout-chart svg text')).fontSize)"
                          " * document.querySelector('#rollout-chart svg').getBoundingClientRect().width / 720")
    assert size >= 9.5, size  # readable on a phone
    shot(phone, "phone-console-rollout-chart")


@pytest.mark.parametrize("lang", ["en", "ru"])
def test_lists_fit_a_phone_without_sideways_scrolling(pages: Any, site: Any, lang: str) -> None:
    page = pages.new(viewport=PHONE)
    staff_login(page, "oleg.support")
    if lang == "ru":
        russian(page)
    for url in ("/console/tickets", "/console/installations", "/console/customers", "/console/rollouts",
                "/console/releases", "/console/failure-groups", "/console/"):
        page.goto(url)
        assert no_sideways_scroll(page), url
        smallest = page.evaluate("Math.min(...[...document.querySelectorAll('main td, main th, main p')]"
                                 ".filter(e => e.offsetParent).map(e => parseFloat(getComputedStyle(e).fontSize)))")
        assert smallest >= 12, (url, smallest)
    shot(page, f"phone-console-tickets-{lang}")


@pytest.mark.parametrize("viewport, lang", [(WIDE, "en"), (PHONE, "ru")], ids=["desktop-en", "phone-ru"])
def test_rollout_lists_its_installations_by_state(pages: Any, site: Any, viewport: dict, lang: str) -> None:
    page = pages.new(viewport=viewport)
    staff_login(page, "maria.release")
    if lang == "ru":
        russian(page)
    page.goto(f"/console/rollouts/{site.summary.halted_rollout_id}")
    box = page.locator("#rollout-installations")
    assert box.locator("tbody tr[data-state]").count() >= 1
    failed = box.locator("tbody tr[data-state='failed'], tbody tr[data-state='rolled_back']")
    assert failed.count() >= 1  # the halt's failures, each with its attempt's log
    failed.first.locator("summary").click()
    assert failed.first.locator("pre.log, p").first.is_visible()
    tab = box.locator(".tabs a").nth(1)
    tab.click()
    states = set(page.locator("#rollout-installations tbody tr[data-state]").evaluate_all(
        "rows => rows.map(r => r.dataset.state)"))
    assert len(states) <= 1
    assert no_sideways_scroll(page)
    shot(page, f"{'phone' if viewport is PHONE else 'desktop'}-console-rollout-installations-{lang}")
