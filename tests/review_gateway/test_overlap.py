"""Overlap and adjudication: a task's ``review.overlap_fraction`` sends items to a
second reviewer; disagreeing reviews wait for an admin's adjudication. On SQLite
and PostgreSQL.

Every path ends in exactly one FinalLabel per item.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from dataclasses import dataclass

import pytest
from act.v1 import review_pb2, task_pb2
from sqlalchemy import func, select

from services.review_gateway import schema as s
from services.review_gateway.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from services.review_gateway.policy import overlap_selected
from services.review_gateway.store import (
    ROLE_ADMIN,
    ROLE_REVIEWER,
    Leased,
    Reviewer,
    ReviewStore,
    now_us,
)
from services.review_gateway.store.rows import OUTCOME_DISPUTED, OUTCOME_FINAL, OUTCOME_SECOND
from tests.review_gateway.conftest import Running
from tests.review_gateway.support import counts, make_request, make_task, queue_states

#: A task whose every item goes to a second reviewer (overlap_fraction = 1).
OV = "task-ov"


def overlap_task(task_id: str = OV, fraction: float = 1.0) -> task_pb2.Task:
    """A three-label task with ``review.overlap_fraction = fraction``."""
    task = make_task(task_id)
    task.review.overlap_fraction = fraction
    return task


@dataclass(frozen=True)
class People:
    alice: Reviewer
    bob: Reviewer
    carol: Reviewer
    admin: Reviewer


async def _setup(store: ReviewStore, fraction: float = 1.0, task_id: str = OV) -> People:
    """The overlap task and three reviewers and an admin (real accounts)."""
    await store.upsert_task(overlap_task(task_id, fraction))

    async def account(name: str, role: str) -> Reviewer:
        sha = hashlib.sha256(name.encode()).hexdigest()
        return await store.create_reviewer(name, role, sha, "admin")

    return People(
        alice=await account("alice", ROLE_REVIEWER),
        bob=await account("bob", ROLE_REVIEWER),
        carol=await account("carol", ROLE_REVIEWER),
        admin=await account("root", ROLE_ADMIN),
    )


async def _lease(store: ReviewStore, who: Reviewer, task_id: str = OV) -> Leased:
    leased = await store.lease(who.id, task_id, 60)
    assert leased is not None, f"{who.name} got no lease"
    return leased


async def _review(store: ReviewStore, who: Reviewer, label: int, task_id: str = OV):
    """``who`` leases the best entry of the task and submits ``label``."""
    leased = await _lease(store, who, task_id)
    return leased, await store.submit(who.id, leased.lease_id, label, f"{leased.lease_id}-key")


async def _dispute(store: ReviewStore, p: People, n: int, first: int = 1, second: int = 2):
    """Enqueue item ``n`` of the overlap task; alice labels ``first``, bob ``second``."""
    await store.enqueue(make_request(n, task_id=OV))
    l1, r1 = await _review(store, p.alice, first)
    assert l1.request_id == f"req-{n}"
    l2, r2 = await _review(store, p.bob, second)
    assert l2.request_id == f"req-{n}"
    return l1, r1, l2, r2


async def _final_labels(store: ReviewStore) -> list[tuple[str, review_pb2.FinalLabel]]:
    """(key, FinalLabel) of every outbox row, oldest first; all must be labels."""
    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(s.outbox).order_by(s.outbox.c.id))).all()
    assert all(r.topic == "labels" for r in rows), [r.topic for r in rows]
    return [(r.key, review_pb2.FinalLabel.FromString(bytes(r.value))) for r in rows]


async def _reviews_of(store: ReviewStore, request_id: str) -> list[tuple[int, str, str, int]]:
    """(round, review_id, reviewer_id, label_index) of a request's reviews, by round."""
    async with store.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(s.reviews)
                .where(s.reviews.c.request_id == request_id)
                .order_by(s.reviews.c.round)
            )
        ).all()
    return [(r.round, r.review_id, r.reviewer_id, r.label_index) for r in rows]


async def _lease_state(store: ReviewStore, lease_id: str) -> str:
    async with store.engine.connect() as conn:
        return (
            await conn.execute(select(s.leases.c.state).where(s.leases.c.lease_id == lease_id))
        ).scalar_one()


async def _adjudications(store: ReviewStore) -> list[tuple[str, str, str, int]]:
    """(request_id, adjudication_id, admin_id, label_index) of every adjudication."""
    async with store.engine.connect() as conn:
        rows = (
            await conn.execute(select(s.adjudications).order_by(s.adjudications.c.request_id))
        ).all()
    return [(r.request_id, r.adjudication_id, r.admin_id, r.label_index) for r in rows]


async def _audit(store: ReviewStore, action: str) -> list[tuple[str, str | None]]:
    """(actor, request_id) of the audit rows of ``action``."""
    async with store.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(s.audit_log.c.actor, s.audit_log.c.request_id)
                .where(s.audit_log.c.action == action)
                .order_by(s.audit_log.c.id)
            )
        ).all()
    return [(r.actor, r.request_id) for r in rows]


async def _state(store: ReviewStore, request_id: str) -> str:
    return (await queue_states(store.engine))[request_id]


def _assert_one_label_per_item(labels: list[tuple[str, review_pb2.FinalLabel]]) -> None:
    keys = [key for key, _ in labels]
    assert len(keys) == len(set(keys)), f"more than one FinalLabel for an item: {sorted(keys)}"


# ------------------------------------------------------------------ selection


def _reference(task_id: str, item_id: str, fraction: float) -> bool:
    digest = hashlib.sha256(f"{task_id}\x00{item_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def test_overlap_selected_is_the_specified_hash():
    rng = random.Random(11)
    for _ in range(2000):
        task_id = f"task-{rng.randrange(5)}"
        item_id = f"item-{rng.getrandbits(64):x}"
        fraction = rng.random()
        assert overlap_selected(task_id, item_id, fraction) == _reference(
            task_id, item_id, fraction
        )
        assert overlap_selected(task_id, item_id, 1.0) is True
        assert overlap_selected(task_id, item_id, 0.0) is False


@pytest.mark.parametrize("fraction", [0.1, 0.5])
def test_overlap_selected_share_and_determinism(fraction: float):
    rng = random.Random(20_000 + int(fraction * 10))
    ids = [f"item-{rng.getrandbits(96):024x}" for _ in range(20_000)]
    picks = [overlap_selected("task-x", item_id, fraction) for item_id in ids]
    share = sum(picks) / len(ids)
    assert abs(share - fraction) <= 0.01, share
    # Deterministic: the same answers again, item by item.
    assert [overlap_selected("task-x", item_id, fraction) for item_id in ids] == picks
    # The task takes part: another task selects a different set.
    assert [overlap_selected("task-y", item_id, fraction) for item_id in ids] != picks


# ------------------------------------------------------------------ submissions


async def test_task_without_overlap_is_final_at_once(running: Running):
    store = running.store
    p = await _setup(store)  # task-1 (the fixture's) has no review settings: overlap 0
    await store.upsert_task(overlap_task("task-zero", 0.0))
    await store.enqueue(make_request(1))
    await store.enqueue(make_request(2, task_id="task-zero"))
    review_ids = []
    for task_id in ("task-1", "task-zero"):
        leased, done = await _review(store, p.alice, 1, task_id)
        review_ids.append(done.review_id)
        assert not done.duplicate and done.outcome == OUTCOME_FINAL
        assert await _reviews_of(store, leased.request_id) == [(1, done.review_id, p.alice.id, 1)]
        assert await _state(store, leased.request_id) == "done"
        assert await _lease_state(store, leased.lease_id) == s.SUBMITTED
        assert await store.lease(p.bob.id, task_id, 60) is None
    labels = await _final_labels(store)
    assert [key for key, _ in labels] == ["item-1", "item-2"]
    assert [label.review_id for _, label in labels] == review_ids
    assert [label.human_label for _, label in labels] == [1, 1]


async def test_first_review_of_a_selected_item_awaits_a_second(running: Running):
    store = running.store
    p = await _setup(store)
    await store.enqueue(make_request(1, task_id=OV))
    leased = await _lease(store, p.alice)
    done = await store.submit(p.alice.id, leased.lease_id, 1, "key-1")
    assert not done.duplicate
    assert done.outcome == OUTCOME_SECOND == "awaiting_second"
    assert await _reviews_of(store, "req-1") == [(1, done.review_id, p.alice.id, 1)]
    assert await _lease_state(store, leased.lease_id) == s.SUBMITTED
    assert await _state(store, "req-1") == "pending"
    assert await _final_labels(store) == []
    before = await counts(store.engine)
    # A retry of the same submission answers the first one and writes nothing.
    again = await store.submit(p.alice.id, leased.lease_id, 1, "key-1")
    assert again.duplicate and again.review_id == done.review_id
    assert again.submitted_at_us == done.submitted_at_us
    assert await counts(store.engine) == before
    assert await _state(store, "req-1") == "pending"


async def test_a_reviewer_is_never_leased_an_item_it_reviewed(running: Running):
    store = running.store
    p = await _setup(store)
    await store.enqueue(make_request(1, task_id=OV))
    await _review(store, p.alice, 1)
    assert await store.lease(p.alice.id, "", 60) is None
    assert await store.lease(p.alice.id, OV, 60) is None
    assert await _state(store, "req-1") == "pending"
    # Two reviewers ask at once: one of them gets it.
    leases = await asyncio.gather(store.lease(p.bob.id, "", 60), store.lease(p.carol.id, "", 60))
    assert sum(x is not None for x in leases) == 1, leases
    (second,) = [x for x in leases if x is not None]
    assert second.request_id == "req-1" and second.item_id == "item-1"
    # Released again: still not alice's to review a second time.
    await store.release(p.admin, second.lease_id)
    assert await store.lease(p.alice.id, "", 60) is None
    # Other items are leased to alice as usual.
    await store.enqueue(make_request(2, task_id=OV))
    other = await store.lease(p.alice.id, "", 60)
    assert other is not None and other.request_id == "req-2"


async def test_agreeing_second_review_publishes_one_final_label(running: Running):
    store = running.store
    p = await _setup(store)
    first_lease, first, leased, second = await _dispute(store, p, 1, first=2, second=2)
    assert not second.duplicate and second.outcome == OUTCOME_FINAL
    assert await _reviews_of(store, "req-1") == [
        (1, first.review_id, p.alice.id, 2),
        (2, second.review_id, p.bob.id, 2),
    ]
    assert await _state(store, "req-1") == "done"
    assert await _lease_state(store, leased.lease_id) == s.SUBMITTED
    ((key, label),) = await _final_labels(store)
    assert key == "item-1"
    assert label.review_id == second.review_id
    assert label.HasField("human_label") and label.human_label == 2
    assert label.label_index == 2  # the label to train on: human_label when delta
    assert label.item_id == "item-1" and label.task_id == OV and label.delta
    assert label.reviewer_id == p.bob.id
    # A retry of either submission writes nothing more.
    before = await counts(store.engine)
    again = await store.submit(p.bob.id, leased.lease_id, 2, f"{leased.lease_id}-key")
    assert again.duplicate and again.review_id == second.review_id
    late = await store.submit(p.alice.id, first_lease.lease_id, 2, f"{first_lease.lease_id}-key")
    assert late.duplicate and late.review_id == first.review_id
    assert await counts(store.engine) == before
    # Done: nobody gets it again.
    assert await store.lease(p.carol.id, "", 60) is None


async def test_disagreeing_second_review_is_disputed(running: Running):
    store = running.store
    p = await _setup(store)
    _, first, leased, second = await _dispute(store, p, 1, first=1, second=2)
    assert not second.duplicate and second.outcome == OUTCOME_DISPUTED == "disputed"
    assert await _state(store, "req-1") == s.DISPUTED == "disputed"
    assert await _reviews_of(store, "req-1") == [
        (1, first.review_id, p.alice.id, 1),
        (2, second.review_id, p.bob.id, 2),
    ]
    assert await _lease_state(store, leased.lease_id) == s.SUBMITTED
    assert await _final_labels(store) == []
    # A disputed entry is never leased, by anyone.
    for who in (p.carol, p.alice, p.bob, p.admin):
        assert await store.lease(who.id, "", 60) is None
        assert await store.lease(who.id, OV, 60) is None
    assert await store.expire_leases() == 0
    # Nor does an admin's requeue put it back (it is not leased).
    with pytest.raises(FailedPrecondition, match="disputed"):
        await store.requeue(p.admin, "req-1")
    assert await _state(store, "req-1") == "disputed"
    assert await store.lease(p.carol.id, "", 60) is None
    # A retry of the disputed submission answers the first one and writes nothing.
    before = await counts(store.engine)
    again = await store.submit(p.bob.id, leased.lease_id, 2, f"{leased.lease_id}-key")
    assert again.duplicate and again.review_id == second.review_id
    assert await counts(store.engine) == before


async def test_disputes_lists_both_reviews_in_round_order(running: Running):
    store = running.store
    p = await _setup(store)
    await store.upsert_task(overlap_task("task-ov2", 1.0))
    _, a1, _, b1 = await _dispute(store, p, 1, first=0, second=2)
    await _dispute(store, p, 2, first=1, second=1)  # agreed: not a dispute
    await store.enqueue(make_request(3, task_id=OV))
    await _review(store, p.alice, 1)  # awaiting a second: not a dispute
    await store.enqueue(make_request(4, task_id="task-ov2"))
    _, b4 = await _review(store, p.bob, 2, "task-ov2")
    _, c4 = await _review(store, p.carol, 0, "task-ov2")
    assert c4.outcome == OUTCOME_DISPUTED

    every = await store.disputes()
    assert sorted(d.request_id for d in every) == ["req-1", "req-4"]
    (one,) = await store.disputes(OV)
    assert (one.request_id, one.task_id, one.item_id) == ("req-1", OV, "item-1")
    assert len(one.reviews) == 2 and isinstance(one.reviews, tuple)
    got = [
        (r.round, r.review_id, r.reviewer_id, r.reviewer_name, r.label_index, r.submitted_at_us)
        for r in one.reviews
    ]
    assert got == [
        (1, a1.review_id, p.alice.id, "alice", 0, a1.submitted_at_us),
        (2, b1.review_id, p.bob.id, "bob", 2, b1.submitted_at_us),
    ]
    (other,) = await store.disputes("task-ov2")
    assert (other.request_id, other.task_id, other.item_id) == ("req-4", "task-ov2", "item-4")
    assert [(r.round, r.review_id, r.reviewer_name, r.label_index) for r in other.reviews] == [
        (1, b4.review_id, "bob", 2),
        (2, c4.review_id, "carol", 0),
    ]
    assert await store.disputes("task-1") == []
    assert await store.disputes("task-unknown") == []


# ------------------------------------------------------------------ adjudication


async def test_adjudication_publishes_one_final_label(running: Running):
    store = running.store
    p = await _setup(store)
    await _dispute(store, p, 1, first=1, second=2)
    before = now_us()
    done = await store.adjudicate(p.admin, "req-1", 0)
    assert not done.duplicate and done.adjudication_id
    assert before <= done.at_us
    assert await _state(store, "req-1") == "done"
    assert await _adjudications(store) == [("req-1", done.adjudication_id, p.admin.id, 0)]
    ((key, label),) = await _final_labels(store)
    assert key == "item-1"
    assert label.HasField("human_label") and label.human_label == 0
    assert label.label_index == 0  # the label to train on: human_label when delta
    assert label.review_id == done.adjudication_id
    assert label.reviewer_id == p.admin.id
    assert label.item_id == "item-1" and label.task_id == OV and label.delta
    assert (p.admin.id, "req-1") in await _audit(store, "adjudicated")
    assert await store.disputes() == []
    assert await store.lease(p.carol.id, "", 60) is None
    # The same decision again: the first one's answer, nothing written.
    rows = await counts(store.engine)
    again = await store.adjudicate(p.admin, "req-1", 0)
    assert again.duplicate and again.adjudication_id == done.adjudication_id
    assert again.at_us == done.at_us
    assert len(await _final_labels(store)) == 1
    assert len(await _adjudications(store)) == 1
    assert (await counts(store.engine))["outbox"] == rows["outbox"]
    # Another label afterwards is refused.
    with pytest.raises(AlreadyExists):
        await store.adjudicate(p.admin, "req-1", 2)
    assert len(await _final_labels(store)) == 1
    assert await _adjudications(store) == [("req-1", done.adjudication_id, p.admin.id, 0)]


async def test_adjudication_refusals(running: Running):
    store = running.store
    p = await _setup(store)
    await _dispute(store, p, 1, first=1, second=2)  # disputed
    await _dispute(store, p, 3, first=2, second=2)  # req-3 done, agreed
    await store.enqueue(make_request(2, task_id=OV))
    await _review(store, p.alice, 1)  # req-2 pending, awaiting a second
    await store.enqueue(make_request(4, task_id=OV, priority=5))
    assert (await _lease(store, p.carol)).request_id == "req-4"  # req-4 leased
    await store.enqueue(make_request(5))
    await _review(store, p.alice, 1, "task-1")  # req-5 done, no overlap
    assert await queue_states(store.engine) == {
        "req-1": "disputed",
        "req-2": "pending",
        "req-3": "done",
        "req-4": "leased",
        "req-5": "done",
    }
    labels_before = await _final_labels(store)

    for who in (p.alice, p.bob, p.carol):
        with pytest.raises(PermissionDenied):
            await store.adjudicate(who, "req-1", 0)
    with pytest.raises(PermissionDenied):
        await store.adjudicate(p.alice, "req-nothing", 0)
    with pytest.raises(NotFound):
        await store.adjudicate(p.admin, "req-nothing", 0)
    for bad in (3, -1, 99):
        with pytest.raises(InvalidArgument):
            await store.adjudicate(p.admin, "req-1", bad)
    for request_id in ("req-2", "req-3", "req-4", "req-5"):
        with pytest.raises(FailedPrecondition):
            await store.adjudicate(p.admin, request_id, 0)

    assert await _adjudications(store) == []
    assert await _audit(store, "adjudicated") == []
    assert await _final_labels(store) == labels_before
    assert (await queue_states(store.engine))["req-1"] == "disputed"
    assert [d.request_id for d in await store.disputes()] == ["req-1"]


@pytest.mark.parametrize("labels", [(0, 0), (0, 1)], ids=["same-label", "other-label"])
async def test_concurrent_adjudications_publish_one_final_label(
    running: Running, labels: tuple[int, int]
):
    store = running.store
    p = await _setup(store)
    rounds = 4
    for n in range(1, rounds + 1):
        await _dispute(store, p, n, first=1, second=2)
    for n in range(1, rounds + 1):
        results = await asyncio.gather(
            store.adjudicate(p.admin, f"req-{n}", labels[0]),
            store.adjudicate(p.admin, f"req-{n}", labels[1]),
            return_exceptions=True,
        )
        won = [r for r in results if not isinstance(r, BaseException) and not r.duplicate]
        assert len(won) == 1, results
        (winner,) = won
        for r in results:
            if r is winner:
                continue
            if labels[0] == labels[1]:
                # The same decision: the loser answers like a retry.
                assert not isinstance(r, BaseException), r
                assert r.duplicate and r.adjudication_id == winner.adjudication_id
            else:
                assert isinstance(r, AlreadyExists), r
    finals = await _final_labels(store)
    assert sorted(key for key, _ in finals) == [f"item-{n}" for n in range(1, rounds + 1)]
    _assert_one_label_per_item(finals)
    adjudicated = await _adjudications(store)
    assert len(adjudicated) == rounds
    chosen = {request_id: label for request_id, _, _, label in adjudicated}
    for key, label in finals:
        assert label.human_label == chosen["req-" + key.removeprefix("item-")]
    assert set((await queue_states(store.engine)).values()) == {"done"}


async def test_review_pairs(running: Running):
    store = running.store
    p = await _setup(store)
    await _dispute(store, p, 1, first=1, second=1)  # agreed
    await _dispute(store, p, 2, first=0, second=2)  # disputed
    await store.enqueue(make_request(3, task_id=OV))
    await _review(store, p.carol, 1)  # one review only
    await store.enqueue(make_request(4))
    await _review(store, p.alice, 1, "task-1")  # another task, no overlap
    pairs = sorted(await store.review_pairs(OV), key=lambda r: r.request_id)
    got = [
        (r.request_id, r.first_reviewer, r.first_label, r.second_reviewer, r.second_label)
        for r in pairs
    ]
    assert got == [
        ("req-1", p.alice.id, 1, p.bob.id, 1),
        ("req-2", p.alice.id, 0, p.bob.id, 2),
    ]
    assert await store.review_pairs("task-1") == []
    # An adjudicated item keeps its pair.
    await store.adjudicate(p.admin, "req-2", 0)
    assert sorted(r.request_id for r in await store.review_pairs(OV)) == ["req-1", "req-2"]


# ------------------------------------------------------------------ undo


async def test_undo_of_a_first_review_while_pending(running: Running):
    store = running.store
    p = await _setup(store)
    await store.enqueue(make_request(1, task_id=OV))
    leased, first = await _review(store, p.alice, 1)
    again = await store.undo(p.alice.id, first.review_id, 60, window_s=30)
    assert again.request_id == "req-1" and again.item_id == "item-1"
    assert again.lease_id != leased.lease_id
    assert await _state(store, "req-1") == "leased"
    assert await _reviews_of(store, "req-1") == []
    assert await _lease_state(store, again.lease_id) == s.ACTIVE
    assert await _final_labels(store) == []
    assert await store.lease(p.bob.id, "", 60) is None  # alice holds it
    # Alice labels it again; the item still needs its second review.
    redo = await store.submit(p.alice.id, again.lease_id, 2, "redo")
    assert not redo.duplicate and redo.outcome == OUTCOME_SECOND
    assert await _reviews_of(store, "req-1") == [(1, redo.review_id, p.alice.id, 2)]
    assert await store.lease(p.alice.id, "", 60) is None
    _, second = await _review(store, p.bob, 2)
    assert second.outcome == OUTCOME_FINAL
    ((key, label),) = await _final_labels(store)
    assert key == "item-1" and label.review_id == second.review_id and label.human_label == 2


async def test_undo_of_a_first_review_refused_once_another_reviewer_leased(running: Running):
    store = running.store
    p = await _setup(store)
    await store.enqueue(make_request(1, task_id=OV))
    _, first = await _review(store, p.alice, 1)
    leased = await _lease(store, p.bob)
    with pytest.raises(FailedPrecondition):
        await store.undo(p.alice.id, first.review_id, 60, window_s=30)
    assert await _reviews_of(store, "req-1") == [(1, first.review_id, p.alice.id, 1)]
    assert await _state(store, "req-1") == "leased"
    assert await _lease_state(store, leased.lease_id) == s.ACTIVE
    # Bob disagrees: disputed, and alice still cannot take hers back.
    second = await store.submit(p.bob.id, leased.lease_id, 2, "b")
    assert second.outcome == OUTCOME_DISPUTED
    with pytest.raises(FailedPrecondition):
        await store.undo(p.alice.id, first.review_id, 60, window_s=30)
    assert [r[0] for r in await _reviews_of(store, "req-1")] == [1, 2]
    assert await _state(store, "req-1") == "disputed"
    assert await _final_labels(store) == []


async def test_undo_of_a_first_review_refused_after_the_window(running: Running):
    store = running.store
    p = await _setup(store)
    await store.enqueue(make_request(1, task_id=OV))
    _, first = await _review(store, p.alice, 1)
    await asyncio.sleep(0.5)
    with pytest.raises(FailedPrecondition):
        await store.undo(p.alice.id, first.review_id, 60, window_s=0.2)
    assert await _reviews_of(store, "req-1") == [(1, first.review_id, p.alice.id, 1)]
    assert await _state(store, "req-1") == "pending"
    with pytest.raises(PermissionDenied):
        await store.undo(p.bob.id, first.review_id, 60, window_s=30)
    assert await _final_labels(store) == []


async def test_undo_of_a_disputed_second_review(running: Running):
    store = running.store
    p = await _setup(store)
    _, first, leased, second = await _dispute(store, p, 1, first=1, second=2)
    again = await store.undo(p.bob.id, second.review_id, 60, window_s=30)
    assert again.request_id == "req-1" and again.lease_id != leased.lease_id
    assert await _state(store, "req-1") == "leased"
    assert await _lease_state(store, again.lease_id) == s.ACTIVE
    assert await _reviews_of(store, "req-1") == [(1, first.review_id, p.alice.id, 1)]
    assert await store.disputes() == []
    assert await _final_labels(store) == []
    # Bob changes his mind and agrees: one FinalLabel, his new review's.
    redo = await store.submit(p.bob.id, again.lease_id, 1, "redo")
    assert not redo.duplicate and redo.outcome == OUTCOME_FINAL
    assert await _reviews_of(store, "req-1") == [
        (1, first.review_id, p.alice.id, 1),
        (2, redo.review_id, p.bob.id, 1),
    ]
    ((key, label),) = await _final_labels(store)
    assert key == "item-1" and label.review_id == redo.review_id and label.human_label == 1
    assert await _state(store, "req-1") == "done"


async def test_undo_after_adjudication_is_refused(running: Running):
    store = running.store
    p = await _setup(store)
    _, first, _, second = await _dispute(store, p, 1, first=1, second=2)
    done = await store.adjudicate(p.admin, "req-1", 2)
    with pytest.raises(FailedPrecondition):
        await store.undo(p.bob.id, second.review_id, 60, window_s=30)
    with pytest.raises(FailedPrecondition):
        await store.undo(p.alice.id, first.review_id, 60, window_s=30)
    assert [r[1] for r in await _reviews_of(store, "req-1")] == [
        first.review_id,
        second.review_id,
    ]
    assert await _state(store, "req-1") == "done"
    ((_, label),) = await _final_labels(store)
    assert label.review_id == done.adjudication_id and label.human_label == 2


async def test_undo_of_a_held_agreeing_second_review(running: Running):
    """The held FinalLabel of an agreeing second review is withdrawn by an undo;
    the first review stays, and the resubmission publishes one FinalLabel."""
    store = running.store
    p = await _setup(store)
    await store.enqueue(make_request(1, task_id=OV))
    _, first = await _review(store, p.alice, 1)
    leased = await _lease(store, p.bob)
    second = await store.submit(p.bob.id, leased.lease_id, 1, "b", hold_s=30)
    assert second.outcome == OUTCOME_FINAL
    assert len(await _final_labels(store)) == 1
    again = await store.undo(p.bob.id, second.review_id, 60, window_s=30)
    assert await _final_labels(store) == []
    assert await _reviews_of(store, "req-1") == [(1, first.review_id, p.alice.id, 1)]
    assert await _state(store, "req-1") == "leased"
    redo = await store.submit(p.bob.id, again.lease_id, 1, "b2")
    assert redo.outcome == OUTCOME_FINAL
    ((_, label),) = await _final_labels(store)
    assert label.review_id == redo.review_id


# ------------------------------------------------------------------ skip, release


@pytest.mark.parametrize("end", ["skip", "release", "expire", "requeue"])
async def test_skip_or_release_of_a_second_lease_keeps_the_first_review(running: Running, end: str):
    """Skip and release (the specification), and the reaper's expiry and an
    admin's requeue (every end of a lease but a submission) alike."""
    store = running.store
    p = await _setup(store)
    await store.enqueue(make_request(1, task_id=OV))
    _, first = await _review(store, p.alice, 1)
    leased = await store.lease(p.bob.id, OV, 0.2 if end == "expire" else 60)
    assert leased is not None and leased.request_id == "req-1"
    if end == "skip":
        await store.skip(p.bob.id, leased.lease_id, 1, "not sure")
    elif end == "release":
        await store.release(p.bob, leased.lease_id)
    elif end == "expire":
        await asyncio.sleep(0.3)
        assert await store.expire_leases() == 1
    else:
        assert await store.requeue(p.admin, "req-1")
    assert await _state(store, "req-1") == "pending"
    assert await _reviews_of(store, "req-1") == [(1, first.review_id, p.alice.id, 1)]
    assert await store.lease(p.alice.id, "", 60) is None
    third = await _lease(store, p.carol)
    assert third.request_id == "req-1"
    done = await store.submit(p.carol.id, third.lease_id, 1, "c")
    assert done.outcome == OUTCOME_FINAL
    assert await _reviews_of(store, "req-1") == [
        (1, first.review_id, p.alice.id, 1),
        (2, done.review_id, p.carol.id, 1),
    ]
    ((key, label),) = await _final_labels(store)
    assert key == "item-1" and label.review_id == done.review_id
    assert label.reviewer_id == p.carol.id
    assert await _state(store, "req-1") == "done"


# ------------------------------------------------------------------ end to end


async def test_partial_overlap_follows_the_selection_and_publishes_once(running: Running):
    store = running.store
    fraction = 0.5
    p = await _setup(store, fraction=fraction)
    items = 24
    for n in range(items):
        await store.enqueue(make_request(n, task_id=OV))
    selected = {f"req-{n}" for n in range(items) if overlap_selected(OV, f"item-{n}", fraction)}
    assert 0 < len(selected) < items  # this seed of ids mixes both kinds
    for _ in range(items):
        leased, done = await _review(store, p.alice, 1)
        expected = OUTCOME_SECOND if leased.request_id in selected else OUTCOME_FINAL
        assert done.outcome == expected, leased.request_id
    assert await store.lease(p.alice.id, OV, 60) is None
    states = await queue_states(store.engine)
    assert {r for r, state in states.items() if state == "pending"} == selected
    assert {r for r, state in states.items() if state == "done"} == set(states) - selected
    # The second reviewer: agreeing on some, disagreeing on others.
    disputed = set()
    for i in range(len(selected)):
        label = 1 if i % 3 else 0
        leased, done = await _review(store, p.bob, label)
        assert leased.request_id in selected
        assert done.outcome == (OUTCOME_FINAL if label == 1 else OUTCOME_DISPUTED)
        if label == 0:
            disputed.add(leased.request_id)
    assert await store.lease(p.carol.id, OV, 60) is None
    assert {d.request_id for d in await store.disputes(OV)} == disputed
    for request_id in sorted(disputed):
        await store.adjudicate(p.admin, request_id, 2)
    finals = await _final_labels(store)
    _assert_one_label_per_item(finals)
    assert sorted(key for key, _ in finals) == sorted(f"item-{n}" for n in range(items))
    assert set((await queue_states(store.engine)).values()) == {"done"}
    async with store.engine.connect() as conn:
        reviews = (await conn.execute(select(func.count()).select_from(s.reviews))).scalar_one()
    assert reviews == items + len(selected)
    assert len(await store.review_pairs(OV)) == len(selected)


# ------------------------------------------------------------------ more undo paths


async def test_undo_of_a_first_review_refused_once_final(running: Running):
    store = running.store
    p = await _setup(store)
    for n, hold in ((1, 0.0), (2, 30.0)):
        await store.enqueue(make_request(n, task_id=OV))
        _, first = await _review(store, p.alice, 1)
        leased = await _lease(store, p.bob)
        second = await store.submit(p.bob.id, leased.lease_id, 1, f"b{n}", hold_s=hold)
        assert second.outcome == OUTCOME_FINAL
        # The item's FinalLabel is the second review's: the first cannot be taken back.
        with pytest.raises(FailedPrecondition):
            await store.undo(p.alice.id, first.review_id, 60, window_s=30)
        assert [r[1] for r in await _reviews_of(store, f"req-{n}")] == [
            first.review_id,
            second.review_id,
        ]
        assert await _state(store, f"req-{n}") == "done"
    finals = await _final_labels(store)
    assert [key for key, _ in finals] == ["item-1", "item-2"]


async def test_undone_disputed_review_released_goes_to_a_third_reviewer(running: Running):
    store = running.store
    p = await _setup(store)
    _, first, _, second = await _dispute(store, p, 1, first=1, second=2)
    again = await store.undo(p.bob.id, second.review_id, 60, window_s=30)
    await store.release(p.bob, again.lease_id)
    assert await _state(store, "req-1") == "pending"
    assert await store.lease(p.alice.id, "", 60) is None
    third = await _lease(store, p.carol)
    done = await store.submit(p.carol.id, third.lease_id, 2, "c")
    assert done.outcome == OUTCOME_DISPUTED
    (dispute,) = await store.disputes()
    assert [(r.round, r.review_id, r.reviewer_id, r.label_index) for r in dispute.reviews] == [
        (1, first.review_id, p.alice.id, 1),
        (2, done.review_id, p.carol.id, 2),
    ]
    decided = await store.adjudicate(p.admin, "req-1", 1)
    ((_, label),) = await _final_labels(store)
    assert label.review_id == decided.adjudication_id and label.human_label == 1


async def test_undo_of_a_first_review_races_a_second_lease(running: Running):
    """A concurrent undo of a first review and another reviewer's lease: one wins."""
    store = running.store
    p = await _setup(store)
    rounds = 6
    undone = leased_by_bob = 0
    for n in range(rounds):
        await store.enqueue(make_request(n, task_id=OV))
        _, first = await _review(store, p.alice, 1)
        calls = [
            store.undo(p.alice.id, first.review_id, 60, window_s=30),
            store.lease(p.bob.id, OV, 60),
        ]
        order = 1 if n % 2 else -1  # either may start first
        undo, lease = (await asyncio.gather(*calls[::order], return_exceptions=True))[::order]
        assert not isinstance(lease, BaseException), lease
        request_id = f"req-{n}"
        if isinstance(undo, BaseException):
            assert isinstance(undo, FailedPrecondition), undo
            assert lease is not None and lease.request_id == request_id
            assert [r[1] for r in await _reviews_of(store, request_id)] == [first.review_id]
            await store.submit(p.bob.id, lease.lease_id, 1, f"b{n}")
            leased_by_bob += 1
        else:
            assert lease is None
            assert await _reviews_of(store, request_id) == []
            redo = await store.submit(p.alice.id, undo.lease_id, 1, f"a{n}")
            assert redo.outcome == OUTCOME_SECOND
            await _review(store, p.bob, 1)
            undone += 1
        assert await _state(store, request_id) == "done"
    assert undone + leased_by_bob == rounds
    finals = await _final_labels(store)
    _assert_one_label_per_item(finals)
    assert len(finals) == rounds


async def test_undo_of_a_disputed_review_races_the_adjudication(running: Running):
    """A concurrent undo of the disputed second review and an adjudication: one wins."""
    store = running.store
    p = await _setup(store)
    rounds = 6
    for n in range(rounds):
        _, first, _, second = await _dispute(store, p, n, first=1, second=2)
        request_id = f"req-{n}"
        calls = [
            store.adjudicate(p.admin, request_id, 0),
            store.undo(p.bob.id, second.review_id, 60, window_s=30),
        ]
        order = 1 if n % 2 else -1  # either may start first
        decided, undo = (await asyncio.gather(*calls[::order], return_exceptions=True))[::order]
        assert isinstance(decided, BaseException) != isinstance(undo, BaseException), (
            decided,
            undo,
        )
        if isinstance(undo, BaseException):
            assert isinstance(undo, FailedPrecondition), undo
            assert not decided.duplicate
            assert await _state(store, request_id) == "done"
            assert len(await _reviews_of(store, request_id)) == 2
        else:
            assert isinstance(decided, FailedPrecondition), decided
            assert await _state(store, request_id) == "leased"
            assert await _reviews_of(store, request_id) == [(1, first.review_id, p.alice.id, 1)]
            await store.submit(p.bob.id, undo.lease_id, 1, f"redo{n}")  # agrees now
            assert await _state(store, request_id) == "done"
    finals = await _final_labels(store)
    _assert_one_label_per_item(finals)
    assert sorted(key for key, _ in finals) == sorted(f"item-{n}" for n in range(rounds))
    assert await store.disputes() == []


async def test_undo_of_a_disputed_review_refused_after_the_window(running: Running):
    store = running.store
    p = await _setup(store)
    _, first, _, second = await _dispute(store, p, 1, first=1, second=2)
    await asyncio.sleep(0.5)
    with pytest.raises(FailedPrecondition):
        await store.undo(p.bob.id, second.review_id, 60, window_s=0.2)
    assert await _state(store, "req-1") == "disputed"
    assert [r[1] for r in await _reviews_of(store, "req-1")] == [
        first.review_id,
        second.review_id,
    ]
    assert [d.request_id for d in await store.disputes()] == ["req-1"]
    assert await _final_labels(store) == []


async def test_held_submissions_without_a_final_label_write_no_outbox_row(running: Running):
    """The web workspace submits with ``hold_s`` (its undo window): a first review
    and a disputing second review still write no FinalLabel, held or not."""
    store = running.store
    p = await _setup(store)
    await store.enqueue(make_request(1, task_id=OV))
    leased = await _lease(store, p.alice)
    first = await store.submit(p.alice.id, leased.lease_id, 1, "a", hold_s=30)
    assert first.outcome == OUTCOME_SECOND
    assert await _final_labels(store) == []
    assert await _state(store, "req-1") == "pending"
    leased = await _lease(store, p.bob)
    second = await store.submit(p.bob.id, leased.lease_id, 0, "b", hold_s=30)
    assert second.outcome == OUTCOME_DISPUTED
    assert await _final_labels(store) == []
    assert await store.outbox_next_available_us() is None
    # The admin's decision is published at once (no hold).
    decided = await store.adjudicate(p.admin, "req-1", 1)
    claimed = await store.outbox_claim(batch=1, limit=10)
    assert [r.key for r in claimed] == ["item-1"]
    assert review_pb2.FinalLabel.FromString(claimed[0].value).review_id == decided.adjudication_id
