"""Outbox relay crash safety against a real broker, on SQLite and PostgreSQL.

The relay can die (1) after the database commit and before any send, (2) in
the middle of its Kafka transaction, (3) after the Kafka commit and before it
marks the rows sent. In every case a restarted relay must leave each label on
the topic exactly once (read_committed).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from act.v1 import review_pb2
from aiokafka import AIOKafkaProducer

from services.devkit.kafkaio import make_topics, unique_prefix
from services.review_gateway.db import open_database
from services.review_gateway.relay import OutboxRelay
from services.review_gateway.settings import GatewaySettings
from services.review_gateway.store import OutboxRow, ReviewStore
from services.runtime.config import KafkaSettings
from tests.review_gateway.conftest import Database, gateway_settings
from tests.review_gateway.support import make_request, make_task
from tests.support.kafkaio import Collector

pytestmark = [pytest.mark.kafka]

N = 25


class Crash(BaseException):
    """The process dies here (nothing after it runs, no cleanup)."""


class DiesAfterCommit(OutboxRelay):
    async def _mark_sent(self, rows: list[OutboxRow], batch: int) -> None:
        raise Crash


class DiesBeforeCommit(OutboxRelay):
    async def _publish(self, producer: AIOKafkaProducer, batch: int, rows: list[OutboxRow]) -> None:
        await producer.begin_transaction()
        for row in rows:
            await producer.send_and_wait(self._topic(row.topic), row.value, key=row.key.encode())
        raise Crash


@dataclass
class Setup:
    store: ReviewStore
    kafka: KafkaSettings
    settings: GatewaySettings
    collector: Collector


@pytest.fixture
async def setup(database: Database, kafka_bootstrap: str) -> AsyncIterator[Setup]:
    kafka = await make_topics(kafka_bootstrap, unique_prefix(), ["labels"], partitions=3)
    settings = gateway_settings(database, outbox_batch_size=10, outbox_poll_interval_s=0.05)
    engine = await open_database(database.url, schema=database.schema)
    store = ReviewStore(engine, schema=database.schema)
    await store.upsert_task(make_task())
    for n in range(N):
        await store.enqueue(make_request(n))
        leased = await store.lease("usr_a", "", 60)
        assert leased is not None
        await store.submit("usr_a", leased.lease_id, n % 3, f"key-{n}")
    collector = Collector(kafka, ["labels"])
    await collector.start()
    try:
        yield Setup(store, kafka, settings, collector)
    finally:
        await collector.stop()
        await store.close()


async def _crash(relay: OutboxRelay) -> None:
    """Run one batch of ``relay`` until it crashes; abandon its producer."""
    producer = await relay._new_producer()
    await relay._recover()
    with pytest.raises(Crash):
        await relay.publish_once(producer)
    # A dead process sends nothing more; stop() closes the connections
    # without committing or aborting the open transaction.
    await producer.stop()


async def _restart_and_check(s: Setup) -> None:
    relay = OutboxRelay(s.store, s.kafka, s.settings)
    task = asyncio.create_task(relay.run())
    try:
        for _ in range(300):
            if await s.store.outbox_unsent() == 0:
                break
            await asyncio.sleep(0.1)
        assert await s.store.outbox_unsent() == 0
        await s.collector.wait_for("labels", N, timeout=30)
        await asyncio.sleep(1.5)  # room for duplicates to show up
    finally:
        relay.stop()
        await asyncio.wait_for(task, 30)
    labels = [review_pb2.FinalLabel.FromString(v) for _, v in s.collector.records["labels"]]
    counts = Counter(label.item_id for label in labels)
    assert set(counts) == {f"item-{n}" for n in range(N)}
    assert max(counts.values()) == 1, {k: c for k, c in counts.items() if c > 1}
    keys = [key for key, _ in s.collector.records["labels"]]
    assert keys == [label.item_id.encode() for label in labels]


async def test_died_before_sending(setup: Setup):
    assert await setup.store.outbox_unsent() == N
    await asyncio.sleep(0.5)
    assert setup.collector.count("labels") == 0
    await _restart_and_check(setup)


async def test_died_inside_the_kafka_transaction(setup: Setup):
    await _crash(DiesBeforeCommit(setup.store, setup.kafka, setup.settings))
    assert await setup.store.outbox_unsent() == N
    await _restart_and_check(setup)


async def test_died_after_kafka_commit_before_marking(setup: Setup):
    await _crash(DiesAfterCommit(setup.store, setup.kafka, setup.settings))
    # The batch is on the topic but the database does not know.
    await setup.collector.wait_for("labels", 10, timeout=30)
    assert await setup.store.outbox_unsent() == N
    await _restart_and_check(setup)
