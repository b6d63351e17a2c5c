"""Admin page, exposure cap, CSRF and cross-reviewer refusals, accessibility, screenshots."""

from __future__ import annotations

from pathlib import Path

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, BrowserContext, Page, expect

from services.review_gateway import schema as s
from tests.review_gateway.web.live import LiveGateway
from tests.review_gateway.web.support import (
    http_status,
    item_request,
    login,
    review_task,
    wait_item,
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

DOCS_IMG = Path(__file__).resolve().parents[3] / "docs" / "img"


def test_the_exposure_cap_withholds_a_category_from_one_reviewer_only(
    live: LiveGateway, page: Page, browser: Browser
) -> None:
    live.task(review_task(daily_cap_s=1, break_after_s=1))
    live.enqueue(item_request(1, machine_label=1, text="they kill him", priority=9))
    live.enqueue(item_request(2, machine_label=1, text="more gore", priority=8))
    live.enqueue(item_request(3, machine_label=0, text="a cat photo", priority=1))
    reviewer_id, token = live.reviewer("jo")
    login(page, token)
    wait_item(page)
    # Sensitive text: the suspected category comes first and offensive words are masked.
    expect(page.locator("#warning")).to_contain_text("violent")
    masked = page.locator("#text .masked")
    expect(masked).to_have_text("kill")
    assert masked.evaluate("el => getComputedStyle(el).color") == "rgba(0, 0, 0, 0)"
    page.keyboard.down("r")
    page.wait_for_timeout(1300)
    page.keyboard.up("r")
    expect(page.locator("#break")).to_be_visible()  # break prompt after the configured exposure
    page.click("#break-done")
    page.keyboard.press("1")
    page.keyboard.press("Enter")
    # Capped for "violent" today: item 2 (violent) is passed over, item 3 comes.
    expect(page.locator("#text")).to_contain_text("a cat photo")
    exposure = live.run(live.store.exposure_today(reviewer_id))
    assert [(e.label_index, e.capped) for e in exposure] == [(1, True)]
    assert exposure[0].seconds_today >= 1.0
    # Someone else still gets the violent item.
    _, other = live.reviewer("kim")
    page2 = browser.new_context(base_url=live.url).new_page()
    login(page2, other)
    wait_item(page2)
    expect(page2.locator("#text")).to_contain_text("more gore")


def test_admin_creates_disables_and_force_releases(
    live: LiveGateway, page: Page, browser: Browser
) -> None:
    live.task(review_task())
    live.enqueue(item_request(1))
    _, admin_token = live.reviewer("root", admin=True)
    login(page, admin_token)
    expect(page).to_have_url(f"{live.url}/admin")
    page.fill("#new-name", "lou")
    page.click("text=Create")
    token = page.locator("#new-token").inner_text()
    assert token.startswith("act_")
    page.goto("/admin")
    expect(page.locator("#new-token")).to_have_count(0)  # shown once
    # The new reviewer logs in and holds the only item.
    rev = browser.new_context(base_url=live.url).new_page()
    login(rev, token)
    wait_item(rev)
    page.goto("/admin")
    expect(page.locator("text=Active leases")).to_be_visible()
    page.click("button[aria-label^='Release lease']")
    expect(page).to_have_url(f"{live.url}/admin")
    assert live.count(s.leases, s.leases.c.state == "active") == 0
    assert live.count(s.queue, s.queue.c.state == "pending") == 1
    # Disabling ends the reviewer's sessions at once.
    page.click("button[aria-label='Disable lou']")
    rev.goto("/review")
    expect(rev).to_have_url(f"{live.url}/login")


def test_csrf_and_cross_reviewer_attempts_are_refused_with_nothing_stored(
    live: LiveGateway, page: Page, browser: Browser, context: BrowserContext
) -> None:
    live.task(review_task())
    live.enqueue(item_request(1, image=True))
    live.enqueue(item_request(2))
    _, token_a = live.reviewer("mo")
    _, token_b = live.reviewer("ned")
    login(page, token_a)
    wait_item(page)
    lease_a = page.evaluate("() => document.querySelector('#image').getAttribute('src')").rsplit(
        "/", 1
    )[-1]
    # No CSRF token: refused, nothing written.
    answer = page.evaluate(
        """async (lease) => {
            const r = await fetch('/api/submit', {method: 'POST',
              headers: {'content-type': 'application/json'},
              body: JSON.stringify({lease_id: lease, label: 1, key: 'k1'})});
            return r.status; }""",
        lease_a,
    )
    assert answer == 403
    # Reviewer B, with its own valid session and CSRF token, tries A's lease.
    page_b = browser.new_context(base_url=live.url).new_page()
    login(page_b, token_b)
    wait_item(page_b)
    csrf_b = page_b.locator("meta[name=csrf-token]").get_attribute("content")
    status = page_b.evaluate(
        """async ([lease, csrf]) => {
            const r = await fetch('/api/submit', {method: 'POST',
              headers: {'content-type': 'application/json', 'x-csrf-token': csrf},
              body: JSON.stringify({lease_id: lease, label: 1, key: 'k2'})});
            return r.status; }""",
        [lease_a, csrf_b],
    )
    assert status == 403
    assert page_b.request.get(f"{live.url}/media/{lease_a}").status == 404
    assert live.count(s.reviews) == 0 and live.count(s.outbox) == 0
    # Login itself is CSRF-protected: a post without the form's token is refused.
    body = f"token={token_a}&csrf=forged".encode()
    headers = {"content-type": "application/x-www-form-urlencoded"}
    assert http_status(f"{live.url}/login", method="POST", body=body, headers=headers) == 403
    # A reviewer is not an admin.
    page_b.goto("/admin")
    expect(page_b).to_have_url(f"{live.url}/review")
    # Headers: strict CSP, no caching, no framing.
    response = page.request.get(f"{live.url}/review")
    csp = response.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "unsafe-inline" not in csp
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-frame-options"] == "DENY"
    # Nothing about items in browser storage.
    assert page.evaluate("() => [localStorage.length, sessionStorage.length]") == [0, 0]
    assert context.storage_state()["origins"] == []


def test_login_is_rate_limited(live: LiveGateway, page: Page) -> None:
    statuses = []
    for _ in range(12):
        page.goto("/login")
        page.fill("#token", "act_wrong")
        with page.expect_response("**/login") as answer:
            page.click("button[type=submit]")
        statuses.append(answer.value.status)
    assert statuses[:10] == [401] * 10 and statuses[10:] == [429, 429]


def _serious(results: dict[str, object]) -> list[str]:
    violations = results.get("violations", [])
    assert isinstance(violations, list)
    return [
        f"{v['id']}: {v['help']}" for v in violations if v.get("impact") in ("serious", "critical")
    ]


def test_both_pages_pass_axe_and_the_screenshots_are_made(
    live: LiveGateway, page: Page, browser: Browser
) -> None:
    live.task(review_task(show_machine_label=True, show_critique=True))
    live.enqueue(item_request(1, machine_label=2, image=True, priority=5))
    for n in range(2, 40):
        live.enqueue(item_request(n, machine_label=n % 4))
    axe = Axe()
    page.goto("/login")
    assert _serious(axe.run(page).response) == []
    # Some reviews, so that the admin page has a calibration chart.
    _, token = live.reviewer("pat")
    login(page, token)
    wait_item(page)
    assert _serious(axe.run(page).response) == []
    DOCS_IMG.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(DOCS_IMG / "reviewer-page.png"))
    for n in range(12):
        page.keyboard.press(str(1 + n % 3))
        page.keyboard.press("Enter")
        expect(page.locator("#status")).to_contain_text("Saved")
    _, admin = live.reviewer("ops", admin=True)
    admin_page = browser.new_context(base_url=live.url, viewport={"width": 1280, "height": 1400})
    ap = admin_page.new_page()
    login(ap, admin)
    expect(ap.locator(".cal-point").first).to_be_attached()
    # 12 reviews: too few to recalibrate eps; the page says when it starts.
    expect(ap.locator(".cal-note").first).to_contain_text("Recalibration starts at 20 reviews")
    for n in range(12, 24):
        page.keyboard.press(str(1 + n % 3))
        page.keyboard.press("Enter")
        expect(page.locator("#status")).to_contain_text("Saved")
    ap.reload()
    expect(ap.locator(".cal-fit").first).to_be_attached()
    expect(ap.locator(".cal-note").first).to_contain_text("recalibrated on 24 reviews")
    assert _serious(axe.run(ap).response) == []
    ap.screenshot(path=str(DOCS_IMG / "admin-page.png"), full_page=True)
    assert "Calibration" in (ap.locator("svg title").first.text_content() or "")


def test_admin_sets_a_reviewers_blur_and_their_sensitive_image_uses_it(
    live: LiveGateway, page: Page, browser: Browser
) -> None:
    live.task(review_task())
    live.enqueue(item_request(1, machine_label=2, image=True))
    reviewer_id, token = live.reviewer("sam")
    rev = browser.new_context(base_url=live.url).new_page()
    login(rev, token)
    wait_item(rev)
    image = rev.locator("#image")
    assert "blur(18px)" in image.evaluate("el => getComputedStyle(el).filter")  # server default

    _, admin_token = live.reviewer("root", admin=True)
    login(page, admin_token)
    expect(page).to_have_url(f"{live.url}/admin")
    expect(page.locator("th", has_text="Reviews / h")).to_be_visible()
    row = page.locator("tr", has_text="sam")
    expect(row.locator(".blur-value")).to_have_text("18 px (default)")
    field = page.get_by_label("Blur of sam in pixels, 2 to 60 (empty: the default)")
    assert field.get_attribute("min") == "2" and field.get_attribute("max") == "60"
    field.fill("30")
    page.click("button[aria-label='Save blur of sam']")
    expect(page).to_have_url(f"{live.url}/admin")
    expect(row.locator(".blur-value")).to_have_text("30 px")
    stored = live.run(live.store.get_reviewer(reviewer_id))
    assert stored is not None and stored.blur_px == 30
    assert live.count(s.audit_log, s.audit_log.c.action == "blur_set") == 1

    # The reviewer's next view of the item (a reload resumes the lease) uses it.
    rev.reload()
    wait_item(rev)
    filt = image.evaluate("el => getComputedStyle(el).filter")
    assert "blur(30px)" in filt and "grayscale(1)" in filt

    # The server refuses 0 (images always start blurred) and a forged post.
    csrf = page.locator("input[name=csrf]").first.get_attribute("value") or ""
    url = f"{live.url}/admin/reviewers/{reviewer_id}/blur"
    refused = page.request.post(url, form={"csrf": csrf, "blur_px": "0"}, max_redirects=0)
    assert refused.status == 400 and "blur_px" in refused.text()
    forged = page.request.post(url, form={"csrf": "forged", "blur_px": "5"}, max_redirects=0)
    assert forged.status == 403
    stored = live.run(live.store.get_reviewer(reviewer_id))
    assert stored is not None and stored.blur_px == 30
    # An empty field goes back to the server default.
    page.goto("/admin")
    field.fill("")
    page.click("button[aria-label='Save blur of sam']")
    expect(row.locator(".blur-value")).to_have_text("18 px (default)")
    stored = live.run(live.store.get_reviewer(reviewer_id))
    assert stored is not None and stored.blur_px is None
