"""The local stack (deploy/local-stack.sh) really serves Kafka and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from services.devkit.stack import LocalBroker


async def _create_topic(bootstrap: str, name: str, partitions: int = 1) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30_000)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(name=name, num_partitions=partitions, replication_factor=1)]
        )
        # CreateTopics returns once the controller committed the topic; the
        # broker's metadata cache (what list_topics reads) may lag a moment.
        async with asyncio.timeout(15):
            while name not in await admin.list_topics():
                await asyncio.sleep(0.1)
    finally:
        await admin.close()


async def _produce(bootstrap: str, topic: str, value: bytes, key: bytes | None = None) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value=value, key=key)
    finally:
        await producer.stop()


async def _consume_all(bootstrap: str, topic: str, expected: int) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"test-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    values: list[bytes] = []
    try:
        async with asyncio.timeout(30):
            while len(values) < expected:
                msg = await consumer.getone()
                assert msg.value is not None
                values.append(msg.value)
    finally:
        await consumer.stop()
    return values


@pytest.mark.kafka
async def test_kafka_create_topic_produce_consume(kafka_bootstrap: str) -> None:
    topic = f"test-local-stack-{uuid.uuid4().hex[:12]}"
    await _create_topic(kafka_bootstrap, topic)
    await _produce(kafka_bootstrap, topic, b"hello act", key=b"k1")
    assert await _consume_all(kafka_bootstrap, topic, expected=1) == [b"hello act"]


@pytest.mark.kafka
def test_kafka_up_is_idempotent(local_broker: LocalBroker | None) -> None:
    if local_broker is None:
        pytest.skip("ACT_TEST_KAFKA_BOOTSTRAP is set: no broker managed by this session")
    pid_before = local_broker.pid()
    assert pid_before is not None
    output = local_broker.start()
    assert "already running" in output, output
    assert local_broker.pid() == pid_before
    assert local_broker.is_running()


@pytest.mark.kafka
@pytest.mark.slow
async def test_kafka_survives_sigkill(local_broker: LocalBroker | None) -> None:
    """kafka-kill then kafka-up: acknowledged messages are still there."""
    if local_broker is None:
        pytest.skip("ACT_TEST_KAFKA_BOOTSTRAP is set: no broker managed by this session")
    bootstrap = local_broker.bootstrap
    topic = f"test-local-stack-kill-{uuid.uuid4().hex[:12]}"
    await _create_topic(bootstrap, topic)
    await _produce(bootstrap, topic, b"before crash")

    local_broker.kill()
    assert local_broker.pid() is None
    assert not local_broker.is_running()
    local_broker.start()
    assert local_broker.pid() is not None

    await _produce(bootstrap, topic, b"after restart")
    assert await _consume_all(bootstrap, topic, expected=2) == [b"before crash", b"after restart"]


@pytest.mark.postgres
def test_postgres_select_one(postgres_dsn: str) -> None:
    import psycopg  # dev dependency: psycopg[binary]>=3.2,<4

    with psycopg.connect(postgres_dsn, connect_timeout=10) as conn:
        row = conn.execute("select 1, current_user, current_database()").fetchone()
    assert row == (1, "act", "act")
