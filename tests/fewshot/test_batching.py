"""Micro-batching of concurrent calls."""

from __future__ import annotations

import asyncio

import pytest

from services.fewshot.batching import MicroBatcher


async def test_concurrent_calls_share_batches_and_keep_order():
    seen: list[int] = []

    def double(values: list[int]) -> list[int]:
        seen.append(len(values))
        return [2 * v for v in values]

    batcher = MicroBatcher(double, max_batch=16)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(40)))
    assert results == [2 * i for i in range(40)]
    assert batcher.batches == len(seen) and len(seen) <= 4 and max(seen) <= 16


async def test_a_failing_batch_fails_its_callers_only():
    def boom(values: list[int]) -> list[int]:
        if 3 in values:
            raise RuntimeError("bad batch")
        return values

    batcher = MicroBatcher(boom, max_batch=2)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(6)), return_exceptions=True)
    assert results[:2] == [0, 1] and results[4:] == [4, 5]
    assert all(isinstance(r, RuntimeError) for r in results[2:4])
    assert await batcher.submit(7) == 7  # still usable


async def test_wrong_result_count_is_an_error():
    batcher = MicroBatcher(lambda values: values[:-1])
    with pytest.raises(RuntimeError, match="returned"):
        await batcher.submit(1)
