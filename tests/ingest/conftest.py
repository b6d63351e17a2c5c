"""Fixtures of the ingest-service tests: real Kafka, real PostgreSQL, a real grpc.aio server.

Each module gets its own topic prefix (``items`` and ``tasks`` topics) and its
own PostgreSQL schema, migrated by the review gateway (tokens live in its
``reviewers`` table), with a producer and a reviewer account.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

import grpc
import pytest
from act.v1 import api_pb2_grpc, common_pb2, item_pb2, task_pb2
from sqlalchemy import text

from services.cli.kafkaio import read_snapshot
from services.devkit.kafkaio import make_topics, topic, unique_prefix
from services.ingest.app import IngestService
from services.ingest.settings import IngestSettings
from services.review_gateway.auth import bearer_metadata, token_sha256
from services.review_gateway.db import create_engine, normalize_url, open_database
from services.review_gateway.store import ROLE_PRODUCER, ROLE_REVIEWER, ReviewStore
from services.runtime.config import KafkaSettings

PRODUCER_TOKEN = "act_test-producer-token"
REVIEWER_TOKEN = "act_test-reviewer-token"


@dataclass(frozen=True)
class Env:
    """Kafka topics and a migrated database schema with two accounts."""

    kafka: KafkaSettings
    database_url: str
    schema: str

    def settings(self, **overrides: object) -> IngestSettings:
        """Settings of an in-process ingest service on this environment."""
        values: dict[str, object] = {
            "database_url": self.database_url,
            "database_schema": self.schema,
            "grpc_port": 0,
            "metrics_port": 0,
            "environment": "test",
            "token_cache_s": 0.0,
            "task_wait_s": 0.2,
            "max_in_flight": 5,
        }
        values.update(overrides)
        return IngestSettings(**values)  # type: ignore[arg-type]

    async def items(self) -> list[item_pb2.Item]:
        """Every committed record of the items topic (read_committed), in no order."""
        records = await read_snapshot(self.kafka, topic(self.kafka, "items"), timeout_s=20)
        return [item_pb2.Item.FromString(r.value) for r in records if r.value]


@pytest.fixture(scope="module")
async def env(kafka_bootstrap: str, postgres_dsn: str) -> AsyncIterator[Env]:
    """Topics under a fresh prefix and a fresh, migrated PostgreSQL schema."""
    kafka = await make_topics(kafka_bootstrap, unique_prefix(), ["items", "tasks"])
    schema = f"ing_{uuid.uuid4().hex[:12]}"
    engine = await open_database(postgres_dsn, schema=schema, pool_size=2)
    store = ReviewStore(engine, schema=schema, hot_pool_size=1)
    try:
        await store.create_reviewer("producer", ROLE_PRODUCER, token_sha256(PRODUCER_TOKEN), "t")
        await store.create_reviewer("reviewer", ROLE_REVIEWER, token_sha256(REVIEWER_TOKEN), "t")
    finally:
        await store.close()
    yield Env(kafka, normalize_url(postgres_dsn), schema)
    engine = create_engine(postgres_dsn)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        await engine.dispose()


@dataclass
class Running:
    """A started ingest service and a plaintext channel to it."""

    service: IngestService
    channel: grpc.aio.Channel

    def stub(self) -> api_pb2_grpc.IngestServiceStub:
        return api_pb2_grpc.IngestServiceStub(self.channel)


@pytest.fixture(scope="module")
async def running(env: Env) -> AsyncIterator[Running]:
    """The ingest service of the module, on ``env``."""
    service = IngestService(env.settings(), env.kafka, host="127.0.0.1")
    await service.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{service.port}")
    try:
        yield Running(service, channel)
    finally:
        await channel.close()
        await service.stop()


def producer_auth() -> tuple[tuple[str, str], ...]:
    """Call metadata of the producer account."""
    return bearer_metadata(PRODUCER_TOKEN)


def valid_task(task_id: str, modality: int = common_pb2.MODALITY_TEXT) -> task_pb2.Task:
    """A task that validate_task accepts."""
    labels = ["no", "yes"] if modality == common_pb2.MODALITY_VQA else ["ham", "spam"]
    return task_pb2.Task(
        task_id=task_id,
        name=f"task {task_id}",
        modality=modality,
        labels=[task_pb2.Label(index=i, name=n) for i, n in enumerate(labels)],
        annotation_strategy=common_pb2.ANNOTATION_STRATEGY_NAIVE,
        critique_strategy=common_pb2.CRITIQUE_STRATEGY_NAIVE,
        budget=task_pb2.Budget(fraction=0.2),
        sampling=task_pb2.SamplingConfig(rule=common_pb2.SAMPLING_RULE_THRESHOLD),
    )


async def stream(items: Iterable[item_pb2.Item]) -> AsyncIterator[item_pb2.Item]:
    """An async client stream of ``items``."""
    for item in items:
        yield item
