"""Items, tasks and page steps shared by the browser tests."""

from __future__ import annotations

from act.v1 import review_pb2, task_pb2
from playwright.sync_api import Page, expect

from tests.review_gateway.support import make_request

LABELS = ("safe", "violent", "sexual", "spam")


def review_task(
    task_id: str = "mod",
    *,
    sensitive: tuple[int, ...] = (1, 2),
    show_machine_label: bool = False,
    show_critique: bool = False,
    daily_cap_s: int = 0,
    break_after_s: int = 0,
) -> task_pb2.Task:
    """A moderation task whose labels 1 and 2 are sensitive."""
    task = task_pb2.Task(
        task_id=task_id,
        name="Moderation",
        instructions="Choose the label that fits the item.",
        labels=[task_pb2.Label(index=i, name=name) for i, name in enumerate(LABELS)],
    )
    task.review.sensitive_labels.extend(sensitive)
    task.review.show_machine_label = show_machine_label
    task.review.show_critique = show_critique
    task.review.exposure_daily_cap_s = daily_cap_s
    task.review.exposure_break_after_s = break_after_s
    return task


def png_bytes(seed: int = 0) -> bytes:
    """A small real PNG (an 8x8 checkerboard), made with the standard library only."""
    import struct
    import zlib

    size = 8
    raw = b"".join(
        b"\x00" + bytes(255 if (x + y + seed) % 2 else 0 for x in range(size)) for y in range(size)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", size, size, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def item_request(
    n: int,
    task_id: str = "mod",
    *,
    machine_label: int = 0,
    text: str | None = None,
    image: bool = False,
    priority: int = 0,
) -> review_pb2.ReviewRequest:
    """A review request for ``item-<n>`` (text, or an image when ``image``)."""
    request = make_request(n, task_id, machine_label=machine_label, priority=priority)
    item = request.decision.critique.annotation.item
    item.text = text if text is not None else ("" if image else f"text of item {n}")
    if image:
        item.image_bytes = png_bytes(n)
        item.image_mime_type = "image/png"
    return request


def login(page: Page, token: str) -> None:
    """Log in through the form."""
    page.goto("/login")
    page.fill("#token", token)
    page.click("button[type=submit]")


def wait_item(page: Page) -> None:
    """Wait until an item is shown."""
    expect(page.locator("#workspace")).to_be_visible()
    expect(page.locator("#label-buttons button").first).to_be_visible()


def http_status(
    url: str,
    session: str = "",
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> int:
    """Status of one request outside the browser (redirects not followed)."""
    import urllib.error
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    if session:
        request.add_header("Cookie", f"act_session={session}")
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
