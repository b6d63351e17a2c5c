"""``annotator_items_per_s``: the annotator stage over Kafka against a 1 s-latency model.

The model is the OpenAI-API fault server with 0% faults and a fixed latency
of 1 s, in its own process; the stage keeps 256 requests in flight through
the client the service would pick for a self-hosted server (the one backend
builder, :func:`services.backends.build.llm_backends`: the direct aiohttp
client). Little's law bounds throughput at 256 items/s; the target is >= 230
(0.9 of it).

``qwen_annotator_items_per_s`` (:func:`bench_local_annotator_items_per_s`):
naive annotation on a real local model behind llama-cpp-python's server
(grammar-constrained label, real logprobs), a few items, so it measures the
model on this machine's CPU plus the stage around it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from act.v1 import common_pb2, item_pb2, task_pb2

from services.annotator.settings import AnnotatorSettings
from services.annotator.stage import AnnotatorStage
from services.backends.build import llm_backends
from services.devkit import benchkit
from services.llm.settings import LOCAL_SERVER_OPTIONS, LOCAL_SERVER_STAGE
from services.runtime.tasks import StaticTaskSource

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


_MAILS = (
    "Hi Tom, the budget review moved to Thursday 3pm. Can you bring the Q3 numbers?",
    "CONGRATULATIONS! You have been selected for a $1000 gift card. Click now to claim it!",
    "Your parcel could not be delivered. Pay the 1.99 EUR fee at the link below today.",
    "Thanks for the patch, merged into the release branch; tagging 2.4.1 tomorrow.",
)


async def _run(
    bootstrap: str,
    base_url: str,
    model: str,
    texts: list[str],
    partitions: int,
    timeout_s: float,
    *,
    stage: dict[str, Any],
    llm: dict[str, Any],
) -> float:
    kafka, input_topic = await benchkit.bench_kafka(bootstrap, _TOPICS, "items", partitions)
    task = bench_task()
    records = [
        (f"item-{i:07d}", item_pb2.Item(item_id=f"item-{i:07d}", task_id=task.task_id, text=text))
        for i, text in enumerate(texts)
    ]
    await benchkit.produce(kafka, input_topic, records)
    settings = AnnotatorSettings(
        stage=benchkit.bench_stage_settings("annotator", kafka, **stage),
        llm={"base_url": base_url, "model": model, **llm},
    )
    backends = llm_backends(settings.llm)
    annotator = AnnotatorStage(backends.annotator, StaticTaskSource([task]), provider="openai")
    try:
        return await benchkit.drain(
            annotator, kafka, settings.stage, input_topic, partitions, len(texts), timeout_s
        )
    finally:
        assert backends.close is not None
        await backends.close()


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
        return await _run(
            bootstrap,
            base_url,
            "bench-model",
            [f"Benchmark message {i}: lunch at noon?" for i in range(items)],
            partitions,
            timeout_s,
            stage={"max_in_flight": in_flight},
            llm={"concurrency": in_flight, "timeout_s": 30.0},
        )
    finally:
        benchkit.stop_process(proc)


async def bench_local_annotator_items_per_s(
    bootstrap: str,
    base_url: str,
    model: str,
    *,
    items: int = 16,
    partitions: int = 2,
    timeout_s: float = 600.0,
) -> float:
    """Naive annotations per second on a local model server (``model`` its alias)."""
    return await _run(
        bootstrap,
        base_url,
        model,
        [_MAILS[i % len(_MAILS)] + f" (ref {i})" for i in range(items)],
        partitions,
        timeout_s,
        stage=LOCAL_SERVER_STAGE,
        llm=LOCAL_SERVER_OPTIONS,
    )


if __name__ == "__main__":  # pragma: no cover - manual run
    import sys

    rate = asyncio.run(
        bench_annotator_items_per_s(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:9092")
    )
    print(f"annotator_items_per_s {rate:.1f}")
