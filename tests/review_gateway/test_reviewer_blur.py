"""Per-reviewer image blur (set by an admin) and the reviewers' throughput
(reviews in the last hour), on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from act.v1 import api_pb2
from sqlalchemy import select, update

from services.review_gateway import schema as s
from services.review_gateway.auth import BOOTSTRAP_ADMIN_ID
from services.review_gateway.errors import InvalidArgument, NotFound, PermissionDenied
from services.review_gateway.store import ROLE_ADMIN, ROLE_REVIEWER, Reviewer, ReviewStore, now_us
from tests.review_gateway.conftest import Running
from tests.review_gateway.support import make_request


async def _blur_audit(store: ReviewStore) -> list[tuple[str, str]]:
    async with store.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(s.audit_log.c.actor, s.audit_log.c.detail)
                .where(s.audit_log.c.action == "blur_set")
                .order_by(s.audit_log.c.id)
            )
        ).all()
    return [(r.actor, r.detail) for r in rows]


async def test_admin_sets_and_resets_a_reviewers_blur(running: Running):
    store = running.store
    admin = await store.create_reviewer("root", ROLE_ADMIN, "a" * 64, "admin")
    alice = await store.create_reviewer("alice", ROLE_REVIEWER, "b" * 64, "admin")
    assert alice.blur_px is None

    updated = await store.set_blur(admin, alice.id, 30)
    assert updated.id == alice.id and updated.name == "alice" and updated.blur_px == 30
    found = await store.get_reviewer(alice.id)
    assert found is not None and found.blur_px == 30
    by_token = await store.reviewer_by_token("b" * 64)
    assert by_token is not None and by_token.blur_px == 30
    listed = {r.id: r.blur_px for r in await store.list_reviewers()}
    assert listed == {admin.id: None, alice.id: 30}

    # The web session carries the value too (the reviewer page reads it there).
    token, _csrf, _expires = await store.create_session(alice.id, 60)
    session = await store.session(token)
    assert session is not None and session.reviewer.blur_px == 30

    # The bounds are allowed; None goes back to the server default.
    assert (await store.set_blur(admin, alice.id, 2)).blur_px == 2
    assert (await store.set_blur(admin, alice.id, 60)).blur_px == 60
    reset = await store.set_blur(admin, alice.id, None)
    assert reset.blur_px is None
    found = await store.get_reviewer(alice.id)
    assert found is not None and found.blur_px is None

    # One audit row per change: ids and numbers only.
    assert await _blur_audit(store) == [
        (admin.id, f"reviewer_id={alice.id} blur_px=30"),
        (admin.id, f"reviewer_id={alice.id} blur_px=2"),
        (admin.id, f"reviewer_id={alice.id} blur_px=60"),
        (admin.id, f"reviewer_id={alice.id} blur_px=default"),
    ]


@pytest.mark.parametrize("blur_px", [0, 1, 61, 1000, -5])
async def test_blur_outside_2_to_60_is_refused(running: Running, blur_px: int):
    store = running.store
    admin = await store.create_reviewer("root", ROLE_ADMIN, "a" * 64, "admin")
    alice = await store.create_reviewer("alice", ROLE_REVIEWER, "b" * 64, "admin")
    await store.set_blur(admin, alice.id, 12)
    with pytest.raises(InvalidArgument):
        await store.set_blur(admin, alice.id, blur_px)
    found = await store.get_reviewer(alice.id)
    assert found is not None and found.blur_px == 12
    assert len(await _blur_audit(store)) == 1


async def test_only_admins_set_blur_and_unknown_reviewers_are_not_found(running: Running):
    store = running.store
    alice = await store.create_reviewer("alice", ROLE_REVIEWER, "b" * 64, "admin")
    bob = await store.create_reviewer("bob", ROLE_REVIEWER, "c" * 64, "admin")
    with pytest.raises(PermissionDenied):
        await store.set_blur(alice, bob.id, 30)
    with pytest.raises(PermissionDenied):
        await store.set_blur(alice, alice.id, 30)  # not even one's own
    admin = await store.create_reviewer("root", ROLE_ADMIN, "a" * 64, "admin")
    with pytest.raises(NotFound):
        await store.set_blur(admin, "usr_missing", 30)
    # The bootstrap admin has no row but may set anyone's blur.
    boot = Reviewer(BOOTSTRAP_ADMIN_ID, "bootstrap admin", ROLE_ADMIN, False, 0)
    assert (await store.set_blur(boot, bob.id, 40)).blur_px == 40
    found = await store.get_reviewer(bob.id)
    assert found is not None and found.blur_px == 40
    assert await _blur_audit(store) == [(BOOTSTRAP_ADMIN_ID, f"reviewer_id={bob.id} blur_px=40")]


async def test_ops_checks_the_caller_and_the_id(running: Running):
    ops = running.gateway.ops
    assert ops is not None
    store = running.store
    alice = await store.create_reviewer("alice", ROLE_REVIEWER, "b" * 64, "admin")
    boot = Reviewer(BOOTSTRAP_ADMIN_ID, "bootstrap admin", ROLE_ADMIN, False, 0)
    with pytest.raises(PermissionDenied):
        await ops.set_reviewer_blur(alice, alice.id, 30)
    with pytest.raises(InvalidArgument):
        await ops.set_reviewer_blur(boot, "", 30)
    with pytest.raises(InvalidArgument):
        await ops.set_reviewer_blur(boot, "x" * 201, 30)
    assert (await ops.set_reviewer_blur(boot, alice.id, 25)).blur_px == 25


async def test_reviews_last_hour_counts_recent_reviews_of_that_reviewer(running: Running):
    store = running.store
    alice = await store.create_reviewer("alice", ROLE_REVIEWER, "b" * 64, "admin")
    bob = await store.create_reviewer("bob", ROLE_REVIEWER, "c" * 64, "admin")
    assert (await store.reviewer_stats(alice.id)).reviews_last_hour == 0
    for i in range(5):
        await store.enqueue(make_request(i))
    submitted = []
    for who, n in ((alice, 3), (bob, 1)):
        for _ in range(n):
            leased = await store.lease(who.id, "", 60)
            assert leased is not None
            done = await store.submit(who.id, leased.lease_id, 1, f"k-{leased.lease_id}")
            submitted.append((who.id, done.review_id))
    # One of alice's reviews was submitted two hours ago.
    old = next(review_id for who, review_id in submitted if who == alice.id)
    two_hours_ago = now_us() - 2 * 3600 * 1_000_000
    async with store.engine.begin() as conn:
        await conn.execute(
            update(s.reviews)
            .where(s.reviews.c.review_id == old)
            .values(leased_at_us=two_hours_ago - 5_000_000, submitted_at_us=two_hours_ago)
        )

    alice_stats = await store.reviewer_stats(alice.id)
    assert alice_stats.completed == 3
    assert alice_stats.reviews_last_hour == 2
    bob_stats = await store.reviewer_stats(bob.id)
    assert bob_stats.completed == 1 and bob_stats.reviews_last_hour == 1


async def test_grpc_reviewer_stats_still_answers(running: Running):
    reviewer_id, client = await running.reviewer("carol")
    await running.store.enqueue(make_request(1))
    leased = await client.lease()
    assert leased.lease_id
    await client.submit(leased.lease_id, 1)
    stats = await running.admin.GetReviewerStats(
        api_pb2.GetReviewerStatsRequest(reviewer_id=reviewer_id)
    )
    assert stats.reviewer_id == reviewer_id and stats.completed == 1
    own = await client.GetReviewerStats(api_pb2.GetReviewerStatsRequest())
    assert own.completed == 1
    # The bootstrap admin's own statistics (it has no row) still build.
    boot = await running.admin.GetReviewerStats(api_pb2.GetReviewerStatsRequest())
    assert boot.reviewer_id == BOOTSTRAP_ADMIN_ID and boot.completed == 0
