"""Shared pieces of the batch-path tests: topics, the task, items, reading outputs."""

from __future__ import annotations

from collections import Counter

from act.v1 import annotation_pb2, common_pb2, dlq_pb2, item_pb2, task_pb2

from services.batchapi.standin import BatchStandIn
from services.cli.taskio import publish_task
from services.devkit.kafkaio import make_topics, topic, unique_prefix
from services.runtime import kafka_clients
from services.runtime.config import KafkaSettings
from tests.support.kafkaio import Collector

TOPICS = ["tasks", "items", "annotations", "batch_pending", "batch_state", "dlq"]
TASK_ID = "batch-task"


def task() -> task_pb2.Task:
    """A two-label text task, naive prompts."""
    t = task_pb2.Task(
        task_id=TASK_ID,
        modality=common_pb2.MODALITY_TEXT,
        annotation_strategy=common_pb2.ANNOTATION_STRATEGY_NAIVE,
    )
    for i, name in enumerate(["ham", "spam"]):
        t.labels.add(index=i, name=name)
    return t


async def setup(bootstrap: str) -> KafkaSettings:
    """Fresh topics under a unique prefix, with the task published."""
    kafka = await make_topics(bootstrap, unique_prefix(), TOPICS)
    await publish_task(kafka, task())
    return kafka


async def produce(kafka: KafkaSettings, texts: dict[str, str]) -> None:
    """One Item per id with the given text (reference label set: it must not leak)."""
    producer = kafka_clients.idempotent_producer(kafka, linger_ms=5)
    await producer.start()
    try:
        futures = []
        for item_id, text in texts.items():
            item = item_pb2.Item(item_id=item_id, task_id=TASK_ID, text=text, reference_label=1)
            futures.append(
                await producer.send(
                    topic(kafka, "items"), item.SerializeToString(), key=item_id.encode()
                )
            )
        for f in futures:
            await f
    finally:
        await producer.stop()


def annotations(collector: Collector) -> list[annotation_pb2.Annotation]:
    """Every committed annotation read so far."""
    return [annotation_pb2.Annotation.FromString(v) for _, v in collector.records["annotations"]]


def dead_letters(collector: Collector) -> list[dlq_pb2.DeadLetter]:
    """Every committed dead letter read so far."""
    return [dlq_pb2.DeadLetter.FromString(v) for _, v in collector.records["dlq"]]


def finished(collector: Collector) -> Counter[str]:
    """Item id -> annotations plus dead letters committed for it."""
    ids = [a.item.item_id for a in annotations(collector)]
    ids += [d.item_id for d in dead_letters(collector)]
    return Counter(ids)


def outcomes(server: BatchStandIn) -> dict[str, str]:
    """custom_id -> what the stand-in did with it (succeeded, errored, expired)."""
    return {o.custom_id: o.kind for b in server.batches.values() for o in b.outcomes or ()}


def expected_dead(server: BatchStandIn, key_of: dict[str, str], max_attempts: int) -> set[str]:
    """Item ids (``key_of``: item id -> annotation id) whose every attempt failed."""
    done = outcomes(server)
    return {
        item_id
        for item_id, key in key_of.items()
        if all(done.get(f"{key}-{n}") in ("errored", "expired") for n in range(1, max_attempts + 1))
    }
