"""Reading and publishing tasks on the compacted ``tasks`` topic."""

from __future__ import annotations

from act.v1 import task_pb2

from services.cli.kafkaio import Record, read_snapshot
from services.runtime.config import KafkaSettings
from services.runtime.kafka_clients import idempotent_producer
from services.runtime.logging import get_logger
from services.runtime.tasks import fold_tasks
from services.runtime.topics import default_catalog


def tasks_topic(kafka: KafkaSettings) -> str:
    return default_catalog().name("tasks", kafka.topic_prefix)


def latest_tasks(records: list[Record]) -> tuple[dict[str, task_pb2.Task], int]:
    """Fold a tasks-topic snapshot into the latest version of each task (pure).

    A tombstone (no value) deletes the task. Returns the tasks by id and the
    number of undecodable records skipped.
    """
    ordered = sorted(records, key=lambda r: (r.partition, r.offset))
    return fold_tasks((r.key, r.value) for r in ordered)


async def load_tasks(kafka: KafkaSettings) -> dict[str, task_pb2.Task]:
    """The latest version of every task on the topic (read_committed)."""
    records = await read_snapshot(kafka, tasks_topic(kafka))
    tasks, bad = latest_tasks(records)
    if bad:
        get_logger().warning("undecodable_task_records", topic=tasks_topic(kafka), count=bad)
    return tasks


async def publish_task(kafka: KafkaSettings, task: task_pb2.Task) -> None:
    """Publish ``task`` keyed by its id and wait for the broker's ack."""
    topic = tasks_topic(kafka)
    producer = idempotent_producer(kafka)
    try:
        await producer.start()
        await producer.send_and_wait(
            topic, value=task.SerializeToString(), key=task.task_id.encode("utf-8")
        )
    finally:
        await producer.stop()
    get_logger().info("task_published", task_id=task.task_id, topic=topic)
