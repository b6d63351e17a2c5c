"""Two samplers in one group on a real broker: partitions move mid-stream, decisions don't.

The second runner joins while the first is deciding (a rebalance hands it
half the partitions, restored from their changelogs), then the first stops
mid-stream (the second takes everything). Read ``read_committed``, every item
is decided exactly once, exactly as by one uninterrupted run.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable

import pytest

from .support import (
    eps_of,
    make_kafka,
    produce,
    read_outputs,
    running_stage,
    sampler_settings,
)
from .test_kafka import reference_decisions, skewed_critiques, wait_committed

pytestmark = pytest.mark.kafka


async def _until(condition: Callable[[], bool], timeout_s: float = 60.0) -> None:
    for _ in range(int(timeout_s / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise TimeoutError("condition not reached")


async def test_two_samplers_rebalancing_mid_stream_decide_like_one(kafka_bootstrap: str) -> None:
    partitions, n = 4, 8000
    items = skewed_critiques(n, seed=11)
    settings = {"window_items": 300, "rule": "exponential", "commit_max_records": 200}
    reference = await reference_decisions(kafka_bootstrap, items, partitions, **settings)

    kafka = await make_kafka(kafka_bootstrap, partitions)
    group = f"g-{kafka.topic_prefix}"
    cut1, cut2 = 3000, 5500
    await produce(kafka, items[:cut1])
    s = sampler_settings(group_id=group, fetch_max_records=50, max_in_flight=64, **settings)
    async with contextlib.AsyncExitStack() as first:
        runner_a, _ = await first.enter_async_context(running_stage(kafka, s))
        await wait_committed(kafka, group, partitions, 1500)
        async with running_stage(kafka, s) as (runner_b, stage_b):
            # B joins mid-stream: both rejoin, B gets its share, restored from
            # the changelog, and decides the next part of the stream with A.
            await _until(lambda: bool(stage_b.partitions))
            assert len(stage_b.partitions) < partitions
            await produce(kafka, items[cut1:cut2])
            await _until(lambda: runner_b.committed_records > 0)
            # The rest of the stream arrives, and A leaves in the middle of it:
            # B takes every partition from A's last commits.
            await produce(kafka, items[cut2:])
            await first.aclose()
            assert runner_a.committed_records < n
            await wait_committed(kafka, group, partitions, n, timeout_s=180)
            assert len(stage_b.partitions) == partitions
            assert runner_a.committed_records + runner_b.committed_records == n
    out = await read_outputs(kafka, expect_decided=n, settle_s=0.5)
    assert out.dead == 0
    assert Counter(Counter(out.item_ids()).values()) == {1: n}  # every item exactly once
    assert eps_of(out) == reference  # same delta, pi and eps for every item
