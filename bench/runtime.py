"""Benchmarks of the exactly-once runtime (issue: platform)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from services.devkit.echo import EchoStage, SleepStage
from services.devkit.kafkaio import make_topics, produce_items, unique_prefix
from services.runtime.config import KafkaSettings, StageSettings
from services.runtime.runner import StageRunner
from services.runtime.stage import Stage


async def _drain(
    kafka: KafkaSettings, stage: Stage[Any], n: int, settings: StageSettings
) -> tuple[float, float]:
    """Run ``stage`` until ``n`` records are committed; (wall s, process CPU s)."""
    runner = StageRunner(stage, kafka, settings)
    task = asyncio.create_task(runner.run())
    # Clock starts at the first consumed record, after group join and fencing.
    while runner.in_flight == 0 and runner.committed_records == 0:  # noqa: ASYNC110 - polling a counter
        await asyncio.sleep(0.001)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    while runner.committed_records < n:
        if task.done():
            task.result()
        await asyncio.sleep(0.005)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    runner.stop()
    await task
    return wall, cpu


async def bench_runtime(bootstrap: str) -> list[tuple[str, float, str]]:
    """runtime_msgs_per_s, runtime_overhead_us_per_msg, runtime_concurrency_efficiency."""
    results: list[tuple[str, float, str]] = []
    n = 60_000
    kafka = await make_topics(
        bootstrap, unique_prefix(), ["items", "annotations", "dlq"], partitions=3
    )
    await produce_items(kafka, [f"b{i}" for i in range(n)])
    settings = StageSettings(
        group_id=f"bench-{kafka.topic_prefix}", metrics_port=0, max_in_flight=2048
    )
    wall, cpu = await _drain(kafka, EchoStage(), n, settings)
    results.append(("runtime_msgs_per_s", n / wall, "msg/s"))
    results.append(("runtime_overhead_us_per_msg", cpu / n * 1e6, "us CPU/msg"))

    in_flight, sleep_s = 256, 0.1
    n2 = 2560 * 12
    kafka2 = await make_topics(
        bootstrap, unique_prefix(), ["items", "annotations", "dlq"], partitions=3
    )
    await produce_items(kafka2, [f"c{i}" for i in range(n2)])
    settings2 = StageSettings(
        group_id=f"bench-{kafka2.topic_prefix}", metrics_port=0, max_in_flight=in_flight
    )
    wall2, _ = await _drain(kafka2, SleepStage(delay_ms=sleep_s * 1000), n2, settings2)
    ideal = in_flight / sleep_s
    results.append(("runtime_concurrency_efficiency", (n2 / wall2) / ideal, "ratio"))
    return results
