"""Helpers of the CLI tests: run ``act`` in-process, read topics independently."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from typer.testing import CliRunner, Result

from services.cli.main import app
from services.devkit.kafkaio import topic
from services.runtime.admin import ensure_topics
from services.runtime.config import KafkaSettings

REPO = Path(__file__).resolve().parents[2]


def invoke(args: Sequence[str], input: str | bytes | None = None) -> Result:
    """Run the CLI in this process; undo its logging configuration afterwards.

    The CLI configures structlog to print to the stderr it sees, which under
    CliRunner is a buffer that is closed after the call.
    """
    saved = structlog.get_config()
    root_handlers = list(logging.getLogger().handlers)
    try:
        return CliRunner().invoke(app, list(args), input=input)
    finally:
        structlog.configure(**saved)
        root = logging.getLogger()
        for handler in list(root.handlers):
            if handler not in root_handlers:
                root.removeHandler(handler)


async def ainvoke(args: Sequence[str], input: str | bytes | None = None) -> Result:
    """:func:`invoke` from async code (the CLI runs its own event loop)."""
    return await asyncio.to_thread(invoke, args, input)


def run_module(
    args: Sequence[str], input: bytes | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[bytes]:
    """``python -m <args>`` from the repository root, as the local stack does."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=REPO,
        env=env,
        input=input,
        capture_output=True,
        timeout=timeout,
        check=False,
    )


async def make_topics(bootstrap: str, prefix: str) -> KafkaSettings:
    kafka = KafkaSettings(bootstrap_servers=bootstrap, topic_prefix=prefix)
    await ensure_topics(kafka, replication=1, partitions=2)
    return kafka


def kafka_args(kafka: KafkaSettings) -> list[str]:
    return ["--bootstrap", kafka.bootstrap_servers, "--topic-prefix", kafka.topic_prefix]


async def read_all(
    kafka: KafkaSettings, topic_id: str, timeout: float = 30
) -> list[tuple[bytes | None, bytes | None, int]]:
    """(key, value, partition) of every committed record of a topic."""
    name = topic(kafka, topic_id)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka.bootstrap_servers,
        isolation_level="read_committed",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        await consumer.topics()
        parts = [TopicPartition(name, p) for p in sorted(consumer.partitions_for_topic(name) or ())]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        end = await consumer.end_offsets(parts)
        out: list[tuple[bytes | None, bytes | None, int]] = []
        deadline = time.monotonic() + timeout
        while [tp for tp in parts if await consumer.position(tp) < end[tp]]:
            assert time.monotonic() < deadline, f"could not read {name} to its end"
            batches = await consumer.getmany(timeout_ms=200)
            for tp, records in batches.items():
                out.extend((r.key, r.value, tp.partition) for r in records)
        return out
    finally:
        await consumer.stop()


async def produce(kafka: KafkaSettings, topic_id: str, key: bytes, value: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic(kafka, topic_id), value, key=key)
    finally:
        await producer.stop()
