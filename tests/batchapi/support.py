"""Shared pieces of the batch-path tests: topics, tasks, items and annotations, reading outputs."""

from __future__ import annotations

from collections import Counter

from act.v1 import annotation_pb2, common_pb2, critique_pb2, dlq_pb2, item_pb2, task_pb2

from services.batchapi.settings import BatchSettings
from services.batchapi.standin import BatchStandIn
from services.cli.taskio import publish_task
from services.devkit.kafkaio import make_topics, topic, unique_prefix
from services.runtime import kafka_clients
from services.runtime.config import KafkaSettings
from tests.support.kafkaio import Collector

TOPICS = ["tasks", "items", "annotations", "critiques", "batch_pending", "batch_state", "dlq"]
TASK_ID = "batch-task"
#: A task whose critique strategy needs token logprobs (refused by the batch path).
LOGIT_TASK_ID = "batch-task-logit"
#: The model of the annotations :func:`produce_annotations` writes.
ANNOTATOR_MODEL = common_pb2.ModelRef(provider="openai", model="stand-in-model")


def task(
    task_id: str = TASK_ID,
    critique: common_pb2.CritiqueStrategy.ValueType = common_pb2.CRITIQUE_STRATEGY_CHAIN_OF_THOUGHT,
) -> task_pb2.Task:
    """A two-label text task, naive annotation prompts, CoT criticism by default."""
    t = task_pb2.Task(
        task_id=task_id,
        modality=common_pb2.MODALITY_TEXT,
        annotation_strategy=common_pb2.ANNOTATION_STRATEGY_NAIVE,
        critique_strategy=critique,
    )
    for i, name in enumerate(["ham", "spam"]):
        t.labels.add(index=i, name=name)
    return t


async def setup(bootstrap: str) -> KafkaSettings:
    """Fresh topics under a unique prefix, with the tasks published."""
    kafka = await make_topics(bootstrap, unique_prefix(), TOPICS)
    await publish_task(kafka, task())
    await publish_task(kafka, task(LOGIT_TASK_ID, common_pb2.CRITIQUE_STRATEGY_COT_LOGIT))
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


def annotation_of(item_id: str, text: str, task_id: str = TASK_ID) -> annotation_pb2.Annotation:
    """An annotation of the item ``item_id`` (label 1, reference label set: it must not leak)."""
    annotation = annotation_pb2.Annotation(
        annotation_id=f"ann-{item_id}", label_index=1, label_name="spam", raw_output="[1]"
    )
    annotation.item.CopyFrom(
        item_pb2.Item(item_id=item_id, task_id=task_id, text=text, reference_label=0)
    )
    annotation.model.CopyFrom(ANNOTATOR_MODEL)
    return annotation


async def produce_annotations(
    kafka: KafkaSettings, texts: dict[str, str], task_id: str = TASK_ID
) -> None:
    """One Annotation per item id, as the annotator would have written it."""
    producer = kafka_clients.idempotent_producer(kafka, linger_ms=5)
    await producer.start()
    try:
        futures = []
        for item_id, text in texts.items():
            value = annotation_of(item_id, text, task_id).SerializeToString()
            futures.append(
                await producer.send(topic(kafka, "annotations"), value, key=item_id.encode())
            )
        for f in futures:
            await f
    finally:
        await producer.stop()


def critiques(collector: Collector) -> list[critique_pb2.Critique]:
    """Every committed critique read so far."""
    return [critique_pb2.Critique.FromString(v) for _, v in collector.records["critiques"]]


def criticized(collector: Collector) -> Counter[str]:
    """Item id -> critiques plus criticizer dead letters committed for it."""
    ids = [c.annotation.item.item_id for c in critiques(collector)]
    ids += [d.item_id for d in dead_letters(collector) if d.stage == "batch-criticizer"]
    return Counter(ids)


def annotations(collector: Collector) -> list[annotation_pb2.Annotation]:
    """Every committed annotation read so far."""
    return [annotation_pb2.Annotation.FromString(v) for _, v in collector.records["annotations"]]


def dead_letters(collector: Collector) -> list[dlq_pb2.DeadLetter]:
    """Every committed dead letter read so far."""
    return [dlq_pb2.DeadLetter.FromString(v) for _, v in collector.records["dlq"]]


def finished(collector: Collector) -> Counter[str]:
    """Item id -> annotations plus annotator dead letters committed for it."""
    ids = [a.item.item_id for a in annotations(collector)]
    ids += [d.item_id for d in dead_letters(collector) if d.stage == "batch-annotator"]
    return Counter(ids)


def outcomes(server: BatchStandIn) -> dict[str, str]:
    """custom_id -> what the stand-in did with it (succeeded, errored, expired)."""
    return {o.custom_id: o.kind for b in server.batches.values() for o in b.outcomes or ()}


def expected_dead(server: BatchStandIn, key_of: dict[str, str], max_attempts: int) -> set[str]:
    """Item ids (``key_of``: item id -> annotation or critique id) whose every attempt failed."""
    done = outcomes(server)
    return {
        item_id
        for item_id, key in key_of.items()
        if all(done.get(f"{key}-{n}") in ("errored", "expired") for n in range(1, max_attempts + 1))
    }


def settings(kind: str, server: BatchStandIn, **extra: object) -> BatchSettings:
    """Fast driver settings against the stand-in; ``kind`` is the provider, ``extra``
    overrides knobs (``stage_kind``: the group differs per stage kind, as it must)."""
    base_url = server.base_url + "/v1" if kind == "openai" else server.base_url
    knobs: dict[str, object] = {
        "max_requests": 25,
        "max_wait_s": 0.3,
        "poll_s": 0.1,
        "max_attempts": 3,
        "submit_backoff_s": 0.1,
        "anthropic_skew_s": 0.0,
        **extra,
    }
    return BatchSettings(
        service={"metrics_port": 0, "grpc_port": 0},
        llm={
            "provider": kind,
            "model": "stand-in-model",
            "base_url": base_url,
            "api_key": "sk-secret-never-logged",
            "price_input_per_mtok": 2.0,
            "price_output_per_mtok": 8.0,
        },
        group_id=f"batch-{extra.get('stage_kind', 'annotator')}-{kind}-{id(server)}",
        **knobs,
    )
