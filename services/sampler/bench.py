"""Throughput of the sampler stage over Kafka, for ``make bench`` (``sampler_items_per_s``).

One process runs the real :class:`~services.runtime.runner.StageRunner` with a
streaming-mode :class:`~services.sampler.service.SamplerStage` against a real
broker. The critiques are produced before the clock starts; the clock runs
from the stage's first record to the moment the group's committed offsets
cover every critique, so it measures decide + produce (decision and state
changelog) + transactional commit, and not the consumer group join.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import Sequence

from act.v1 import annotation_pb2, critique_pb2, item_pb2

from services.devkit import benchkit
from services.runtime import kafka_clients
from services.runtime.admin import ensure_topics
from services.runtime.config import KafkaSettings
from services.runtime.stage import Envelope, Output
from services.runtime.topics import default_catalog
from services.sampler.service import SamplerSettings, SamplerStage

_TOPICS = ("critiques", "review_requests", "labels", "sampler_state", "dlq")


class _CountingStage(SamplerStage):
    """The sampler, counting the records it decided."""

    decided = 0

    async def process(self, envelope: Envelope[critique_pb2.Critique]) -> Sequence[Output]:
        outputs = await super().process(envelope)
        self.decided += 1
        return outputs


def _critique(task_id: str, item_id: str, eps: float) -> critique_pb2.Critique:
    item = item_pb2.Item(item_id=item_id, task_id=task_id, text="benchmark item " + item_id)
    annotation = annotation_pb2.Annotation(annotation_id=item_id + ":a", label_index=1)
    annotation.item.CopyFrom(item)
    critique = critique_pb2.Critique(critique_id=item_id + ":c", eps=eps)
    critique.annotation.CopyFrom(annotation)
    return critique


async def _produce(kafka: KafkaSettings, topic: str, items: int) -> None:
    rnd = random.Random(7)
    producer = kafka_clients.producer(kafka, linger_ms=20, acks="all")
    await producer.start()
    try:
        futures = []
        for i in range(items):
            c = _critique("bench-task", f"item-{i:07d}", rnd.betavariate(0.5, 5.0))
            futures.append(
                await producer.send(
                    topic, c.SerializeToString(), key=c.annotation.item.item_id.encode()
                )
            )
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def bench_sampler_items_per_s(
    bootstrap: str,
    *,
    items: int = 20_000,
    partitions: int = 4,
    output_partitions: int = 2,
    timeout_s: float = 300.0,
) -> float:
    """Critiques per second through the sampler stage (streaming mode, one process).

    ``partitions`` input partitions (one transactional producer each in the
    runner), ``output_partitions`` per output topic: every transaction writes
    a commit marker to each partition it touched, so on one small broker the
    output fan-out costs as much as the records.
    """
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    kafka = KafkaSettings(bootstrap_servers=bootstrap, topic_prefix=prefix)
    # The changelog is co-partitioned with the input; the outputs are not.
    await ensure_topics(
        kafka, replication=1, partitions=partitions, topic_ids=["critiques", "sampler_state"]
    )
    outputs = [t for t in _TOPICS if t not in ("critiques", "sampler_state")]
    await ensure_topics(kafka, replication=1, partitions=output_partitions, topic_ids=outputs)
    catalog = default_catalog()
    input_topic = catalog.name("critiques", prefix)
    await _produce(kafka, input_topic, items)

    group = f"act-sampler-{prefix}"
    settings = SamplerSettings(
        group_id=group, mode="streaming", rule="threshold", budget_fraction=0.1,
        metrics_port=0, grpc_port=0, log_json=True, log_level="WARNING",
    )  # fmt: skip
    stage = _CountingStage(settings)
    try:
        # Ask the broker only once everything is decided.
        return await benchkit.drain(
            stage,
            kafka,
            settings,
            input_topic,
            partitions,
            items,
            timeout_s,
            ready=lambda: stage.decided >= items,
            poll_s=0.01,
        )
    finally:
        admin = kafka_clients.admin_client(kafka)
        with contextlib.suppress(Exception):  # best effort: leave the broker tidy
            await admin.start()
            try:
                await admin.delete_topics([catalog.name(t, prefix) for t in _TOPICS])
            finally:
                await admin.close()


if __name__ == "__main__":  # pragma: no cover - manual run
    import sys

    rate = asyncio.run(
        bench_sampler_items_per_s(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:9092")
    )
    print(f"sampler_items_per_s {rate:.0f}")
