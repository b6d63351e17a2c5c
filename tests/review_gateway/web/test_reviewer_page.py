"""The reviewer page in a real Chromium: login, keys, blur, saves, undo, expiry."""

from __future__ import annotations

import json
import time

import pytest
from playwright.sync_api import BrowserContext, Page, Route, expect

from services.review_gateway import schema as s
from tests.review_gateway.web.conftest import start_live
from tests.review_gateway.web.live import LiveGateway
from tests.review_gateway.web.support import (
    http_status,
    item_request,
    login,
    review_task,
    wait_item,
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def test_login_opens_a_server_side_session_and_logout_ends_it(
    live: LiveGateway, page: Page, context: BrowserContext
) -> None:
    reviewer_id, token = live.reviewer("ana")
    login(page, "act_not-a-real-token")
    expect(page.locator(".error")).to_contain_text("Unknown or disabled token")
    login(page, token)
    expect(page).to_have_url(f"{live.url}/review")
    cookies = {c["name"]: c for c in context.cookies()}
    session = cookies["act_session"]
    assert session["httpOnly"] and session["secure"] and session["sameSite"] == "Strict"
    assert token not in session["value"]
    assert page.evaluate("() => [localStorage.length, sessionStorage.length]") == [0, 0]
    page.click("text=Log out")
    expect(page).to_have_url(f"{live.url}/login")
    # The old cookie is dead on the server, not only forgotten by the browser.
    assert http_status(f"{live.url}/review", session["value"]) == 303
    assert live.count(s.audit_log, s.audit_log.c.action == "session_revoked") == 1
    assert live.count(s.web_sessions, s.web_sessions.c.reviewer_id == reviewer_id) == 1


def test_image_starts_blurred_and_grey_reveals_while_held_and_reblurs_on_next_item(
    live: LiveGateway, page: Page
) -> None:
    live.task(review_task())
    live.enqueue(item_request(1, machine_label=1, image=True, priority=2))
    live.enqueue(item_request(2, machine_label=2, image=True, priority=1))
    _, token = live.reviewer("ben")
    login(page, token)
    wait_item(page)
    expect(page.locator("#warning")).to_contain_text("Suspected sensitive content: violent")
    image = page.locator("#image")
    assert (image.get_attribute("src") or "").startswith("/media/ls_")
    filt = image.evaluate("el => getComputedStyle(el).filter")
    assert "blur(18px)" in filt and "grayscale(1)" in filt
    page.keyboard.down("r")
    assert image.evaluate("el => getComputedStyle(el).filter") == "none"
    page.keyboard.up("r")
    assert "blur" in image.evaluate("el => getComputedStyle(el).filter")
    # Press and hold with the pointer reveals too.
    box = image.bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + 5, box["y"] + 5)
    page.mouse.down()
    assert image.evaluate("el => getComputedStyle(el).filter") == "none"
    page.keyboard.press("1")  # the item stays revealed only while held
    page.mouse.up()
    first = _lease(page)
    page.keyboard.press("Enter")
    expect(page.locator("#status")).to_contain_text("Saved")
    page.wait_for_function(f"() => document.querySelector('#image').src.indexOf('{first}') < 0")
    assert "blur" in image.evaluate("el => getComputedStyle(el).filter")
    # The media route is the only way to the pixels, and it is not cacheable.
    media = page.request.get(f"{live.url}/media/{_lease(page)}")
    assert media.status == 200 and media.headers["cache-control"] == "no-store"
    assert media.headers["content-type"] == "image/png"


def _lease(page: Page) -> str:
    src = page.locator("#image").get_attribute("src") or ""
    return src.rsplit("/", 1)[-1]


def test_every_key(live: LiveGateway, page: Page) -> None:
    live.task(review_task())
    for n in range(1, 5):
        live.enqueue(item_request(n, priority=10 - n))
    reviewer_id, token = live.reviewer("cy")
    login(page, token)
    wait_item(page)
    # ? toggles the help.
    page.keyboard.press("?")
    expect(page.locator("#help")).to_be_visible()
    page.keyboard.press("?")
    expect(page.locator("#help")).to_be_hidden()
    # Enter without a label does nothing; 2 picks "violent", Enter saves it.
    page.keyboard.press("Enter")
    assert live.reviews_of("item-1") == []
    page.keyboard.press("2")
    expect(page.locator("#label-buttons button[aria-pressed=true]")).to_contain_text("violent")
    page.keyboard.press("Enter")
    expect(page.locator("#status")).to_contain_text("Saved")
    page.wait_for_function("() => document.querySelector('#text').textContent.includes('item 2')")
    assert live.reviews_of("item-1") == [(reviewer_id, 1)]
    # S, then 1: skipped as unsure; the next item follows.
    page.keyboard.press("s")
    expect(page.locator("#skip-menu")).to_be_visible()
    page.keyboard.press("1")
    expect(page.locator("#status")).to_contain_text("Skipped")
    page.wait_for_function("() => document.querySelector('#text').textContent.includes('item 3')")
    assert live.count(s.skips, s.skips.c.reason_code == 1) == 1
    # S then Esc cancels the skip.
    page.keyboard.press("s")
    page.keyboard.press("Escape")
    expect(page.locator("#skip-menu")).to_be_hidden()
    # Esc stops: blank screen, every lease of the reviewer back in the queue.
    page.keyboard.press("Escape")
    expect(page.locator("#stopped")).to_be_visible()
    expect(page.locator("#workspace")).to_be_hidden()
    page.wait_for_function("() => document.querySelector('#text').textContent === ''")
    deadline = time.monotonic() + 5
    while "active" in live.lease_states(reviewer_id) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "active" not in live.lease_states(reviewer_id)
    # Enter resumes with an item (the skipped one is not offered again).
    page.keyboard.press("Enter")
    wait_item(page)
    expect(page.locator("#text")).not_to_contain_text("item 2")


def test_a_lost_answer_is_retried_into_exactly_one_review_and_one_final_label(
    live: LiveGateway, page: Page
) -> None:
    live.task(review_task())
    live.enqueue(item_request(1, priority=2))
    live.enqueue(item_request(2, priority=1))
    reviewer_id, token = live.reviewer("dee")
    login(page, token)
    wait_item(page)
    calls: list[str] = []

    def drop_first_answer(route: Route) -> None:
        calls.append(route.request.post_data or "")
        if len(calls) == 1:
            route.fetch()  # the server saves the review...
            route.abort("connectionreset")  # ...and the answer is lost on the way back
        else:
            route.continue_()

    page.route("**/api/submit", drop_first_answer)
    page.keyboard.press("3")
    page.keyboard.press("Enter")
    expect(page.locator("#status")).to_contain_text("Saved (it had already been saved)")
    page.wait_for_function("() => document.querySelector('#text').textContent.includes('item 2')")
    keys = {json.loads(body)["key"] for body in calls}
    assert len(calls) == 2 and len(keys) == 1  # one decision, one idempotency key
    assert live.reviews_of("item-1") == [(reviewer_id, 2)]
    assert live.final_labels_of("item-1") == 1
    # Nothing was stranded: the item shown is the reviewer's only live lease.
    assert live.lease_states(reviewer_id).count("active") == 1


def test_the_page_never_advances_while_the_server_is_unreachable(
    live: LiveGateway, page: Page
) -> None:
    live.task(review_task())
    live.enqueue(item_request(1, priority=2))
    live.enqueue(item_request(2, priority=1))
    _, token = live.reviewer("eve")
    login(page, token)
    wait_item(page)
    page.route("**/api/submit", lambda route: route.abort("internetdisconnected"))
    page.keyboard.press("1")
    page.keyboard.press("Enter")
    expect(page.locator("#status")).to_contain_text("Retrying")
    expect(page.locator("#text")).to_contain_text("item 1")
    assert live.reviews_of("item-1") == []
    page.unroute("**/api/submit")
    expect(page.locator("#status")).to_contain_text("Saved", timeout=15_000)
    expect(page.locator("#text")).to_contain_text("item 2")
    assert len(live.reviews_of("item-1")) == 1


def test_undo_brings_the_item_back_and_only_the_new_label_becomes_final(
    live: LiveGateway, page: Page
) -> None:
    live.task(review_task())
    live.enqueue(item_request(1, priority=2))
    live.enqueue(item_request(2, priority=1))
    reviewer_id, token = live.reviewer("fay")
    login(page, token)
    wait_item(page)
    page.keyboard.press("2")
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.querySelector('#text').textContent.includes('item 2')")
    expect(page.locator("#undo")).to_be_visible()
    page.keyboard.press("u")
    expect(page.locator("#status")).to_contain_text("Undone")
    expect(page.locator("#text")).to_contain_text("item 1")
    assert live.reviews_of("item-1") == []
    assert live.final_labels_of("item-1") == 0
    page.keyboard.press("1")
    page.keyboard.press("Enter")
    expect(page.locator("#status")).to_contain_text("Saved")
    assert live.reviews_of("item-1") == [(reviewer_id, 0)]
    assert live.final_labels_of("item-1") == 1


def test_an_expired_lease_is_shown_and_the_item_returns_to_the_queue(pg_database, browser) -> None:  # type: ignore[no-untyped-def]
    live = start_live(pg_database, lease_seconds=2)
    try:
        live.task(review_task())
        live.enqueue(item_request(1))
        _, token = live.reviewer("gil")
        context = browser.new_context(base_url=live.url)
        page = context.new_page()
        login(page, token)
        wait_item(page)
        page.keyboard.press("1")
        expect(page.locator("#status")).to_contain_text("Lease expired", timeout=6_000)
        page.keyboard.press("Enter")  # the same reviewer gets it again: back in the queue
        wait_item(page)
        expect(page.locator("#text")).to_contain_text("item 1")
        assert live.count(s.leases, s.leases.c.state == "expired") == 1
        context.close()
    finally:
        live.stop()


def test_two_reviewers_never_hold_one_item(live: LiveGateway, browser) -> None:  # type: ignore[no-untyped-def]
    live.task(review_task())
    live.enqueue(item_request(1))
    live.enqueue(item_request(2))
    pages = []
    for name in ("hal", "ivy"):
        _, token = live.reviewer(name)
        page = browser.new_context(base_url=live.url).new_page()
        login(page, token)
        wait_item(page)
        pages.append(page)
    shown = {p.locator("#text").inner_text() for p in pages}
    assert shown == {"text of item 1", "text of item 2"}
