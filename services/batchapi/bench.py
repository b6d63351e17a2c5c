"""``batch_path_items_per_s``: items through the batch path against the batch stand-in.

The driver (in-process, OpenAI protocol) reads items from Kafka, forms batches
of 1,000, submits them to :class:`~services.batchapi.standin.BatchStandIn`
(a STAND-IN, not OpenAI: every batch ends 0.5 s after creation, no faults),
polls, and publishes annotations transactionally. The clock runs from the
driver's start to the moment every annotation is committed, so it measures
the path's own overhead (prompting, JSONL, state records, transactions), not
a provider's queue: real batches take minutes to hours. Also reports the cost
per item at the configured prices with the batch discount.

``python -m services.batchapi.bench [BOOTSTRAP]`` prints one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from act.v1 import annotation_pb2, common_pb2, item_pb2, task_pb2

from services.batchapi.app import BatchProcess
from services.batchapi.settings import BatchSettings
from services.batchapi.standin import BatchStandIn, StandInConfig
from services.devkit import benchkit
from services.runtime import kafka_clients
from services.runtime.logging import configure_logging
from services.runtime.topics import default_catalog

TOPICS = ("tasks", "items", "annotations", "batch_pending", "batch_state", "dlq")
#: Prices of the benchmark's pretend model (USD per 1M tokens, before the discount).
PRICE_IN, PRICE_OUT = 0.15, 0.60


def _task() -> task_pb2.Task:
    task = task_pb2.Task(
        task_id="bench-batch",
        modality=common_pb2.MODALITY_TEXT,
        annotation_strategy=common_pb2.ANNOTATION_STRATEGY_NAIVE,
        instructions="Is the message unsolicited bulk mail?",
    )
    for i, name in enumerate(("ham", "spam")):
        task.labels.add(index=i, name=name)
    return task


async def bench_batch_path(bootstrap: str, n_items: int = 5000) -> tuple[float, float]:
    """(items per second, USD per annotated item) through the batch path."""
    kafka, items_topic = await benchkit.bench_kafka(bootstrap, TOPICS, "items", 3)
    task = _task()
    producer = kafka_clients.idempotent_producer(kafka)
    await producer.start()
    try:
        await producer.send_and_wait(
            default_catalog().name("tasks", kafka.topic_prefix),
            task.SerializeToString(),
            key=b"bench-batch",
        )
        for i in range(n_items):
            item = item_pb2.Item(
                item_id=f"b{i}", task_id=task.task_id, text=f"Bench message {i}: meet at {i % 24}h?"
            )
            await producer.send(items_topic, item.SerializeToString(), key=item.item_id.encode())
        await producer.flush()
    finally:
        await producer.stop()
    server = BatchStandIn(StandInConfig(completion_s=0.5))
    await server.start()
    settings = BatchSettings(
        service={"metrics_port": 0, "grpc_port": 0, "log_level": "WARNING"},
        llm={
            "provider": "openai",
            "model": "bench-model",
            "base_url": server.base_url + "/v1",
            "price_input_per_mtok": PRICE_IN,
            "price_output_per_mtok": PRICE_OUT,
        },
        group_id=f"act-batch-{kafka.topic_prefix}",
        max_requests=1000,
        max_wait_s=0.5,
        poll_s=0.2,
    )
    process = BatchProcess(settings, kafka)
    annotations = kafka_clients.snapshot_consumer(kafka)
    await annotations.start()
    annotations.subscribe([default_catalog().name("annotations", kafka.topic_prefix)])
    cost, seen = 0.0, 0
    started = time.perf_counter()
    try:
        await process.start()
        deadline = time.monotonic() + 600
        while seen < n_items:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{seen} of {n_items} annotations in 600 s")
            batches = await annotations.getmany(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    seen += 1
                    cost += annotation_pb2.Annotation.FromString(record.value).usage.cost_usd
        elapsed = time.perf_counter() - started
    finally:
        await process.stop()
        await annotations.stop()
        await server.stop()
    return n_items / elapsed, cost / max(seen, 1)


def main() -> None:
    """Print ``{"metric": "batch_path_items_per_s", ...}`` for the broker in argv[1]."""
    configure_logging("bench", "WARNING")
    bootstrap = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:9092"
    rate, cost = asyncio.run(bench_batch_path(bootstrap))
    print(
        json.dumps({"metric": "batch_path_items_per_s", "value": round(rate, 2), "unit": "items/s"})
    )
    print(json.dumps({"metric": "batch_path_cost_per_item_usd", "value": cost, "unit": "USD"}))


if __name__ == "__main__":
    main()
