"""Kafka helpers shared by the tests and the benchmarks: fresh topic prefixes,
topics created from the specification, items and raw records produced."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from act.v1 import item_pb2
from aiokafka.structs import RecordMetadata

from services.runtime import kafka_clients
from services.runtime.admin import ensure_topics
from services.runtime.config import KafkaSettings
from services.runtime.topics import default_catalog


def unique_prefix() -> str:
    """A topic prefix no other test uses."""
    return f"t{uuid.uuid4().hex[:10]}."


async def make_topics(
    bootstrap: str, prefix: str, topic_ids: Iterable[str], partitions: int = 3
) -> KafkaSettings:
    """Create the given topics under ``prefix``; returns matching settings."""
    kafka = KafkaSettings(bootstrap_servers=bootstrap, topic_prefix=prefix)
    await ensure_topics(kafka, replication=1, topic_ids=list(topic_ids), partitions=partitions)
    return kafka


def topic(kafka: KafkaSettings, topic_id: str) -> str:
    """Full topic name under the settings' prefix."""
    return default_catalog().name(topic_id, kafka.topic_prefix)


async def produce_items(
    kafka: KafkaSettings, ids: Iterable[str], task_id: str = "task-1"
) -> dict[str, RecordMetadata]:
    """Produce one Item per id (keyed by id); returns where each landed."""
    producer = kafka_clients.idempotent_producer(kafka, linger_ms=5)
    await producer.start()
    try:
        futures = {}
        for item_id in ids:
            item = item_pb2.Item(item_id=item_id, task_id=task_id, text=f"text of {item_id}")
            futures[item_id] = await producer.send(
                topic(kafka, "items"), item.SerializeToString(), key=item_id.encode()
            )
        return {k: await f for k, f in futures.items()}
    finally:
        await producer.stop()


async def produce_raw(
    kafka: KafkaSettings, topic_id: str, key: bytes, value: bytes
) -> RecordMetadata:
    """Produce raw bytes (for poison records)."""
    producer = kafka_clients.producer(kafka)
    await producer.start()
    try:
        return await producer.send_and_wait(topic(kafka, topic_id), value, key=key)
    finally:
        await producer.stop()
