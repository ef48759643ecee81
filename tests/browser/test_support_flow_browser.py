"""The support process in Chromium: an automatic failure ticket, a question, the customer's answer in the portal,
'processed'; and a customer kept out of another customer's ticket (the API too)."""
from __future__ import annotations

from typing import Any

import requests

from browser.helpers import PHONE, customer_login, no_sideways_scroll, shot, staff_login

PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00\x90wS\xde\x00\x00"
       b"\x00\x0cIDATx\x9cc\xf8\xcf\xc0\x00\x00\x03\x01\x01\x00\xc9\xfe\x92\xef\x00\x00\x00\x00IEND\xaeB`\x82")


def test_failure_ticket_from_question_to_processed(pages: Any, site: Any) -> None:
    number = site.summary.failure_ticket
    customer_email = site.summary.customers[0][0]
    staff = pages.new()
    staff_login(staff, "oleg.support")
    staff.goto(f"/console/tickets/{number}")
    assert staff.locator("#ticket-number").inner_text() == number
    assert staff.locator(".failure-group").count() >= 1  # the linked failure group, its occurrences and installations
    assert staff.locator("#ticket-status").inner_text() == "New"
    staff.get_by_label("Ask for information (waits for the customer)").check()  # the composer's mode
    staff.locator("#compose-body").fill("Please attach the server log of the update.")
    staff.get_by_role("button", name="Ask the customer").click()
    assert staff.locator("#ticket-status").inner_text() == "Waiting for customer"
    shot(staff, "console-ticket-waiting")

    customer = pages.new(viewport=PHONE)
    customer_login(customer, customer_email)
    assert customer.get_by_text(number).first.is_visible()
    assert customer.get_by_text("Waiting for your answer").first.is_visible()
    shot(customer, "phone-portal-requests")
    customer.get_by_text(number).first.click()
    assert customer.get_by_text("Please attach the server log of the update.").is_visible()
    customer.get_by_label("Message").fill("Log and screenshot attached.")
    customer.get_by_label("Attach screenshots or logs").set_input_files([
        {"name": "update.log", "mimeType": "text/plain", "buffer": b"02:14:33 ERROR migration failed\n"},
        {"name": "screen.png", "mimeType": "image/png", "buffer": PNG}])
    customer.get_by_role("button", name="Send", exact=True).click()
    assert customer.locator("#ticket-status").inner_text() == "In progress"
    assert customer.locator("img.preview").count() == 1
    assert no_sideways_scroll(customer)
    shot(customer, "phone-portal-ticket")

    staff.reload()
    assert staff.get_by_text("Log and screenshot attached.").is_visible()
    assert staff.locator("img.preview").count() >= 1
    staff.get_by_label("Comment for the customer").fill("Fixed in server 2.4.1; it installs tonight.")
    staff.get_by_role("button", name="Mark processed").click()
    assert staff.locator("#ticket-status").inner_text() == "Processed"

    customer.reload()
    assert customer.locator("#ticket-status").inner_text() == "Processed"
    assert customer.get_by_text("Fixed in server 2.4.1; it installs tonight.").is_visible()
    shot(customer, "phone-portal-ticket-processed")


def test_customer_files_a_request_and_sees_installations(pages: Any, site: Any) -> None:
    page = pages.new()
    customer_login(page, site.summary.customers[0][0])
    page.get_by_role("link", name="New request").first.click()
    page.get_by_role("button", name="Send request").click()
    assert page.locator("#f-subject-error").is_visible()  # errors next to the fields
    page.get_by_label("Development request").check()
    page.get_by_label("Subject").fill("Monthly <stock> export")
    page.get_by_label("Description").fill("One CSV per warehouse, please.")
    page.get_by_label("Screenshots and logs").set_input_files(
        [{"name": "mockup.png", "mimeType": "image/png", "buffer": PNG}])
    shot(page, "portal-new-request")
    page.get_by_role("button", name="Send request").click()
    assert page.locator(".flash").inner_text().startswith("Your request is registered as")
    assert page.get_by_role("heading", name="Monthly <stock> export").is_visible()
    shot(page, "portal-request")
    page.goto("/portal/installations")
    assert page.get_by_role("heading", name="Your installations").is_visible()
    assert page.locator("details.offer").count() >= 1  # pending updates with their changelogs
    shot(page, "portal-installations")


def test_a_customer_cannot_open_another_customers_ticket(pages: Any, site: Any) -> None:
    other = site.summary.other_customer_ticket
    page = pages.new()
    customer_login(page, site.summary.customers[0][0])
    resp = page.goto(f"/portal/tickets/{other}")
    assert resp.status == 404
    assert page.get_by_role("heading", name="Not found").is_visible()
    shot(page, "portal-not-found")
    # the API refuses the same customer's token the same way
    from release_server.db import db
    from release_server.support import customers

    app = site.app
    with app.app_context():
        user = customers.get_customer_user(db.session, site.summary.customers[0][0])
        _token, secret = customers.issue_token(db.session, user, "browser test")
        db.commit()
    r = requests.get(f"{site.url}/api/v1/tickets/{other}", headers={"Authorization": f"Bearer {secret}"},
                     timeout=10)
    assert r.status_code == 404
    mine = requests.get(f"{site.url}/api/v1/tickets/{site.summary.failure_ticket}",
                        headers={"Authorization": f"Bearer {secret}"}, timeout=10)
    assert mine.status_code == 200
