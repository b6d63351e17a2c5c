"""Helpers for the sampler's Kafka tests: critiques in, committed outputs out."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field

from act.v1 import annotation_pb2, critique_pb2, item_pb2, review_pb2, sampling_pb2
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from services.devkit.kafkaio import topic
from services.runtime.admin import ensure_topics
from services.runtime.config import KafkaSettings
from services.runtime.runner import StageRunner
from services.sampler.service import SamplerSettings, SamplerStage

TOPICS = ["tasks", "critiques", "review_requests", "labels", "sampler_state", "dlq", "models"]


def critique(
    task_id: str,
    item_id: str,
    eps: float,
    *,
    label: int = 1,
    batch: tuple[str, int] | None = None,
) -> critique_pb2.Critique:
    """A minimal critique of a machine label ``label`` with error probability ``eps``."""
    item = item_pb2.Item(item_id=item_id, task_id=task_id, text=f"text of {item_id}")
    if batch is not None:
        item.batch.batch_id, item.batch.batch_size = batch
    annotation = annotation_pb2.Annotation(
        annotation_id=f"{item_id}:a", label_index=label, label_name=f"label{label}"
    )
    annotation.item.CopyFrom(item)
    c = critique_pb2.Critique(critique_id=f"{item_id}:c", eps=eps)
    c.annotation.CopyFrom(annotation)
    return c


async def make_kafka(bootstrap: str, partitions: int) -> KafkaSettings:
    """Kafka settings with a fresh topic prefix and the sampler's topics created."""
    kafka = KafkaSettings(bootstrap_servers=bootstrap, topic_prefix=f"t{uuid.uuid4().hex[:10]}.")
    await ensure_topics(kafka, replication=1, partitions=partitions, topic_ids=TOPICS)
    return kafka


async def produce(
    kafka: KafkaSettings,
    critiques: Iterable[critique_pb2.Critique],
    *,
    partition: int | None = None,
    transactional: bool = False,
) -> int:
    """Produce critiques keyed by item id; returns how many."""
    kwargs = kafka.client_kwargs()
    if transactional:
        kwargs["transactional_id"] = f"test-producer-{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(linger_ms=5, acks="all", **kwargs)
    await producer.start()
    n = 0
    try:
        name = topic(kafka, "critiques")
        batch: list[critique_pb2.Critique] = []

        async def flush() -> None:
            if transactional:
                async with producer.transaction():
                    futs = [await _send(producer, name, c, partition) for c in batch]
                    await asyncio.gather(*futs)
            else:
                futs = [await _send(producer, name, c, partition) for c in batch]
                await asyncio.gather(*futs)
            batch.clear()

        for c in critiques:
            batch.append(c)
            n += 1
            if len(batch) >= 500:
                await flush()
        if batch:
            await flush()
    finally:
        await producer.stop()
    return n


async def _send(
    producer: AIOKafkaProducer, name: str, c: critique_pb2.Critique, partition: int | None
) -> asyncio.Future[object]:
    fut: asyncio.Future[object] = await producer.send(
        name,
        c.SerializeToString(),
        key=c.annotation.item.item_id.encode(),
        partition=partition,
    )
    return fut


@dataclass
class Outputs:
    """Committed outputs of the sampler, read back with read_committed."""

    requests: list[review_pb2.ReviewRequest] = field(default_factory=list)
    labels: list[review_pb2.FinalLabel] = field(default_factory=list)
    states: list[tuple[str, sampling_pb2.SamplerState]] = field(default_factory=list)
    dead: int = 0
    headers: dict[str, dict[str, bytes]] = field(default_factory=dict)

    @property
    def decided(self) -> int:
        return len(self.requests) + len(self.labels)

    def item_ids(self) -> list[str]:
        return [r.decision.critique.annotation.item.item_id for r in self.requests] + [
            lab.item_id for lab in self.labels
        ]

    def latest_states(self) -> dict[str, sampling_pb2.SamplerState]:
        latest: dict[str, sampling_pb2.SamplerState] = {}
        for key, state in self.states:
            latest[key] = state
        return latest


async def read_outputs(
    kafka: KafkaSettings, *, expect_decided: int, timeout_s: float = 60.0, settle_s: float = 1.0
) -> Outputs:
    """Read every committed output until ``expect_decided`` decisions (then ``settle_s`` more)."""
    names = {topic(kafka, t): t for t in ("review_requests", "labels", "sampler_state", "dlq")}
    consumer = AIOKafkaConsumer(
        *names,
        group_id=None,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **kafka.client_kwargs(),
    )
    await consumer.start()
    out = Outputs()
    deadline = time.monotonic() + timeout_s
    settle_until: float | None = None
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=200, max_records=5000)
            for tp, records in batches.items():
                kind = names[tp.topic]
                for r in records:
                    if kind == "review_requests":
                        out.requests.append(review_pb2.ReviewRequest.FromString(r.value))
                    elif kind == "labels":
                        out.labels.append(review_pb2.FinalLabel.FromString(r.value))
                    elif kind == "sampler_state":
                        # A tombstone (null value) reads as an empty state.
                        state = sampling_pb2.SamplerState.FromString(r.value or b"")
                        out.states.append((r.key.decode(), state))
                    else:
                        out.dead += 1
                    if kind in ("review_requests", "labels") and r.headers:
                        out.headers[r.key.decode()] = dict(r.headers)
            now = time.monotonic()
            if settle_until is None and out.decided + out.dead >= expect_decided:
                settle_until = now + settle_s
            if settle_until is not None and now >= settle_until:
                return out
            if now > deadline:
                return out
    finally:
        await consumer.stop()


def sampler_settings(**overrides: object) -> SamplerSettings:
    """Settings for tests: no metrics/gRPC ports, quick commits, a test group."""
    base: dict[str, object] = {
        "metrics_port": 0,
        "grpc_port": 0,
        "commit_interval_ms": 50,
        "session_timeout_ms": 6000,
        "heartbeat_interval_ms": 500,
        "drain_timeout_s": 5.0,
        "log_json": False,
    }
    base.update(overrides)
    return SamplerSettings(**base)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def running_stage(
    kafka: KafkaSettings, settings: SamplerSettings
) -> AsyncIterator[tuple[StageRunner[critique_pb2.Critique], SamplerStage]]:
    """Run the sampler in-process until the block ends (graceful stop)."""
    stage = SamplerStage(settings)
    runner = StageRunner(stage, kafka, settings)
    task = asyncio.create_task(runner.run())
    try:
        await asyncio.wait_for(runner.started.wait(), timeout=30)
        yield runner, stage
    finally:
        runner.stop()
        await asyncio.wait_for(task, timeout=60)


async def committed_offsets(kafka: KafkaSettings, group_id: str, partitions: int) -> list[int]:
    """The group's committed offsets of the critiques partitions (-1 = none)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**kafka.client_kwargs())
    await admin.start()
    try:
        name = topic(kafka, "critiques")
        tps = [TopicPartition(name, p) for p in range(partitions)]
        got = await admin.list_consumer_group_offsets(group_id, partitions=tps)
        return [got[tp].offset if tp in got else -1 for tp in tps]
    finally:
        await admin.close()


def eps_of(out: Outputs) -> dict[str, tuple[bool, float, float]]:
    """item id -> (delta, pi, eps) of every decision."""
    res: dict[str, tuple[bool, float, float]] = {}
    for r in out.requests:
        d = r.decision
        res[d.critique.annotation.item.item_id] = (True, d.pi, d.eps)
    for lab in out.labels:
        res[lab.item_id] = (False, lab.pi, lab.eps)
    return res
