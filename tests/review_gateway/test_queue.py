"""Queue, lease and submission semantics, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from act.v1 import api_pb2, common_pb2, review_pb2
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from services.review_gateway import schema as s
from services.review_gateway.db import open_database
from services.review_gateway.errors import AlreadyExists
from services.review_gateway.stage import ReviewRequestStage
from services.review_gateway.store import ReviewStore
from services.runtime.retry import PermanentError
from tests.review_gateway.conftest import Database, Running
from tests.review_gateway.support import counts, make_request, make_task, queue_states
from tests.support.harness import StageHarness


async def test_migrations_match_schema(database: Database):
    engine = await open_database(database.url, schema=database.schema)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), s.metadata)
            )
        assert diff == []
        # Running the migrations again is a no-op.
        again = await open_database(database.url, schema=database.schema)
        await again.dispose()
    finally:
        await engine.dispose()


async def test_consuming_a_request_twice_queues_it_once(running: Running):
    stage = StageHarness(ReviewRequestStage(running.store))
    request = make_request(1)
    assert await stage.process(request) == ()
    assert await stage.process(request) == ()  # re-delivered at the next offset
    # The sampler re-sending the same item under another request id: still one.
    await stage.process(make_request(1, request_id="req-1-again"))
    states = await queue_states(running.store.engine)
    assert states == {"req-1": "pending"}
    assert (await counts(running.store.engine))["audit_log"] >= 1


async def test_invalid_requests_are_permanent_errors(running: Running):
    stage = StageHarness(ReviewRequestStage(running.store))
    no_item = make_request(1)
    no_item.decision.critique.annotation.item.item_id = ""
    machine = make_request(2)
    machine.decision.delta = False
    zero_pi = make_request(3, pi=0.0)
    for bad in (no_item, machine, zero_pi):
        with pytest.raises(PermanentError):
            await stage.process(bad)
    assert await queue_states(running.store.engine) == {}


async def test_lease_order_and_long_poll(running: Running):
    _, alice = await running.reviewer("alice")
    await running.store.enqueue(make_request(1, priority=1))
    await running.store.enqueue(make_request(2, priority=5))
    await running.store.enqueue(make_request(3, priority=1))
    order = []
    for _ in range(3):
        leased = await alice.lease()
        order.append(leased.request.request_id)
        assert [label.name for label in leased.labels] == ["ok0", "spam1", "harmful2"]
        assert leased.instructions == "Pick the label that fits."
    assert order == ["req-2", "req-1", "req-3"]
    assert (await alice.lease()).lease_id == ""
    # A long poll returns as soon as an item arrives.
    waiting = asyncio.create_task(alice.lease(wait_seconds=5))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    await running.store.enqueue(make_request(4))
    leased = await asyncio.wait_for(waiting, 3)
    assert leased.request.request_id == "req-4"


async def test_items_of_unknown_tasks_wait(running: Running):
    _, alice = await running.reviewer("alice")
    await running.store.enqueue(make_request(1, task_id="task-unknown"))
    assert (await alice.lease()).lease_id == ""
    await running.store.upsert_task(make_task("task-unknown", 2))
    leased = await alice.lease(task_id="task-unknown")
    assert leased.request.request_id == "req-1"
    assert len(leased.labels) == 2


async def test_reference_label_is_never_shown(running: Running):
    _, alice = await running.reviewer("alice")
    await running.store.enqueue(make_request(1, reference_label=2))
    leased = await alice.lease()
    item = leased.request.decision.critique.annotation.item
    assert item.item_id == "item-1"
    assert not item.HasField("reference_label")


async def test_submit_is_idempotent(running: Running):
    engine = running.store.engine
    reviewer_id, alice = await running.reviewer("alice")
    await running.store.enqueue(make_request(1, machine_label=0, pi=0.2, eps=0.9))
    await running.store.enqueue(make_request(2))
    leased = await alice.lease()
    first = await alice.submit(leased.lease_id, 2, key="key-1")
    assert not first.duplicate
    again = await alice.submit(leased.lease_id, 2, key="key-1")
    assert again.duplicate and again.review_id == first.review_id
    assert again.submitted_at == first.submitted_at
    # A retry that lost its key: same lease, same label -> the same review.
    other_key = await alice.submit(leased.lease_id, 2, key="key-2")
    assert other_key.duplicate and other_key.review_id == first.review_id
    # A different label for an accepted lease, or a key reused for another lease.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await alice.submit(leased.lease_id, 1, key="key-3")
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    second = await alice.lease()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await alice.submit(second.lease_id, 1, key="key-1")
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    rows = await counts(engine)
    assert rows["reviews"] == 1 and rows["outbox"] == 1
    assert (await queue_states(engine))["req-1"] == "done"
    # The outbox holds the FinalLabel the trainer needs.
    claimed = await running.store.outbox_claim(batch=1, limit=10)
    assert len(claimed) == 1 and claimed[0].key == "item-1"
    final = review_pb2.FinalLabel.FromString(claimed[0].value)
    assert final.item_id == "item-1" and final.task_id == "task-1"
    assert final.source == common_pb2.LABEL_SOURCE_HUMAN
    assert final.delta and final.HasField("human_label")
    assert (final.label_index, final.human_label, final.machine_label) == (2, 2, 0)
    assert final.label_name == "harmful2"
    assert final.pi == pytest.approx(0.2) and final.eps == pytest.approx(0.9)
    assert final.reviewer_id == reviewer_id and final.review_id == first.review_id
    assert final.leased_at.ToMicroseconds() <= final.submitted_at.ToMicroseconds()
    assert final.submitted_at == first.submitted_at
    assert final.decision.critique.annotation.item.item_id == "item-1"
    assert final.item.item_id == "item-1" and final.item.text == "content of item 1"


async def test_concurrent_retries_make_one_review(running: Running):
    _, alice = await running.reviewer("alice")
    await running.store.enqueue(make_request(1))
    leased = await alice.lease()
    results = await asyncio.gather(
        *(alice.submit(leased.lease_id, 1, key=f"k{i % 3}") for i in range(12)),
        return_exceptions=True,
    )
    ok = [r for r in results if not isinstance(r, BaseException)]
    assert len(ok) == 12, [r for r in results if isinstance(r, BaseException)]
    assert len({r.review_id for r in ok}) == 1
    assert sum(not r.duplicate for r in ok) == 1
    rows = await counts(running.store.engine)
    assert rows["reviews"] == 1 and rows["outbox"] == 1


async def test_concurrent_leases_never_share_an_entry(running: Running):
    """Lease and submit have one implementation for both back ends: under
    concurrency each entry goes to one lease, and each lease to one review."""
    for n in range(10):
        await running.store.enqueue(make_request(n))
    results = await asyncio.gather(*(running.store.lease(f"usr_{i}", "", 60) for i in range(16)))
    leased = [r for r in results if r is not None]
    assert len(leased) == 10
    assert len({r.request_id for r in leased}) == 10
    assert set((await queue_states(running.store.engine)).values()) == {"leased"}
    assert (await counts(running.store.engine))["leases"] == 10
    submitted = await asyncio.gather(
        *(running.store.submit(f"usr_{results.index(r)}", r.lease_id, 1, "") for r in leased)
    )
    assert not any(s.duplicate for s in submitted)
    rows = await counts(running.store.engine)
    assert rows["reviews"] == 10 and rows["outbox"] == 10
    assert set((await queue_states(running.store.engine)).values()) == {"done"}


async def test_one_key_raced_on_two_leases(running: Running):
    """The race the lease guard does not order ends in a unique violation; the
    loser answers like a retry would."""
    await running.store.enqueue(make_request(1))
    await running.store.enqueue(make_request(2))
    first = await running.store.lease("usr_a", "", 60)
    second = await running.store.lease("usr_a", "", 60)
    assert first is not None and second is not None
    results = await asyncio.gather(
        running.store.submit("usr_a", first.lease_id, 1, "same-key"),
        running.store.submit("usr_a", second.lease_id, 1, "same-key"),
        return_exceptions=True,
    )
    ok = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(ok) == 1 and not ok[0].duplicate
    assert len(refused) == 1 and isinstance(refused[0], AlreadyExists)
    rows = await counts(running.store.engine)
    assert rows["reviews"] == 1 and rows["outbox"] == 1


async def test_expired_lease_is_refused_and_item_reassigned(running: Running):
    engine = running.store.engine
    _, alice = await running.reviewer("alice")
    _, bob = await running.reviewer("bob")
    await running.store.enqueue(make_request(1))
    leased = await alice.lease(lease_seconds=1)
    assert (await bob.lease()).lease_id == ""
    await asyncio.sleep(1.1)
    # Strict: refused even before the reaper has run and nobody else leased it.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await alice.submit(leased.lease_id, 1)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await alice.ExtendLease(api_pb2.ExtendLeaseRequest(lease_id=leased.lease_id))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert await running.store.expire_leases() == 1
    assert await running.store.expire_leases() == 0
    again = await bob.lease()
    assert again.request.request_id == "req-1" and again.lease_id != leased.lease_id
    await bob.submit(again.lease_id, 0)
    rows = await counts(engine)
    assert rows["reviews"] == 1 and rows["outbox"] == 1
    stats = await running.admin.GetTaskStats(api_pb2.GetTaskStatsRequest(task_id="task-1"))
    assert (stats.completed, stats.expired, stats.pending, stats.leased) == (1, 1, 0, 0)
    assert dict(stats.label_counts) == {0: 1}


async def test_extend_release_and_skip(running: Running):
    alice_id, alice = await running.reviewer("alice")
    _, bob = await running.reviewer("bob")
    await running.store.enqueue(make_request(1))
    leased = await alice.lease(lease_seconds=1)
    extended = await alice.ExtendLease(
        api_pb2.ExtendLeaseRequest(lease_id=leased.lease_id, lease_seconds=60)
    )
    assert extended.deadline.ToSeconds() > leased.deadline.ToSeconds() + 30
    await asyncio.sleep(1.1)
    assert await running.store.expire_leases() == 0  # extended: still alive
    await alice.ReleaseLease(api_pb2.ReleaseLeaseRequest(lease_id=leased.lease_id))
    await alice.ReleaseLease(api_pb2.ReleaseLeaseRequest(lease_id=leased.lease_id))  # no-op
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await alice.submit(leased.lease_id, 1)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    # Skip: the item goes back to the queue, but not to the reviewer who skipped it.
    leased = await alice.lease()
    await alice.Skip(
        api_pb2.SkipRequest(
            lease_id=leased.lease_id, reason="not sure", reason_code=api_pb2.SKIP_REASON_UNSURE
        )
    )
    assert (await alice.lease()).lease_id == ""
    taken = await bob.lease()
    assert taken.request.request_id == "req-1"
    await bob.submit(taken.lease_id, 1)
    stats = await running.admin.GetReviewerStats(
        api_pb2.GetReviewerStatsRequest(reviewer_id=alice_id)
    )
    assert (stats.skipped, stats.completed, stats.active_leases) == (1, 0, 0)
    own = await bob.GetReviewerStats(api_pb2.GetReviewerStatsRequest())
    assert own.completed == 1 and own.name == "bob"
    assert own.role == api_pb2.REVIEWER_ROLE_REVIEWER
    assert own.last_submitted_at.seconds > 0


async def test_disabling_a_reviewer_revokes_its_leases(running: Running):
    alice_id, alice = await running.reviewer("alice")
    _, bob = await running.reviewer("bob")
    await running.store.enqueue(make_request(1))
    leased = await alice.lease()
    await running.admin.DisableReviewer(api_pb2.DisableReviewerRequest(reviewer_id=alice_id))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await alice.submit(leased.lease_id, 1)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert (await bob.lease()).request.request_id == "req-1"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await running.admin.DisableReviewer(
            api_pb2.DisableReviewerRequest(reviewer_id="usr_nobody")
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_store_survives_restart(database: Database):
    """Durability: a second store on the same database sees the first one's work."""
    engine = await open_database(database.url, schema=database.schema)
    store = ReviewStore(engine, schema=database.schema)
    await store.upsert_task(make_task())
    await store.enqueue(make_request(1))
    leased = await store.lease("usr_a", "", 60)
    assert leased is not None
    await store.close()
    engine = await open_database(database.url, schema=database.schema)
    store = ReviewStore(engine, schema=database.schema)
    try:
        done = await store.submit("usr_a", leased.lease_id, 1, "k")
        assert not done.duplicate
        assert await store.outbox_unsent() == 1
    finally:
        await store.close()


class _FlakyStore:
    """A store whose database is down for the first ``failures`` calls."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    async def enqueue(self, request: review_pb2.ReviewRequest) -> bool:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionRefusedError("database down")
        return True


async def test_database_outage_never_dead_letters_a_request():
    flaky = _FlakyStore(failures=3)
    stage = StageHarness(ReviewRequestStage(flaky, max_outage_s=10))  # type: ignore[arg-type]
    assert await stage.process(make_request(1)) == ()
    assert flaky.calls == 4
    # A long outage: the gateway is told to restart and the record stays in
    # flight (neither committed nor dead-lettered) until the shutdown cancels it.
    reasons: list[str] = []
    down = ReviewRequestStage(_FlakyStore(10**9), max_outage_s=0.3, on_fatal=reasons.append)  # type: ignore[arg-type]
    handler = asyncio.create_task(StageHarness(down).process(make_request(2)))
    await asyncio.sleep(1.0)
    assert reasons == ["database unavailable"] and not handler.done()
    handler.cancel()
    with pytest.raises(asyncio.CancelledError):
        await handler
