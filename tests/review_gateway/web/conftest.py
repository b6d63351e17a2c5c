"""Browser tests of the reviewer workspace: a real Chromium against a real gateway.

Playwright for Python drives Debian's Chromium (``deploy/browser.sh``, run by
``make test``) through ``executable_path``; the gateway runs on its own thread
(:mod:`.live`) over a fresh schema of the session's PostgreSQL.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from services.review_gateway.db import normalize_url
from tests.review_gateway.conftest import Database, gateway_settings
from tests.review_gateway.web.live import LiveGateway

CHROMIUM = os.environ.get("ACT_CHROMIUM", "/usr/bin/chromium")


# Module scope, not session: the sync API keeps its event loop current in the
# main thread while it is started, which the asyncio tests that follow in the
# session must not inherit.
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make browser` (deploy/browser.sh)")
    args = ["--no-sandbox"] if os.geteuid() == 0 else []  # root: Chromium's sandbox refuses
    browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
    yield browser
    browser.close()


@pytest.fixture
def pg_database(postgres_dsn: str) -> Iterator[Database]:
    """A fresh schema in the session's PostgreSQL, dropped afterwards."""
    schema = f"web_{uuid.uuid4().hex[:12]}"
    yield Database("postgres", normalize_url(postgres_dsn), schema)
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def start_live(database: Database, **overrides: object) -> LiveGateway:
    settings = gateway_settings(
        database,
        reaper_interval_s=0.2,
        web_undo_window_s=8,
        **overrides,
    )
    return LiveGateway(settings).start()


@pytest.fixture
def live(pg_database: Database) -> Iterator[LiveGateway]:
    """A gateway with the web workspace on a free port."""
    gateway = start_live(pg_database)
    try:
        yield gateway
    finally:
        gateway.stop()


@pytest.fixture
def context(browser: Browser, live: LiveGateway) -> Iterator[BrowserContext]:
    ctx = browser.new_context(base_url=live.url, viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(10_000)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()
