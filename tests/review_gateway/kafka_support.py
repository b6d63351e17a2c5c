"""Kafka helpers of the gateway tests: produce requests and tasks, read labels."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from act.v1 import review_pb2, task_pb2
from aiokafka import AIOKafkaProducer

from services.devkit.kafkaio import topic
from services.runtime.config import KafkaSettings
from tests.support.kafkaio import Collector


async def produce(
    kafka: KafkaSettings,
    topic_id: str,
    records: Iterable[tuple[str, bytes]],
) -> None:
    """Produce (key, value) records to a topic of the specification."""
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap_servers, enable_idempotence=True, linger_ms=5
    )
    await producer.start()
    try:
        futures = [
            await producer.send(topic(kafka, topic_id), value, key=key.encode())
            for key, value in records
        ]
        for future in futures:
            await future
    finally:
        await producer.stop()


async def produce_task(kafka: KafkaSettings, task: task_pb2.Task) -> None:
    """Publish a task definition to act.tasks."""
    await produce(kafka, "tasks", [(task.task_id, task.SerializeToString())])


async def produce_requests(
    kafka: KafkaSettings, requests: Iterable[review_pb2.ReviewRequest]
) -> None:
    """Publish review requests keyed by item id."""
    await produce(
        kafka,
        "review_requests",
        [(r.decision.critique.annotation.item.item_id, r.SerializeToString()) for r in requests],
    )


def final_labels(collector: Collector) -> list[review_pb2.FinalLabel]:
    """Every FinalLabel read so far."""
    return [review_pb2.FinalLabel.FromString(v) for _, v in collector.records["labels"]]


def duplicates(labels: list[review_pb2.FinalLabel]) -> dict[str, int]:
    """Items with more than one FinalLabel."""
    counts = Counter(label.item_id for label in labels)
    return {item: n for item, n in counts.items() if n > 1}
