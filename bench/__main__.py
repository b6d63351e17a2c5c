"""``make bench``: one JSON object per metric, ``{"metric", "value", "unit"}``.

Starts a Kafka broker of its own (or uses ``ACT_BENCH_KAFKA_BOOTSTRAP``).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

from bench.runtime import bench_runtime
from services.runtime.logging import configure_logging
from tests.support.stack import LocalBroker, free_port

Suite = Callable[[str], Awaitable[list[tuple[str, float, str]]]]
SUITES: dict[str, Suite] = {"runtime": bench_runtime}


def emit(metric: str, value: float, unit: str) -> None:
    """Print one metric as a JSON line."""
    print(json.dumps({"metric": metric, "value": round(value, 4), "unit": unit}), flush=True)


async def main(selected: list[str]) -> None:
    configure_logging("bench", "WARNING")
    bootstrap = os.environ.get("ACT_BENCH_KAFKA_BOOTSTRAP")
    broker = None
    if not bootstrap:
        state = Path(tempfile.mkdtemp(prefix="act-bench-"))
        broker = LocalBroker(state_dir=state, port=free_port(), controller_port=free_port())
        await asyncio.to_thread(broker.start)
        bootstrap = broker.bootstrap
    try:
        for name in selected or list(SUITES):
            for metric, value, unit in await SUITES[name](bootstrap):
                emit(metric, value, unit)
    finally:
        if broker is not None:
            await asyncio.to_thread(broker.stop)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
