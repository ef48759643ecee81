"""Rollouts down to each installation, pins, installation actions, and the ticket desk (sorting, bulk changes,
saved filters, composer with canned replies, merging, CC, display names, customers closing their requests):
Chromium at desktop and phone widths, in English and Russian."""
from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from browser.helpers import PASSWORD, PHONE, no_sideways_scroll, shot, staff_login

WIDE = {"width": 1366, "height": 900}


def russian(page: Any) -> None:
    page.get_by_label("Language", exact=True).select_option("ru")
    with page.expect_navigation():
        page.get_by_role("button", name="Switch").click()
    assert page.locator("html").get_attribute("lang") == "ru"


def focused_summary(page: Any) -> None:
    """The refused form's error summary has the keyboard focus (moved there once the page has loaded)."""
    page.wait_for_function("document.activeElement && document.activeElement.classList.contains('form-errors')")


def mark_fetching(site: Any, rollout_id: int) -> str:
    """Make one installation inside the rollout's share look as its last check left it: fetching the offer."""
    from release_server.db import db
    from release_server.rollouts import members, services

    with site.app.app_context():
        ro = services.get_rollout(db.session, rollout_id)
        offered = [m for m in members.rollout_members(db.session, ro) if m.state == "offered"]
        inst = offered[0].installation
        inst.state = "updating"
        db.commit()
        return inst.name


@pytest.mark.parametrize("viewport, lang", [(WIDE, "en"), (PHONE, "ru")], ids=["desktop-en", "phone-ru"])
def test_rollout_lists_its_installations_with_states_and_attempt_logs(pages: Any, site: Any, viewport: dict,
                                                                      lang: str) -> None:
    rid = site.summary.running_rollout_id
    name = mark_fetching(site, rid)
    page = pages.new(viewport=viewport)
    staff_login(page, "maria.release")
    if lang == "ru":
        russian(page)
    page.goto(f"/console/rollouts/{rid}")
    box = page.locator("#rollout-installations")
    tabs = box.get_by_role("navigation")
    assert tabs.get_by_role("link").count() == 7  # all + six states
    downloading = "Загружает или ждёт своего окна" if lang == "ru" else "Downloading or waiting for its window"
    tabs.get_by_role("link", name=re.compile("^" + re.escape(downloading))).click()
    rows = page.locator("#rollout-installations tbody tr[data-state]")
    assert rows.count() >= 1 and {rows.nth(i).get_attribute("data-state") for i in range(rows.count())} == {"downloading"}
    assert page.locator("#rollout-installations tbody", has_text=name).count() == 1
    assert no_sideways_scroll(page)
    shot(page, f"{lang}-rollout-downloading")
    page.goto(f"/console/rollouts/{rid}")
    tried = page.locator("#rollout-installations details.attempts").first
    if tried.count():
        tried.locator("summary").click()
        assert tried.locator(".attempt-log li").count() >= 1
        expect(tried.locator(".attempt-log .badge").first).to_be_visible()
    assert no_sideways_scroll(page)
    shot(page, f"{lang}-rollout-installations")
    # widening says how many more installations it admits
    page.goto(f"/console/rollouts/{rid}/widen")
    assert re.search(r"(≈|примерно на) \d+", page.locator("#widen-more").inner_text())


@pytest.mark.parametrize("viewport, lang", [(WIDE, "en"), (PHONE, "ru")], ids=["desktop-en", "phone-ru"])
def test_pins_page_and_installation_actions(pages: Any, site: Any, viewport: dict, lang: str) -> None:
    page = pages.new(viewport=viewport)
    staff_login(page, "oleg.support")
    if lang == "ru":
        russian(page)
    page.goto("/console/pins")
    expect(page.locator("#pins-list")).to_be_visible()
    # a refused pin: the errors are summarised above the form and the summary has the focus
    page.locator("#pin-value").fill("pilot")
    page.locator("#pin-pin").fill("2.x")
    page.locator("#pin-form button[type=submit]").click()
    expect(page.locator("#pin-form .form-errors")).to_be_visible()
    focused_summary(page)
    assert page.locator("#pin-pin").get_attribute("aria-invalid") == "true"
    shot(page, f"{lang}-pins-error")
    page.locator("#pin-pin").fill("2.3")
    page.locator("#pin-note").fill("pilots stay on 2.3")
    page.locator("#pin-form button[type=submit]").click()
    expect(page.locator("#pins-list tbody tr[data-pin]")).to_have_count(1)
    assert "2.3.*" in page.locator("#pins-list").inner_text()
    assert no_sideways_scroll(page)
    shot(page, f"{lang}-pins")
    page.locator("#pins-list tbody tr[data-pin] button").click()
    expect(page.locator("#pins-list tbody tr[data-pin]")).to_have_count(0)

    # an installation's channel, tags, window and its own pin
    page.goto("/console/installations")
    page.locator("table tbody tr a[href*='/console/installations/']").first.click()
    url = page.url
    page.locator("#set-window").fill("never")
    page.locator("#installation-settings button[type=submit]").click()
    expect(page.locator("#installation-settings .form-errors")).to_be_visible()
    focused_summary(page)
    page.locator("#set-tags").fill("pilot, moscow")
    page.locator("#set-window").fill("sat-sun 02:00-06:00")
    page.locator("#installation-settings button[type=submit]").click()
    expect(page.locator(".flashes")).to_be_visible()
    assert "sat-sun 02:00-06:00" in page.locator("#installation-settings").inner_html()
    assert page.locator("dd .badge", has_text="pilot").count() == 1
    page.locator("#installation-pins summary").click()
    page.locator("#ipin-exact").select_option("exact")
    page.locator("#ipin-pin").fill("2.4.0")
    page.locator("#ipin-form button[type=submit]").click()
    assert page.url == url
    assert "2.4.0" in page.locator("#installation-pins table").inner_text()
    assert no_sideways_scroll(page)
    shot(page, f"{lang}-installation-actions")
    # revoke after a confirmation
    page.locator("#revoke-link").click()
    page.locator("main button.danger").click()
    expect(page.locator("#revoked-badge")).to_be_visible()
    assert page.locator("#revoke-link").count() == 0


@pytest.mark.parametrize("viewport, lang", [(WIDE, "en"), (PHONE, "ru")], ids=["desktop-en", "phone-ru"])
def test_ticket_queue_sorting_bulk_and_saved_filters(pages: Any, site: Any, viewport: dict, lang: str) -> None:
    page = pages.new(viewport=viewport)
    staff_login(page, "oleg.support")
    if lang == "ru":
        russian(page)
    page.goto("/console/tickets?status=all")
    # sort by number both ways: the column headers on a desk, the sort fields on a phone
    if viewport is PHONE:
        page.locator("#f-sort").select_option("number")
        page.locator("#f-dir").select_option("asc")
        page.locator("form.filters[role=search] button[type=submit]").click()
    else:
        page.locator("th a.sort-link").nth(0).click()
    first = page.locator("tbody tr[data-number]").first.get_attribute("data-number")
    assert page.locator("th[aria-sort]").count() == 1
    if viewport is PHONE:
        page.locator("#f-dir").select_option("desc")
        page.locator("form.filters[role=search] button[type=submit]").click()
    else:
        page.locator("th a.sort-link").nth(0).click()
    assert page.locator("tbody tr[data-number]").first.get_attribute("data-number") != first
    # bulk: assign two tickets to me
    boxes = page.locator("tbody input[name=tickets]")
    chosen = [boxes.nth(i).get_attribute("value") for i in range(2)]
    boxes.nth(0).check()
    boxes.nth(1).check()
    page.locator("#bulk-action").select_option("assign")
    page.locator("#bulk-assignee").select_option("__me__")
    page.locator("#bulk-form .bulk-bar button[type=submit]").click()
    for number in chosen:
        assert page.locator(f"tr[data-number='{number}'] td.assignee").inner_text() == "oleg.support"
    # nothing chosen: the error is summarised and focused
    page.locator("#bulk-form .bulk-bar button[type=submit]").click()
    expect(page.locator("#bulk-form .form-errors")).to_be_visible()
    focused_summary(page)
    # save the current filter; its count stands beside it
    page.goto("/console/tickets?assignee=me")
    mine = page.locator("tbody tr[data-number]").count()
    page.locator("#save-name").fill("Mine" if lang == "en" else "Мои")
    page.locator("#save-filter button").click()
    link = page.locator("#saved-filters a", has_text="Mine" if lang == "en" else "Мои")
    assert link.locator(".count").inner_text() == str(mine)
    page.goto("/console/tickets")
    link.click()
    expect(page.locator("tbody tr[data-number]")).to_have_count(mine)
    assert no_sideways_scroll(page)
    shot(page, f"{lang}-tickets-queue")


@pytest.mark.parametrize("viewport, lang", [(WIDE, "en"), (PHONE, "ru")], ids=["desktop-en", "phone-ru"])
def test_composer_canned_reply_cc_merge_and_display_name(pages: Any, site: Any, viewport: dict, lang: str) -> None:
    s = site.summary
    number = s.tickets["service"]
    other = s.tickets["development"]
    page = pages.new(viewport=viewport)
    staff_login(page, "oleg.support")
    page.goto("/preferences")
    page.locator("#pref-display-name").fill("Oleg from support")
    page.locator("#preferences-form button[type=submit]").click()
    if lang == "ru":
        russian(page)
    page.goto("/console/canned-replies")
    page.locator("#canned-title").fill("Logs")
    page.locator("#canned-body").fill("Please send the agent log.")
    page.locator("main form button[type=submit]").last.click()
    expect(page.locator("#canned-list article h2", has_text="Logs")).to_have_count(1)
    page.goto(f"/console/tickets/{number}")
    assert page.locator("#ticket-status").inner_text() != ""
    # the composer: a canned reply goes into the message, the mode switch changes what is sent
    page.locator("#compose-canned").select_option(label="Logs")
    assert page.locator("#compose-body").input_value() == "Please send the agent log."
    page.locator("#compose-mode-note").check()
    assert page.locator("#compose-send").inner_text() == ("Add note" if lang == "en" else "Добавить заметку")
    page.locator("#compose-mode-reply").check()
    page.locator("#compose-send").click()
    expect(page.locator(".flashes")).to_be_visible()
    assert page.locator("#timeline .ev-reply").count() >= 1
    # CC a colleague at the customer
    contact = page.locator("#cc-contact option").nth(1)
    if contact.count():
        email = contact.inner_text()
        page.locator("#cc-contact").select_option(email)
        page.locator("#cc-card button[type=submit]").last.click()
        assert email in page.locator("#cc-card").inner_text()
    page.locator("#cc-email").fill("someone@elsewhere.example")
    page.locator("#cc-card button[type=submit]").last.click()
    expect(page.locator("#cc-card .form-errors")).to_be_visible()
    assert no_sideways_scroll(page)
    shot(page, f"{lang}-ticket-composer")
    # the customer sees the display name, never the login name, and closes a request of their own
    customer = pages.new(viewport=viewport, locale="ru-RU" if lang == "ru" else "en-GB")
    customer.goto("/portal/login")  # by the fields' ids: the labels are in the customer's language
    customer.locator("#f-email").fill(s.customers[0][0])
    customer.locator("#f-password").fill(PASSWORD)
    with customer.expect_navigation():
        customer.locator("main button[type=submit]").click()
    customer.goto(f"/portal/tickets/{number}")
    expect(customer.get_by_text("Oleg from support").first).to_be_visible()
    assert "oleg.support" not in customer.content()
    customer.locator("#close-form button").click()
    assert customer.locator("#ticket-status").inner_text() in ("Closed", "Закрыто", "Закрыта")
    assert no_sideways_scroll(customer)
    shot(customer, f"{lang}-portal-closed-own")
    # merging a ticket into another of the same customer
    page.goto(f"/console/tickets/{other}")
    page.locator("#merge-into").fill("OTK-999999")
    page.locator("#merge-card button").click()
    expect(page.locator("#merge-card .form-errors")).to_be_visible()
    page.locator("#merge-into").fill(s.failure_ticket)
    page.locator("#merge-card button").click()
    assert page.locator("#ticket-number").inner_text() == s.failure_ticket
    assert page.locator("#timeline .ev-merged").count() >= 1
