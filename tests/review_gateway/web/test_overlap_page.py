"""Overlap through the pages: two reviewers per item, a dispute adjudicated by an admin,
exactly one FinalLabel per item."""

from __future__ import annotations

import re

import pytest
from act.v1 import review_pb2
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import select

from services.review_gateway import schema as s
from tests.review_gateway.web.live import LiveGateway
from tests.review_gateway.web.support import item_request, login, review_task, wait_item

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def _label(page: Page, key: str, text: str) -> None:
    """Pick a label by its number key and submit; wait for the server's confirmation."""
    expect(page.locator("#text")).to_contain_text(text)
    page.keyboard.press(key)
    page.keyboard.press("Enter")
    # The last item's "Saved." gives way to the wait for more at once.
    expect(page.locator("#status")).to_have_text(re.compile("Saved|No items"))


def _final_human_labels(live: LiveGateway, item_id: str) -> list[int]:
    async def go() -> list[int]:
        async with live.store.engine.connect() as conn:
            rows = await conn.execute(select(s.outbox.c.value).where(s.outbox.c.key == item_id))
            return [review_pb2.FinalLabel.FromString(bytes(r.value)).human_label for r in rows]

    return live.run(go())


def test_overlap_dispute_and_adjudication_end_in_one_final_label_per_item(
    live: LiveGateway, page: Page, browser: Browser
) -> None:
    task = review_task()
    task.review.overlap_fraction = 1.0  # every reviewed item goes to a second reviewer
    live.task(task)
    live.enqueue(item_request(1, machine_label=1, text="first text, they kill him", priority=9))
    live.enqueue(item_request(2, machine_label=0, text="second text", priority=5))
    _, token_a = live.reviewer("ann")
    _, token_b = live.reviewer("bob")

    login(page, token_a)
    wait_item(page)
    _label(page, "1", "first text")  # ann: safe
    _label(page, "1", "second text")  # ann: safe; ann never gets item 1 again
    expect(page.locator("#status")).to_contain_text("No items")
    assert live.final_labels_of("item-1") == 0 and live.final_labels_of("item-2") == 0
    assert live.count(s.queue, s.queue.c.state == "pending") == 2

    second = browser.new_context(base_url=live.url).new_page()
    login(second, token_b)
    wait_item(second)
    _label(second, "2", "first text")  # bob: violent, disagrees
    _label(second, "1", "second text")  # bob: safe, agrees
    assert _final_human_labels(live, "item-2") == [0]
    assert live.final_labels_of("item-1") == 0
    assert live.count(s.queue, s.queue.c.state == "disputed") == 1

    _, admin_token = live.reviewer("root", admin=True)
    admin = browser.new_context(base_url=live.url, viewport={"width": 1280, "height": 1400})
    ap = admin.new_page()
    login(ap, admin_token)
    expect(ap).to_have_url(f"{live.url}/admin")
    expect(ap.locator("td[data-k=disputed]")).to_have_text("1")
    expect(ap.locator("td[data-k=agreement]")).to_contain_text("50.0%")
    expect(ap.locator("table.agreement tr", has_text="ann")).to_contain_text("1")
    ap.click("a[aria-label='Adjudicate item item-1']")
    expect(ap.locator("h1")).to_contain_text("item-1")
    expect(ap.locator(".guide")).to_contain_text("ann")
    expect(ap.locator(".guide")).to_contain_text("violent")
    # The sensitive text is masked until held, like on the reviewer page.
    masked = ap.locator("#text .masked")
    expect(masked).to_have_text("kill")
    assert masked.evaluate("el => getComputedStyle(el).color") == "rgba(0, 0, 0, 0)"
    ap.keyboard.down("r")
    expect(ap.locator("#text")).to_have_class("text revealed")
    ap.keyboard.up("r")
    expect(ap.locator("#text")).to_have_class("text")
    results = Axe().run(ap).response
    serious = [v["id"] for v in results["violations"] if v.get("impact") in ("serious", "critical")]
    assert serious == []

    # A forged decision is refused and stores nothing.
    url = f"{live.url}/admin/disputes/{_request_of(live, 'item-1')}"
    forged = ap.request.post(url, form={"csrf": "forged", "label": "0"}, max_redirects=0)
    assert forged.status == 403
    assert live.final_labels_of("item-1") == 0

    ap.check("input[name=label][value='1']")
    ap.click("#decide")
    expect(ap).to_have_url(f"{live.url}/admin#disputes-h")
    expect(ap.locator("text=No disputes.")).to_be_visible()
    assert _final_human_labels(live, "item-1") == [1]
    assert live.count(s.adjudications) == 1
    # The same decision again (a double click, a retried post) adds nothing;
    # another label is refused.
    csrf = ap.locator("input[name=csrf]").first.get_attribute("value") or ""
    again = ap.request.post(url, form={"csrf": csrf, "label": "1"}, max_redirects=0)
    assert again.status == 303
    other = ap.request.post(url, form={"csrf": csrf, "label": "3"}, max_redirects=0)
    assert other.status == 409
    assert _final_human_labels(live, "item-1") == [1]
    assert live.count(s.queue, s.queue.c.state == "done") == 2


def _request_of(live: LiveGateway, item_id: str) -> str:
    async def go() -> str:
        async with live.store.engine.connect() as conn:
            stmt = select(s.queue.c.request_id).where(s.queue.c.item_id == item_id)
            return str((await conn.execute(stmt)).scalar_one())

    return live.run(go())
