"""Reviewer exposure and daily caps, on SQLite and PostgreSQL."""

from __future__ import annotations

import math

import psycopg
import pytest
from sqlalchemy import select, update

from services.review_gateway import schema as s
from services.review_gateway.errors import InvalidArgument
from services.review_gateway.store import ROLE_ADMIN, now_us
from services.review_gateway.store.atomic import pg_sql
from services.review_gateway.store.queue import _LEASE_ANY, utc_day
from tests.review_gateway.conftest import Running
from tests.review_gateway.support import make_request

DAY_US = 86_400 * 1_000_000


async def test_exposure_adds_up_per_day_and_caps(running: Running):
    store = running.store
    alice_id, _ = await running.reviewer("alice")
    bob_id, _ = await running.reviewer("bob")
    first = await store.record_exposure(alice_id, "task-1", 1, 40.0, daily_cap_s=100)
    assert (first.seconds_today, first.capped) == (40.0, False)
    second = await store.record_exposure(alice_id, "task-1", 1, 59.5, daily_cap_s=100)
    assert second.seconds_today == pytest.approx(99.5) and not second.capped
    third = await store.record_exposure(alice_id, "task-1", 1, 0.5, daily_cap_s=100)
    assert third.seconds_today == pytest.approx(100.0) and third.capped
    # Other categories, reviewers and days are counted apart.
    other = await store.record_exposure(alice_id, "task-1", 2, 5.0, daily_cap_s=100)
    assert (other.seconds_today, other.capped) == (5.0, False)
    await store.record_exposure(bob_id, "task-1", 1, 150.0, daily_cap_s=100)
    yesterday = await store.record_exposure(
        alice_id, "task-1", 1, 7.0, daily_cap_s=100, at_us=now_us() - DAY_US
    )
    assert (yesterday.seconds_today, yesterday.capped) == (7.0, False)
    assert yesterday.day != third.day
    # A single report at or over the cap caps at once; a cap <= 0 never caps.
    assert (await store.record_exposure(alice_id, "task-2", 0, 30.0, daily_cap_s=30)).capped
    assert not (await store.record_exposure(alice_id, "task-2", 1, 3600, daily_cap_s=0)).capped

    today = await store.exposure_today(alice_id)
    assert [(e.task_id, e.label_index, e.seconds_today, e.capped) for e in today] == [
        ("task-1", 1, pytest.approx(100.0), True),
        ("task-1", 2, 5.0, False),
        ("task-2", 0, 30.0, True),
        ("task-2", 1, 3600.0, False),
    ]
    assert {e.day for e in today} == {utc_day(now_us())}
    report = await store.exposure_report(utc_day(now_us()))
    lines = {(r.reviewer_name, r.task_id, r.label_index): (r.seconds, r.capped) for r in report}
    assert lines[("bob", "task-1", 1)] == (150.0, True)
    assert lines[("alice", "task-1", 1)] == (pytest.approx(100.0), True)
    assert len(lines) == 5
    assert len(await store.exposure_report(yesterday.day)) == 1
    assert await store.exposure_report("1999-01-01") == []


async def test_invalid_exposure_is_refused(running: Running):
    store = running.store
    for seconds in (-0.1, 3600.5, math.nan, math.inf):
        with pytest.raises(InvalidArgument):
            await store.record_exposure("usr_a", "task-1", 0, seconds, daily_cap_s=100)
    with pytest.raises(InvalidArgument):
        await store.record_exposure("usr_a", "task-1", -1, 1.0, daily_cap_s=100)
    assert await store.exposure_today("usr_a") == []
    # The bounds themselves are fine.
    assert (await store.record_exposure("usr_a", "task-1", 0, 0.0, 100)).seconds_today == 0.0
    assert (await store.record_exposure("usr_a", "task-1", 0, 3600.0, 100)).capped


async def test_lease_passes_over_capped_categories(running: Running):
    store = running.store
    admin = await store.create_reviewer("admin", ROLE_ADMIN, "0" * 64, "admin")
    # req-1 (machine label 1) comes first by priority, req-2 (label 2) next.
    await store.enqueue(make_request(1, machine_label=1, priority=5))
    await store.enqueue(make_request(2, machine_label=2, priority=1))
    async with store.engine.connect() as conn:
        categories = dict(
            (await conn.execute(select(s.queue.c.request_id, s.queue.c.category))).tuples().all()
        )
    assert categories == {"req-1": 1, "req-2": 2}
    # Capped yesterday, or for another task: no effect today; under the cap neither.
    await store.record_exposure("usr_a", "task-1", 1, 500, 100, at_us=now_us() - DAY_US)
    await store.record_exposure("usr_a", "task-other", 1, 500, 100)
    assert not (await store.record_exposure("usr_a", "task-1", 1, 99, 100)).capped
    leased = await store.lease("usr_a", "", 60)
    assert leased is not None and leased.request_id == "req-1"
    await store.release(admin, leased.lease_id)
    # Capped today: usr_a gets the other category, then nothing.
    assert (await store.record_exposure("usr_a", "task-1", 1, 1, 100)).capped
    leased = await store.lease("usr_a", "", 60)
    assert leased is not None and leased.request_id == "req-2"
    assert await store.lease("usr_a", "", 60) is None
    assert await store.lease("usr_a", "task-1", 60) is None
    # Another reviewer is not capped.
    other = await store.lease("usr_b", "task-1", 60)
    assert other is not None and other.request_id == "req-1"


async def test_entries_of_unknown_category_are_never_capped(running: Running):
    store = running.store
    await store.enqueue(make_request(1, machine_label=0))
    async with store.engine.begin() as conn:  # queued before the column existed
        await conn.execute(update(s.queue).values(category=None))
    for label in range(3):
        assert (await store.record_exposure("usr_a", "task-1", label, 3600, 100)).capped
    leased = await store.lease("usr_a", "", 60)
    assert leased is not None and leased.request_id == "req-1"


@pytest.mark.parametrize("database", ["postgres"], indirect=True)
async def test_lease_plan_is_the_ordered_index_scan(running: Running):
    """The exposure anti-join keeps the lease one statement whose plan reads
    ``ix_queue_pick`` in order, without a sort (PostgreSQL only: a plan)."""
    store = running.store
    assert not store.sqlite
    for n in range(200):
        await store.enqueue(make_request(n, machine_label=n % 3, priority=n % 4))
    await store.record_exposure("usr_a", "task-1", 1, 3600, 100)
    sql, constants = pg_sql(_LEASE_ANY.postgresql)
    at = now_us()
    params = {
        **constants,
        "p_lease": "ls_plan",
        "p_reviewer": "usr_a",
        "p_at": at,
        "p_deadline": at + 60_000_000,
        "p_day": utc_day(at),
        "p_detail": "",
    }
    conninfo = store.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    schema = running.gateway.settings.database_schema
    async with await psycopg.AsyncConnection.connect(
        conninfo, options=f"-csearch_path={schema}", autocommit=True
    ) as conn:
        await conn.execute("ANALYZE")
        cursor = await conn.execute(f"EXPLAIN {sql}", params)  # type: ignore[arg-type]
        plan = "\n".join(str(row[0]) for row in await cursor.fetchall())
    assert "ix_queue_pick" in plan, plan
    assert "Sort" not in plan, plan
