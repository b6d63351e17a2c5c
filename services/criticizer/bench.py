"""Criticizer throughput benchmarks for ``make bench``.

* ``criticizer_items_per_s``: the criticizer stage over Kafka against the
  OpenAI-API fault server with 0% faults and a fixed 1 s latency (its own
  process), 256 requests in flight through the client the service picks for a
  self-hosted server (``make_client``: the direct aiohttp client), the
  chain-of-thought strategy. Little's bound: 256 items/s; target >= 230.
* ``smollm2_critic_items_per_s``: CoT-logit criticism on the real local model
  (SmolLM2-135M-Instruct behind llama-cpp-python's server, grammar-constrained,
  real logprobs). The server runs one request at a time, so it measures the
  model on this machine's CPU, plus the stage around it.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from act.v1 import annotation_pb2, common_pb2, item_pb2, task_pb2

from services.criticizer.backend import LLMCriticBackend
from services.criticizer.service import CriticizerSettings, CriticizerStage
from services.llm import benchkit
from services.llm.factory import make_client
from services.runtime.admin import ensure_topics
from services.runtime.config import KafkaSettings
from services.runtime.tasks import StaticTaskSource
from services.runtime.topics import default_catalog

_TOPICS = ("annotations", "critiques", "dlq")
_MAILS = (
    "Hi Tom, the budget review moved to Thursday 3pm. Can you bring the Q3 numbers?",
    "CONGRATULATIONS! You have been selected for a $1000 gift card. Click now to claim it!",
    "Your parcel could not be delivered. Pay the 1.99 EUR fee at the link below today.",
    "Thanks for the patch, merged into the release branch; tagging 2.4.1 tomorrow.",
)


def bench_task(strategy: common_pb2.CritiqueStrategy.ValueType, model: str) -> task_pb2.Task:
    """A spam task criticised with ``strategy``."""
    task = task_pb2.Task(
        task_id=f"bench-critic-{int(strategy)}",
        modality=common_pb2.MODALITY_TEXT,
        critique_strategy=strategy,
        instructions="Is the message unsolicited bulk mail?",
    )
    for i, name in enumerate(("ham", "spam")):
        task.labels.add(index=i, name=name)
    task.critic_model.CopyFrom(common_pb2.ModelRef(provider="openai-compatible", model=model))
    return task


def _annotations(task: task_pb2.Task, n: int) -> list[tuple[str, annotation_pb2.Annotation]]:
    out = []
    for i in range(n):
        item_id = f"item-{i:07d}"
        annotation = annotation_pb2.Annotation(
            annotation_id=f"{item_id}:a",
            label_index=i % 2,
            label_name=task.labels[i % 2].name,
            rationale="The message reads like a personal note." if i % 2 == 0 else "Bait.",
            strategy=common_pb2.ANNOTATION_STRATEGY_CHAIN_OF_THOUGHT,
        )
        annotation.item.CopyFrom(
            item_pb2.Item(item_id=item_id, task_id=task.task_id, text=_MAILS[i % len(_MAILS)])
        )
        out.append((item_id, annotation))
    return out


def _settings(prefix: str, base_url: str, model: str, **llm: Any) -> CriticizerSettings:
    return CriticizerSettings(
        group_id=f"act-criticizer-{prefix}",
        metrics_port=0,
        grpc_port=0,
        log_json=True,
        log_level="WARNING",
        base_url=base_url,
        model=model,
        **llm,
    )


async def _run(
    bootstrap: str,
    base_url: str,
    task: task_pb2.Task,
    items: int,
    partitions: int,
    deadline_s: float,
    **llm: Any,
) -> float:
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    kafka = KafkaSettings(bootstrap_servers=bootstrap, topic_prefix=prefix)
    await ensure_topics(kafka, replication=1, partitions=partitions, topic_ids=_TOPICS)
    input_topic = default_catalog().name("annotations", prefix)
    await benchkit.produce(kafka, input_topic, _annotations(task, items))
    settings = _settings(prefix, base_url, task.critic_model.model, **llm)
    client = make_client(settings)
    stage = CriticizerStage(
        LLMCriticBackend(client, settings), StaticTaskSource([task]), provider="openai"
    )
    try:
        return await benchkit.drain(
            stage, kafka, settings, input_topic, partitions, items, deadline_s
        )
    finally:
        await client.aclose()


async def bench_criticizer_items_per_s(
    bootstrap: str,
    *,
    items: int = 6144,
    in_flight: int = 256,
    latency_s: float = 1.0,
    partitions: int = 12,
    timeout_s: float = 300.0,
) -> float:
    """Critiques per second through the criticizer stage (one process, one model server)."""
    proc, base_url = benchkit.spawn_openai_stub(latency_s)
    try:
        task = bench_task(common_pb2.CRITIQUE_STRATEGY_CHAIN_OF_THOUGHT, "bench-model")
        return await _run(
            bootstrap,
            base_url,
            task,
            items,
            partitions,
            timeout_s,
            max_in_flight=in_flight,
            concurrency=in_flight,
            timeout_s=30.0,
        )
    finally:
        benchkit.stop_process(proc)


async def bench_smollm2_critic_items_per_s(
    bootstrap: str,
    base_url: str,
    *,
    items: int = 16,
    partitions: int = 2,
    max_tokens_cot: int = 48,
    timeout_s: float = 600.0,
) -> float:
    """CoT-logit critiques per second on SmolLM2 at ``base_url`` (model ``smollm2``)."""
    task = bench_task(common_pb2.CRITIQUE_STRATEGY_COT_LOGIT, "smollm2")
    return await _run(
        bootstrap,
        base_url,
        task,
        items,
        partitions,
        timeout_s,
        max_in_flight=4,
        concurrency=2,
        timeout_s=300.0,
        structured_output="gbnf",
        supports_images=False,
        max_tokens_cot=max_tokens_cot,
        handler_timeout_s=600.0,
    )


if __name__ == "__main__":  # pragma: no cover - manual run
    import sys

    bootstrap = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:9092"
    if len(sys.argv) > 2:
        rate = asyncio.run(bench_smollm2_critic_items_per_s(bootstrap, sys.argv[2]))
        print(f"smollm2_critic_items_per_s {rate:.2f}")
    else:
        rate = asyncio.run(bench_criticizer_items_per_s(bootstrap))
        print(f"criticizer_items_per_s {rate:.1f}")
