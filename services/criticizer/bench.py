"""Criticizer throughput benchmarks for ``make bench``.

* ``criticizer_items_per_s``: the criticizer stage over Kafka against the
  OpenAI-API fault server with 0% faults and a fixed 1 s latency (its own
  process), 256 requests in flight through the client the service picks for a
  self-hosted server (:func:`services.backends.build.llm_backends`: the
  direct aiohttp client), the
  chain-of-thought strategy. Little's bound: 256 items/s; target >= 230.
* ``smollm2_critic_items_per_s``: CoT-logit criticism on the real local model
  (SmolLM2-135M-Instruct behind llama-cpp-python's server, grammar-constrained,
  real logprobs). The server runs one request at a time, so it measures the
  model on this machine's CPU, plus the stage around it.
* ``qwen_critic_logit_items_per_s``: the same on Qwen2.5-Coder-1.5B-Instruct
  (``deploy/llm-server.sh`` profile ``qwen-1.5b``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from act.v1 import annotation_pb2, common_pb2, item_pb2, task_pb2

from services.backends.build import llm_backends
from services.criticizer.settings import CriticizerSettings
from services.criticizer.stage import CriticizerStage
from services.devkit import benchkit
from services.llm.settings import LOCAL_SERVER_OPTIONS, LOCAL_SERVER_STAGE
from services.runtime.tasks import StaticTaskSource

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


async def _run(
    bootstrap: str,
    base_url: str,
    task: task_pb2.Task,
    items: int,
    partitions: int,
    deadline_s: float,
    *,
    stage: dict[str, Any],
    llm: dict[str, Any],
) -> float:
    kafka, input_topic = await benchkit.bench_kafka(bootstrap, _TOPICS, "annotations", partitions)
    await benchkit.produce(kafka, input_topic, _annotations(task, items))
    settings = CriticizerSettings(
        stage=benchkit.bench_stage_settings("criticizer", kafka, **stage),
        llm={"base_url": base_url, "model": task.critic_model.model, **llm},
    )
    backends = llm_backends(settings.llm)
    criticizer = CriticizerStage(backends.critic, StaticTaskSource([task]), provider="openai")
    try:
        return await benchkit.drain(
            criticizer, kafka, settings.stage, input_topic, partitions, items, deadline_s
        )
    finally:
        assert backends.close is not None
        await backends.close()


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
            stage={"max_in_flight": in_flight},
            llm={"concurrency": in_flight, "timeout_s": 30.0},
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
    return await bench_local_critic_items_per_s(
        bootstrap,
        base_url,
        "smollm2",
        items=items,
        partitions=partitions,
        max_tokens_cot=max_tokens_cot,
        timeout_s=timeout_s,
    )


async def bench_local_critic_items_per_s(
    bootstrap: str,
    base_url: str,
    model: str,
    *,
    items: int = 16,
    partitions: int = 2,
    max_tokens_cot: int = 48,
    timeout_s: float = 600.0,
) -> float:
    """CoT-logit critiques per second on a local model server (``model`` its alias)."""
    task = bench_task(common_pb2.CRITIQUE_STRATEGY_COT_LOGIT, model)
    return await _run(
        bootstrap,
        base_url,
        task,
        items,
        partitions,
        timeout_s,
        stage=LOCAL_SERVER_STAGE,
        llm={**LOCAL_SERVER_OPTIONS, "max_tokens_cot": max_tokens_cot},
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
