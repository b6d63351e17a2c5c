"""Kafka plumbing shared by the CLI commands: settings, producers, snapshots."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from services.runtime.config import KafkaSettings
from services.runtime.kafka_clients import snapshot_consumer


class TopicMissingError(RuntimeError):
    """The topic does not exist on the broker (run ``act topics ensure``)."""

    def __init__(self, topic: str) -> None:
        super().__init__(f"topic {topic!r} does not exist (create it with `act topics ensure`)")
        self.topic = topic


def kafka_settings(bootstrap: str | None = None, topic_prefix: str | None = None) -> KafkaSettings:
    """``ACT_KAFKA_*`` settings with the command-line overrides applied."""
    settings = KafkaSettings()
    update: dict[str, Any] = {}
    if bootstrap is not None:
        update["bootstrap_servers"] = bootstrap
    if topic_prefix is not None:
        update["topic_prefix"] = topic_prefix
    return settings.model_copy(update=update) if update else settings


async def topic_partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """The partitions of ``topic``; :class:`TopicMissingError` if it does not exist."""
    topics = await consumer.topics()
    if topic not in topics:
        raise TopicMissingError(topic)
    parts = consumer.partitions_for_topic(topic) or set()
    return [TopicPartition(topic, p) for p in sorted(parts)]


@dataclass(frozen=True, slots=True)
class Record:
    """One record of a snapshot read."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None


async def read_snapshot(
    kafka: KafkaSettings,
    topic: str,
    *,
    last: int | None = None,
    timeout_s: float = 60.0,
) -> list[Record]:
    """Every committed record of ``topic`` up to the end offsets seen at start.

    ``last`` limits the read to the last ``last`` offsets of each partition.
    Raises :class:`TimeoutError` if the end is not reached in ``timeout_s``.
    """
    consumer = snapshot_consumer(kafka)
    try:
        await consumer.start()
        parts = await topic_partitions(consumer, topic)
        if not parts:
            return []
        consumer.assign(parts)
        begin = await consumer.beginning_offsets(parts)
        end = await consumer.end_offsets(parts)
        todo = {tp for tp in parts if end[tp] > begin[tp]}
        for tp in parts:
            start = begin[tp]
            if last is not None:
                start = max(start, end[tp] - last)
            consumer.seek(tp, start)
        records: list[Record] = []
        deadline = time.monotonic() + timeout_s
        while todo:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic} did not reach the end offsets in {timeout_s}s")
            batch = await consumer.getmany(*todo, timeout_ms=200)
            for tp, messages in batch.items():
                for msg in messages:
                    if msg.offset < end[tp]:
                        records.append(
                            Record(
                                topic=msg.topic,
                                partition=msg.partition,
                                offset=msg.offset,
                                timestamp=msg.timestamp,
                                key=msg.key,
                                value=msg.value,
                            )
                        )
            for tp in list(todo):
                if await consumer.position(tp) >= end[tp]:
                    todo.discard(tp)
                    consumer.pause(tp)
        return records
    finally:
        await consumer.stop()


async def offsets(
    consumer: AIOKafkaConsumer, parts: Iterable[TopicPartition]
) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
    """Beginning and end offsets of the partitions."""
    parts = list(parts)
    if not parts:
        return {}, {}
    begin, end = await asyncio.gather(
        consumer.beginning_offsets(parts), consumer.end_offsets(parts)
    )
    return dict(begin), dict(end)


async def require_topics(kafka: KafkaSettings, topics: Iterable[str]) -> None:
    """Raise :class:`TopicMissingError` for the first of ``topics`` that is missing.

    Producing to a missing topic could make the broker auto-create it with
    default settings, so producers check first.
    """
    consumer = snapshot_consumer(kafka)
    try:
        await consumer.start()
        existing = await consumer.topics()
    finally:
        await consumer.stop()
    for topic in topics:
        if topic not in existing:
            raise TopicMissingError(topic)
