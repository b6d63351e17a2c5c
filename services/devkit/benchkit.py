"""Shared pieces of the stage throughput benchmarks (annotator, criticizer).

The clock runs from the stage's first record to the moment its consumer
group's committed offsets cover every input, so it measures model calls,
produce and transactional commit, not the group join. Inputs are produced
before the clock starts.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from google.protobuf.message import Message

from services.runtime import kafka_clients
from services.runtime.admin import ensure_topics
from services.runtime.config import KafkaSettings, StageSettings
from services.runtime.runner import StageRunner
from services.runtime.stage import Stage
from services.runtime.topics import default_catalog


async def bench_kafka(
    bootstrap: str, topic_ids: Sequence[str], input_id: str, partitions: int
) -> tuple[KafkaSettings, str]:
    """Fresh run-prefixed topics for one benchmark; returns the settings and the
    broker name of the input topic."""
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    kafka = KafkaSettings(bootstrap_servers=bootstrap, topic_prefix=prefix)
    await ensure_topics(kafka, replication=1, partitions=partitions, topic_ids=list(topic_ids))
    return kafka, default_catalog().name(input_id, prefix)


def bench_stage_settings(name: str, kafka: KafkaSettings, **overrides: Any) -> dict[str, Any]:
    """Stage settings of a benchmark run: its own group, no ports, quiet JSON logs."""
    return {
        "group_id": f"act-{name}-{kafka.topic_prefix}",
        "metrics_port": 0,
        "grpc_port": 0,
        "log_json": True,
        "log_level": "WARNING",
        **overrides,
    }


def spawn_openai_stub(
    latency_s: float, timeout_s: float = 30.0
) -> tuple[subprocess.Popen[bytes], str]:
    """Start the OpenAI-API stand-in (``services.devkit.fault_server``, 0% faults).

    Its own process, so its event loop does not compete with the stage's.
    Returns the process and the ``/v1`` base URL.
    """
    # Imported here: the server needs the dev extras (uvicorn, starlette).
    from services.devkit.fault_server import spawn

    return spawn(latency_s=latency_s, fault_rate=0.0, timeout_s=timeout_s)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """Terminate a spawned process and reap it."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


async def produce(kafka: KafkaSettings, topic: str, records: Sequence[tuple[str, Message]]) -> None:
    """Produce (key, message) records."""
    producer = kafka_clients.producer(kafka, linger_ms=20, acks="all")
    await producer.start()
    try:
        futures = [
            await producer.send(topic, m.SerializeToString(), key=k.encode()) for k, m in records
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


class FirstRecordClock:
    """Wraps a stage's ``process`` to note when the first record arrives."""

    def __init__(self, stage: Stage[Any]) -> None:
        self.first_at: float | None = None
        inner = stage.process

        async def process(envelope: Any) -> Any:
            if self.first_at is None:
                self.first_at = time.perf_counter()
            return await inner(envelope)

        stage.process = process  # type: ignore[method-assign]


async def drain(
    stage: Stage[Any],
    kafka: KafkaSettings,
    settings: StageSettings,
    input_topic: str,
    partitions: int,
    n: int,
    timeout_s: float,
    *,
    ready: Callable[[], bool] | None = None,
    poll_s: float = 0.02,
) -> float:
    """Run ``stage`` until its group committed ``n`` inputs; returns items per second.

    The committed offsets are polled every ``poll_s``; with ``ready``, only
    once ``ready()`` is true (polling the broker all along would steal the
    event loop from the stage being measured).
    """
    clock = FirstRecordClock(stage)
    runner = StageRunner(stage, kafka, settings)
    admin = kafka_clients.admin_client(kafka)
    await admin.start()
    tps = [TopicPartition(input_topic, p) for p in range(partitions)]
    group = settings.group_id
    run = asyncio.create_task(runner.run())
    try:
        deadline = time.perf_counter() + timeout_s
        while True:
            if run.done():
                run.result()
                raise RuntimeError("stage stopped early")
            if ready is None or ready():
                try:
                    got = await admin.list_consumer_group_offsets(group, partitions=tps)
                except KafkaError:  # coordinator not ready yet (fresh broker, new group)
                    got = {}
                if sum(max(0, got[tp].offset) for tp in tps if tp in got) >= n:
                    done_at = time.perf_counter()
                    break
            if time.perf_counter() > deadline:
                raise TimeoutError("benchmark did not finish")
            await asyncio.sleep(poll_s)
        assert clock.first_at is not None
        return n / (done_at - clock.first_at)
    finally:
        runner.stop()
        await asyncio.wait_for(run, timeout=60)
        await admin.close()
