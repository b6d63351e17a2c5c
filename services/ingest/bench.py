"""Throughput of the ingest service, for ``make bench`` (``ingest_items_per_s``).

One in-process :class:`~services.ingest.app.IngestService` on a real broker
and a real PostgreSQL (a fresh schema, migrated by the review gateway, and a
fresh topic prefix); one client streams 1 KiB text items over one gRPC call.
The clock runs from the call's start to its IngestSummary, which the service
sends only after Kafka acknowledged every record (acks=all, idempotent
producer) and the ledger recorded their ids: items per second through gRPC
to a committed Kafka write.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import grpc
from act.v1 import api_pb2, api_pb2_grpc, common_pb2, item_pb2, task_pb2
from sqlalchemy import text

from services.devkit.kafkaio import make_topics, unique_prefix
from services.ingest.app import IngestService
from services.ingest.settings import IngestSettings
from services.review_gateway.auth import bearer_metadata, new_token
from services.review_gateway.db import create_engine, normalize_url, open_database

TEXT_BYTES = 1024


def _task() -> task_pb2.Task:
    return task_pb2.Task(
        task_id="bench-ingest",
        name="bench",
        modality=common_pb2.MODALITY_TEXT,
        labels=[task_pb2.Label(index=0, name="ham"), task_pb2.Label(index=1, name="spam")],
        annotation_strategy=common_pb2.ANNOTATION_STRATEGY_NAIVE,
        critique_strategy=common_pb2.CRITIQUE_STRATEGY_NAIVE,
        budget=task_pb2.Budget(fraction=0.1),
        sampling=task_pb2.SamplingConfig(rule=common_pb2.SAMPLING_RULE_THRESHOLD),
    )


async def _items(n: int) -> AsyncIterator[item_pb2.Item]:
    body = "x" * (TEXT_BYTES - 8)
    for i in range(n):
        yield item_pb2.Item(item_id=f"b-{i}", task_id="bench-ingest", text=f"{i:08d}{body}")


async def bench_ingest_items_per_s(bootstrap: str, dsn: str, n: int = 20_000) -> float:
    """Items per second of one client streaming ``n`` 1 KiB items to the service."""
    kafka = await make_topics(bootstrap, unique_prefix(), ["items", "tasks"])
    schema = f"bench_ingest_{uuid.uuid4().hex[:8]}"
    engine = await open_database(dsn, schema=schema, pool_size=2)  # the gateway's schema
    await engine.dispose()
    token = new_token()
    settings = IngestSettings(
        database_url=normalize_url(dsn),
        database_schema=schema,
        admin_token=token,  # type: ignore[arg-type]
        grpc_port=0,
        metrics_port=0,
        environment="test",
    )
    service = IngestService(settings, kafka, host="127.0.0.1")
    await service.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
            stub = api_pb2_grpc.IngestServiceStub(channel)
            auth = bearer_metadata(token)
            request = api_pb2.CreateTaskRequest(task=_task())
            await stub.CreateTask(request, metadata=auth, timeout=30)
            started = time.perf_counter()
            summary = await stub.Ingest(_items(n), metadata=auth, timeout=600)
            elapsed = time.perf_counter() - started
        if summary.accepted != n:
            raise RuntimeError(f"accepted {summary.accepted} of {n} items")
        return n / elapsed
    finally:
        await service.stop()
        cleanup = create_engine(dsn)
        async with cleanup.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await cleanup.dispose()
