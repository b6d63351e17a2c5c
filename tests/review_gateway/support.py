"""Helpers of the review-gateway tests: requests, tasks, clients, row counts."""

from __future__ import annotations

import uuid
from typing import Any

import grpc
from act.v1 import api_pb2, api_pb2_grpc, review_pb2, task_pb2
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.review_gateway import schema as s
from services.review_gateway.auth import bearer_metadata

ADMIN_TOKEN = "test-admin-token-" + uuid.uuid4().hex
LABELS = ("ok", "spam", "harmful")


def make_task(task_id: str = "task-1", n_labels: int = 3) -> task_pb2.Task:
    """A task with ``n_labels`` labels."""
    return task_pb2.Task(
        task_id=task_id,
        name="moderation",
        instructions="Pick the label that fits.",
        labels=[task_pb2.Label(index=i, name=LABELS[i % 3] + str(i)) for i in range(n_labels)],
    )


def make_request(
    n: int,
    task_id: str = "task-1",
    *,
    request_id: str | None = None,
    item_id: str | None = None,
    priority: int = 0,
    machine_label: int = 0,
    reference_label: int | None = None,
    pi: float = 0.25,
    eps: float = 0.75,
) -> review_pb2.ReviewRequest:
    """A review request for item ``item-<n>``."""
    request = review_pb2.ReviewRequest(request_id=request_id or f"req-{n}", priority=priority)
    decision = request.decision
    decision.delta = True
    decision.pi = pi
    decision.eps = eps
    decision.seed = 7
    critique = decision.critique
    critique.eps = eps
    critique.critique_id = f"crit-{n}"
    annotation = critique.annotation
    annotation.label_index = machine_label
    annotation.annotation_id = f"ann-{n}"
    item = annotation.item
    item.item_id = item_id or f"item-{n}"
    item.task_id = task_id
    item.text = f"content of item {n}"
    if reference_label is not None:
        item.reference_label = reference_label
    request.requested_at.GetCurrentTime()
    return request


class Client:
    """A ReviewService stub bound to one token, with a deadline on every call."""

    def __init__(self, channel: grpc.aio.Channel, token: str | None, timeout: float = 10.0):
        self.stub = api_pb2_grpc.ReviewServiceStub(channel)
        self.metadata = bearer_metadata(token) if token else ()
        self.timeout = timeout

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.stub, name)

        async def call(request: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("metadata", self.metadata)
            kwargs.setdefault("timeout", self.timeout)
            return await method(request, **kwargs)

        return call

    async def lease(self, **kwargs: Any) -> api_pb2.LeaseResponse:
        return await self.Lease(api_pb2.LeaseRequest(**kwargs))

    async def submit(self, lease_id: str, label: int, key: str | None = None) -> Any:
        return await self.Submit(
            api_pb2.SubmitRequest(
                lease_id=lease_id, label_index=label, idempotency_key=key or uuid.uuid4().hex
            )
        )


async def counts(engine: AsyncEngine) -> dict[str, int]:
    """Rows per table (what 'nothing stored' is checked against)."""
    result = {}
    async with engine.connect() as conn:
        for table in (s.reviews, s.outbox, s.skips, s.audit_log, s.leases, s.queue, s.reviewers):
            result[table.name] = int(
                (await conn.execute(select(func.count()).select_from(table))).scalar_one()
            )
    return result


async def queue_states(engine: AsyncEngine) -> dict[str, str]:
    """request_id -> queue state."""
    async with engine.connect() as conn:
        rows = (await conn.execute(select(s.queue.c.request_id, s.queue.c.state))).all()
    return {r.request_id: r.state for r in rows}
