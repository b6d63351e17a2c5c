"""Benchmark: lease + submit round trips per second against PostgreSQL.

32 reviewers (each its own token) call Lease then Submit in a loop through
the real gRPC server, in this process, on a freshly migrated schema that is
dropped afterwards. Every submission runs the full transaction (review, queue
entry, lease, outbox row with the FinalLabel, audit); the Kafka relay is not
running, so the number measures the API and the database.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import grpc
from act.v1 import api_pb2, api_pb2_grpc, review_pb2, task_pb2
from sqlalchemy import insert, text

from services.review_gateway import schema as s
from services.review_gateway.app import Gateway
from services.review_gateway.auth import bearer_metadata
from services.review_gateway.db import create_engine
from services.review_gateway.settings import GatewaySettings
from services.review_gateway.store import now_us


def bench_request(task_id: str, n: int) -> review_pb2.ReviewRequest:
    """A realistic review request (text item, annotation, critique, decision)."""
    request = review_pb2.ReviewRequest(request_id=f"req-{n}", priority=n % 7)
    decision = request.decision
    decision.delta = True
    decision.pi = 0.4
    decision.eps = 0.8
    item = decision.critique.annotation.item
    item.item_id = f"item-{n}"
    item.task_id = task_id
    item.text = "lorem ipsum dolor sit amet " * 20
    decision.critique.annotation.label_index = n % 2
    decision.critique.annotation.rationale = "because " * 20
    decision.critique.eps = 0.8
    return request


async def seed_queue(dsn: str, schema: str, task: task_pb2.Task, items: int) -> None:
    engine = create_engine(dsn, schema=schema)
    try:
        at = now_us()
        rows = [
            {
                "request_id": f"req-{n}",
                "task_id": task.task_id,
                "item_id": f"item-{n}",
                "request": bench_request(task.task_id, n).SerializeToString(),
                "state": s.PENDING,
                "priority": n % 7,
                "attempts": 0,
                "enqueued_at_us": at,
                "updated_at_us": at,
            }
            for n in range(items)
        ]
        async with engine.begin() as conn:
            await conn.execute(
                insert(s.tasks).values(
                    task_id=task.task_id,
                    num_labels=len(task.labels),
                    task=task.SerializeToString(),
                    updated_at_us=at,
                )
            )
            for start in range(0, len(rows), 1000):
                await conn.execute(insert(s.queue), rows[start : start + 1000])
    finally:
        await engine.dispose()


async def drop_schema(dsn: str, schema: str) -> None:
    engine = create_engine(dsn)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        await engine.dispose()


async def bench_gateway_reviews_per_s(
    dsn: str, *, reviewers: int = 32, seconds: float = 10.0, items: int = 10_000
) -> float:
    """Lease + submit round trips per second with ``reviewers`` concurrent clients."""
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin_token = uuid.uuid4().hex
    settings = GatewaySettings(
        database_url=dsn,
        database_schema=schema,
        admin_token=admin_token,
        grpc_port=0,
        metrics_port=0,
        http_enabled=False,
        environment="test",
        database_pool_size=reviewers + 4,
    )
    task = task_pb2.Task(
        task_id="bench-task",
        labels=[task_pb2.Label(index=0, name="ok"), task_pb2.Label(index=1, name="harmful")],
    )
    gateway = Gateway(settings, kafka=None, host="127.0.0.1")
    try:
        await gateway.start(consume=False, relay=False)
        await seed_queue(dsn, schema, task, items)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
            stub = api_pb2_grpc.ReviewServiceStub(channel)
            admin = bearer_metadata(admin_token)
            tokens = []
            for i in range(reviewers):
                created = await stub.CreateReviewer(
                    api_pb2.CreateReviewerRequest(name=f"bench-{i}"), metadata=admin, timeout=10
                )
                tokens.append(created.token)
            done = 0
            stop_at = 0.0

            async def reviewer(token: str) -> None:
                nonlocal done
                meta = bearer_metadata(token)
                loop = asyncio.get_running_loop()
                while loop.time() < stop_at:
                    leased = await stub.Lease(api_pb2.LeaseRequest(), metadata=meta, timeout=10)
                    if not leased.lease_id:
                        return
                    await stub.Submit(
                        api_pb2.SubmitRequest(
                            lease_id=leased.lease_id,
                            label_index=1,
                            idempotency_key=uuid.uuid4().hex,
                        ),
                        metadata=meta,
                        timeout=10,
                    )
                    done += 1

            # Warm up connections and caches, then measure.
            stop_at = asyncio.get_running_loop().time() + 1.0
            await asyncio.gather(*(reviewer(t) for t in tokens))
            done = 0
            started = time.perf_counter()
            stop_at = asyncio.get_running_loop().time() + seconds
            await asyncio.gather(*(reviewer(t) for t in tokens))
            elapsed = time.perf_counter() - started
        return done / elapsed
    finally:
        await gateway.stop()
        await drop_schema(dsn, schema)


if __name__ == "__main__":
    import sys

    target = sys.argv[1] if len(sys.argv) > 1 else "postgresql://act:act@127.0.0.1:55432/act"
    print(f"gateway_reviews_per_s={asyncio.run(bench_gateway_reviews_per_s(target)):.1f}")
