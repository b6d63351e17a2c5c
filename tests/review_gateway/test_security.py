"""Authentication, authorisation and input limits: the right code, nothing stored."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import grpc
import pytest
from act.v1 import api_pb2, api_pb2_grpc

from services.review_gateway.auth import bearer_metadata
from tests.review_gateway.conftest import Running
from tests.review_gateway.support import Client, counts, make_request, queue_states


@contextlib.asynccontextmanager
async def nothing_stored(running: Running) -> AsyncIterator[None]:
    """Assert that the block changes no row of any table."""
    before = await counts(running.store.engine)
    states = await queue_states(running.store.engine)
    yield
    assert await counts(running.store.engine) == before
    assert await queue_states(running.store.engine) == states


async def expect(code: grpc.StatusCode, call: object) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call  # type: ignore[misc]
    assert err.value.code() == code, err.value.details()


async def _leased(running: Running) -> tuple[Client, Client, str]:
    _, alice = await running.reviewer("alice")
    _, mallory = await running.reviewer("mallory")
    await running.store.enqueue(make_request(1))
    await running.store.enqueue(make_request(2))
    leased = await alice.lease()
    return alice, mallory, leased.lease_id


async def test_no_token_or_wrong_token(running: Running):
    _, _, lease_id = await _leased(running)
    anonymous = running.client(None)
    wrong = running.client("act_not-a-real-token")
    malformed = Client(running.channel, None)
    malformed.metadata = (("authorization", "Basic abc"),)
    async with nothing_stored(running):
        for client in (anonymous, wrong, malformed):
            await expect(grpc.StatusCode.UNAUTHENTICATED, client.lease())
            await expect(grpc.StatusCode.UNAUTHENTICATED, client.submit(lease_id, 1))
            await expect(
                grpc.StatusCode.UNAUTHENTICATED,
                client.CreateReviewer(api_pb2.CreateReviewerRequest(name="x")),
            )
            await expect(
                grpc.StatusCode.UNAUTHENTICATED,
                client.GetReviewerStats(api_pb2.GetReviewerStatsRequest()),
            )


async def test_another_reviewers_lease(running: Running):
    alice, mallory, lease_id = await _leased(running)
    async with nothing_stored(running):
        await expect(grpc.StatusCode.PERMISSION_DENIED, mallory.submit(lease_id, 1))
        await expect(
            grpc.StatusCode.PERMISSION_DENIED,
            mallory.ExtendLease(api_pb2.ExtendLeaseRequest(lease_id=lease_id)),
        )
        await expect(
            grpc.StatusCode.PERMISSION_DENIED,
            mallory.ReleaseLease(api_pb2.ReleaseLeaseRequest(lease_id=lease_id)),
        )
        await expect(
            grpc.StatusCode.PERMISSION_DENIED, mallory.Skip(api_pb2.SkipRequest(lease_id=lease_id))
        )
    # The owner still can.
    assert not (await alice.submit(lease_id, 1)).duplicate


async def test_admin_only_rpcs(running: Running):
    alice_id, alice = await running.reviewer("alice")
    async with nothing_stored(running):
        await expect(
            grpc.StatusCode.PERMISSION_DENIED,
            alice.CreateReviewer(api_pb2.CreateReviewerRequest(name="eve")),
        )
        await expect(
            grpc.StatusCode.PERMISSION_DENIED,
            alice.DisableReviewer(api_pb2.DisableReviewerRequest(reviewer_id=alice_id)),
        )
        await expect(
            grpc.StatusCode.PERMISSION_DENIED,
            alice.GetTaskStats(api_pb2.GetTaskStatsRequest(task_id="task-1")),
        )
        await expect(
            grpc.StatusCode.PERMISSION_DENIED,
            alice.GetReviewerStats(api_pb2.GetReviewerStatsRequest(reviewer_id="usr_other")),
        )
    # An admin created through the API may manage reviewers too.
    _, boss = await running.reviewer("boss", admin=True)
    created = await boss.CreateReviewer(api_pb2.CreateReviewerRequest(name="carol"))
    assert created.token.startswith("act_") and created.reviewer_id.startswith("usr_")


async def test_a_producer_token_is_refused_by_the_gateway(running: Running):
    """Producer accounts (made here, used by the ingest service) cannot review."""
    created = await running.admin.CreateReviewer(
        api_pb2.CreateReviewerRequest(name="feeder", role=api_pb2.REVIEWER_ROLE_PRODUCER)
    )
    producer = running.client(created.token)
    await running.store.enqueue(make_request(7))
    async with nothing_stored(running):
        await expect(grpc.StatusCode.PERMISSION_DENIED, producer.lease())
        await expect(
            grpc.StatusCode.PERMISSION_DENIED,
            producer.GetReviewerStats(api_pb2.GetReviewerStatsRequest()),
        )
    stats = await running.admin.GetReviewerStats(
        api_pb2.GetReviewerStatsRequest(reviewer_id=created.reviewer_id)
    )
    assert stats.name == "feeder"


async def test_out_of_range_label_and_bad_arguments(running: Running):
    alice, _, lease_id = await _leased(running)
    async with nothing_stored(running):
        for label in (3, 99, -1):
            await expect(grpc.StatusCode.INVALID_ARGUMENT, alice.submit(lease_id, label))
        await expect(grpc.StatusCode.INVALID_ARGUMENT, alice.submit("", 1))
        await expect(grpc.StatusCode.INVALID_ARGUMENT, alice.submit(lease_id, 1, key="k" * 201))
        await expect(grpc.StatusCode.INVALID_ARGUMENT, alice.lease(lease_seconds=-5))
        await expect(grpc.StatusCode.INVALID_ARGUMENT, alice.lease(wait_seconds=-1))
        await expect(
            grpc.StatusCode.INVALID_ARGUMENT,
            running.admin.CreateReviewer(api_pb2.CreateReviewerRequest(name="")),
        )
        await expect(
            grpc.StatusCode.INVALID_ARGUMENT,
            alice.Skip(api_pb2.SkipRequest(lease_id=lease_id, reason="x" * 2001)),
        )
    assert not (await alice.submit(lease_id, 2)).duplicate


async def test_unknown_ids_are_not_found(running: Running):
    _, alice = await running.reviewer("alice")
    async with nothing_stored(running):
        await expect(grpc.StatusCode.NOT_FOUND, alice.submit("ls_unknown", 1))
        await expect(
            grpc.StatusCode.NOT_FOUND,
            alice.ExtendLease(api_pb2.ExtendLeaseRequest(lease_id="ls_unknown")),
        )
        await expect(
            grpc.StatusCode.NOT_FOUND,
            running.admin.GetTaskStats(api_pb2.GetTaskStatsRequest(task_id="no-such-task")),
        )
        await expect(
            grpc.StatusCode.NOT_FOUND,
            running.admin.GetReviewerStats(api_pb2.GetReviewerStatsRequest(reviewer_id="usr_x")),
        )


async def test_oversize_request_is_resource_exhausted(running: Running):
    alice, _, lease_id = await _leased(running)
    async with nothing_stored(running):
        await expect(
            grpc.StatusCode.RESOURCE_EXHAUSTED, alice.submit(lease_id, 1, key="k" * (2 << 20))
        )
        await expect(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            alice.Skip(api_pb2.SkipRequest(lease_id=lease_id, reason="x" * (1 << 20))),
        )


async def test_calls_without_deadline_are_refused(running: Running):
    alice, _, lease_id = await _leased(running)
    stub = api_pb2_grpc.ReviewServiceStub(running.channel)
    async with nothing_stored(running):
        await expect(
            grpc.StatusCode.INVALID_ARGUMENT,
            stub.Submit(
                api_pb2.SubmitRequest(lease_id=lease_id, label_index=1),
                metadata=alice.metadata,
            ),
        )


async def test_tokens_are_stored_hashed(running: Running):
    from sqlalchemy import select

    from services.review_gateway import schema as s
    from services.review_gateway.auth import token_sha256

    created = await running.admin.CreateReviewer(api_pb2.CreateReviewerRequest(name="dave"))
    async with running.store.engine.connect() as conn:
        stored = (await conn.execute(select(s.reviewers.c.token_sha256))).scalars().all()
    assert stored == [token_sha256(created.token)]
    assert created.token not in stored
    ok = running.client(created.token)
    assert (await ok.GetReviewerStats(api_pb2.GetReviewerStatsRequest())).name == "dave"
    assert bearer_metadata("x") == (("authorization", "Bearer x"),)
