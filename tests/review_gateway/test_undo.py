"""Undo of held submissions, and the admin helpers (active leases, requeue),
on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from services.review_gateway import schema as s
from services.review_gateway.errors import FailedPrecondition, NotFound, PermissionDenied
from services.review_gateway.store import ROLE_ADMIN, ROLE_REVIEWER, Reviewer, ReviewStore, now_us
from tests.review_gateway.conftest import Running
from tests.review_gateway.support import counts, make_request, make_task, queue_states


async def _outbox(store: ReviewStore) -> list[dict[str, object]]:
    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(s.outbox).order_by(s.outbox.c.id))).mappings().all()
    return [dict(r) for r in rows]


async def _lease_states(store: ReviewStore) -> dict[str, str]:
    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(s.leases.c.lease_id, s.leases.c.state))).all()
    return {r.lease_id: r.state for r in rows}


async def _actions(store: ReviewStore) -> list[str]:
    async with store.engine.connect() as conn:
        return list(
            (await conn.execute(select(s.audit_log.c.action).order_by(s.audit_log.c.id)))
            .scalars()
            .all()
        )


async def test_submit_without_hold_publishes_at_once(running: Running):
    store = running.store
    await store.enqueue(make_request(1))
    leased = await store.lease("usr_a", "", 60)
    assert leased is not None
    await store.submit("usr_a", leased.lease_id, 1, "k")
    (row,) = await _outbox(store)
    assert row["available_at_us"] is None
    assert await store.outbox_next_available_us() is None
    assert [r.key for r in await store.outbox_claim(batch=1, limit=10)] == ["item-1"]


async def test_held_submission_is_undone_and_leased_again(running: Running):
    store = running.store
    await store.enqueue(make_request(1))
    await store.enqueue(make_request(2))
    other = await store.lease("usr_a", "", 60)  # stays active through the undo
    leased = await store.lease("usr_a", "", 60)
    assert other is not None and leased is not None
    before = now_us()
    done = await store.submit("usr_a", leased.lease_id, 2, "key-1", hold_s=30)
    (row,) = await _outbox(store)
    held_until = row["available_at_us"]
    assert isinstance(held_until, int) and before + 30_000_000 <= held_until
    assert held_until <= now_us() + 30_000_000
    assert await store.outbox_next_available_us() == held_until
    # Held: the relay claims nothing yet.
    assert await store.outbox_claim(batch=1, limit=10) == []

    again = await store.undo("usr_a", done.review_id, 60)
    assert again.request_id == leased.request_id and again.item_id == leased.item_id
    assert again.lease_id not in (leased.lease_id, other.lease_id)
    assert again.request == leased.request and again.task == leased.task
    assert again.deadline_us > now_us()
    rows = await counts(store.engine)
    assert rows["reviews"] == 0 and rows["outbox"] == 0
    assert (await queue_states(store.engine))[leased.request_id] == "leased"
    states = await _lease_states(store)
    assert states[leased.lease_id] == s.UNDONE
    assert states[again.lease_id] == s.ACTIVE and states[other.lease_id] == s.ACTIVE
    async with store.engine.connect() as conn:
        entry = (
            await conn.execute(
                select(s.queue.c.lease_id).where(s.queue.c.request_id == leased.request_id)
            )
        ).one()
    assert entry.lease_id == again.lease_id
    # Both leases are the reviewer's: the page resumes the oldest first.
    resumed = await store.own_active_lease("usr_a")
    assert resumed is not None and resumed.lease_id == other.lease_id
    assert (await _actions(store))[-1] == "undone"
    # The old lease is over; a retry of its submission is refused.
    with pytest.raises(FailedPrecondition):
        await store.submit("usr_a", leased.lease_id, 2, "key-1")
    # Undone once: there is no review left to undo.
    with pytest.raises(NotFound):
        await store.undo("usr_a", done.review_id, 60)
    # The new lease takes a new label (the old key is free again, too).
    final = await store.submit("usr_a", again.lease_id, 0, "key-1")
    assert not final.duplicate and final.review_id != done.review_id
    assert [r.key for r in await store.outbox_claim(batch=2, limit=10)] == [leased.item_id]
    assert (await queue_states(store.engine))[leased.request_id] == "done"


async def test_a_held_label_is_published_after_the_hold(running: Running):
    store = running.store
    await store.enqueue(make_request(1))
    leased = await store.lease("usr_a", "", 60)
    assert leased is not None
    await store.submit("usr_a", leased.lease_id, 1, "k", hold_s=0.3)
    assert await store.outbox_claim(batch=1, limit=10) == []
    await asyncio.sleep(0.4)
    assert len(await store.outbox_claim(batch=1, limit=10)) == 1


async def test_undo_is_refused_once_claimed_or_sent(running: Running):
    store = running.store
    for n in (1, 2):
        await store.enqueue(make_request(n))
    reviews = []
    for _ in range(2):
        leased = await store.lease("usr_a", "", 60)
        assert leased is not None
        reviews.append(await store.submit("usr_a", leased.lease_id, 1, ""))
    claimed = await store.outbox_claim(batch=7, limit=1)  # claimed, not yet sent
    assert len(claimed) == 1
    claimed_review = reviews[0]
    with pytest.raises(FailedPrecondition, match="already final"):
        await store.undo("usr_a", claimed_review.review_id, 60)
    rest = await store.outbox_claim(batch=8, limit=10)
    await store.outbox_mark_sent([r.id for r in rest], 8)
    with pytest.raises(FailedPrecondition, match="already final"):
        await store.undo("usr_a", reviews[1].review_id, 60)
    rows = await counts(store.engine)
    assert rows["reviews"] == 2 and rows["outbox"] == 2
    assert set((await queue_states(store.engine)).values()) == {"done"}


async def test_undo_of_another_reviewers_or_unknown_review(running: Running):
    store = running.store
    await store.enqueue(make_request(1))
    leased = await store.lease("usr_a", "", 60)
    assert leased is not None
    done = await store.submit("usr_a", leased.lease_id, 1, "k", hold_s=60)
    with pytest.raises(PermissionDenied):
        await store.undo("usr_b", done.review_id, 60)
    with pytest.raises(NotFound):
        await store.undo("usr_a", "rev_nothing", 60)
    assert (await counts(store.engine))["reviews"] == 1


async def test_undo_and_relay_claim_race(running: Running):
    """A concurrent claim and undo of one label: exactly one of them wins."""
    store = running.store
    rounds = 8
    for n in range(rounds):
        await store.enqueue(make_request(n))
    for n in range(rounds):
        leased = await store.lease("usr_a", "", 60)
        assert leased is not None
        done = await store.submit("usr_a", leased.lease_id, 1, "")
        claim, undo = await asyncio.gather(
            store.outbox_claim(batch=100 + n, limit=10),
            store.undo("usr_a", done.review_id, 60),
            return_exceptions=True,
        )
        assert not isinstance(claim, BaseException), claim
        if isinstance(undo, BaseException):
            assert isinstance(undo, FailedPrecondition), undo
            assert [r.key for r in claim] == [leased.item_id]
            await store.outbox_mark_sent([r.id for r in claim], 100 + n)
        else:
            assert claim == []
            await store.release(Reviewer("usr_a", "a", ROLE_REVIEWER, False, 0), undo.lease_id)
    rows = await counts(store.engine)
    assert rows["outbox"] == rows["reviews"]
    assert await store.outbox_unsent() == 0


async def test_active_leases_and_requeue(running: Running):
    store = running.store
    admin = await store.create_reviewer("root", ROLE_ADMIN, "a" * 64, "admin")
    alice = await store.create_reviewer("alice", ROLE_REVIEWER, "b" * 64, "admin")
    await store.upsert_task(make_task("task-2"))
    await store.enqueue(make_request(1))
    await store.enqueue(make_request(2, task_id="task-2"))
    await store.enqueue(make_request(3))
    first = await store.lease(alice.id, "task-1", 60)
    second = await store.lease(alice.id, "task-2", 60)
    assert first is not None and second is not None
    listed = await store.active_leases()
    assert [(a.lease_id, a.reviewer_name, a.item_id) for a in listed] == [
        (first.lease_id, "alice", "item-1"),
        (second.lease_id, "alice", "item-2"),
    ]
    assert [a.request_id for a in await store.active_leases("task-2")] == ["req-2"]
    assert await store.active_leases("task-none") == []

    with pytest.raises(PermissionDenied):
        await store.requeue(alice, "req-1")
    assert await store.requeue(admin, "req-1")
    assert (await queue_states(store.engine))["req-1"] == "pending"
    assert (await _lease_states(store))[first.lease_id] == s.REVOKED
    assert "requeued" in await _actions(store)
    assert not await store.requeue(admin, "req-1")  # pending already
    with pytest.raises(FailedPrecondition):
        await store.submit(alice.id, first.lease_id, 1, "")
    await store.submit(alice.id, second.lease_id, 1, "")
    with pytest.raises(FailedPrecondition):
        await store.requeue(admin, "req-2")  # done
    with pytest.raises(NotFound):
        await store.requeue(admin, "req-nothing")
    assert [a.request_id for a in await store.active_leases()] == []
    # The requeued entry is leasable again (highest priority, oldest first).
    again = await store.lease(alice.id, "task-1", 60)
    assert again is not None and again.request_id == "req-1"
