"""``annotator_items_per_s``: the annotator stage over Kafka against a 1 s-latency model.

The model is the OpenAI-API fault server with 0% faults and a fixed latency
of 1 s, in its own process; the stage keeps 256 requests in flight through
the client the service would pick for a self-hosted server (``make_client``:
the direct aiohttp client). Little's law bounds throughput at 256 items/s;
the target is >= 230 (0.9 of it).
"""

from __future__ import annotations

import asyncio
import uuid

from act.v1 import common_pb2, item_pb2, task_pb2

from services.annotator.backend import LLMAnnotatorBackend
from services.annotator.service import AnnotatorSettings, AnnotatorStage
from services.llm import benchkit
from services.llm.factory import make_client
from services.runtime.admin import ensure_topics
from services.runtime.config import KafkaSettings
from services.runtime.tasks import StaticTaskSource
from services.runtime.topics import default_catalog

_TOPICS = ("items", "annotations", "dlq")


def bench_task() -> task_pb2.Task:
    """A spam task with a naive annotation prompt."""
    task = task_pb2.Task(
        task_id="bench-annotator",
        modality=common_pb2.MODALITY_TEXT,
        annotation_strategy=common_pb2.ANNOTATION_STRATEGY_NAIVE,
        instructions="Is the message unsolicited bulk mail?",
    )
    for i, name in enumerate(("ham", "spam")):
        task.labels.add(index=i, name=name)
    return task


async def bench_annotator_items_per_s(
    bootstrap: str,
    *,
    items: int = 6144,
    in_flight: int = 256,
    latency_s: float = 1.0,
    partitions: int = 12,
    timeout_s: float = 300.0,
) -> float:
    """Items per second through the annotator stage (one process, one model server)."""
    proc, base_url = benchkit.spawn_openai_stub(latency_s)
    try:
        prefix = f"bench{uuid.uuid4().hex[:8]}."
        kafka = KafkaSettings(bootstrap_servers=bootstrap, topic_prefix=prefix)
        await ensure_topics(kafka, replication=1, partitions=partitions, topic_ids=_TOPICS)
        input_topic = default_catalog().name("items", prefix)
        task = bench_task()
        records = [
            (
                f"item-{i:07d}",
                item_pb2.Item(
                    item_id=f"item-{i:07d}",
                    task_id=task.task_id,
                    text=f"Benchmark message {i}: lunch at noon?",
                ),
            )
            for i in range(items)
        ]
        await benchkit.produce(kafka, input_topic, records)
        settings = AnnotatorSettings(
            group_id=f"act-annotator-{prefix}",
            metrics_port=0,
            grpc_port=0,
            log_json=True,
            log_level="WARNING",
            max_in_flight=in_flight,
            concurrency=in_flight,
            base_url=base_url,
            model="bench-model",
            timeout_s=30.0,
        )
        client = make_client(settings)
        stage = AnnotatorStage(
            LLMAnnotatorBackend(client, settings), StaticTaskSource([task]), provider="openai"
        )
        try:
            return await benchkit.drain(
                stage, kafka, settings, input_topic, partitions, items, timeout_s
            )
        finally:
            await client.aclose()
    finally:
        benchkit.stop_process(proc)


if __name__ == "__main__":  # pragma: no cover - manual run
    import sys

    rate = asyncio.run(
        bench_annotator_items_per_s(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:9092")
    )
    print(f"annotator_items_per_s {rate:.1f}")
