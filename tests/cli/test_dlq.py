"""``act dlq list``: triage fields, never payloads."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from act.v1 import dlq_pb2

from services.cli import dlq
from services.cli.kafkaio import Record
from services.devkit.kafkaio import unique_prefix
from tests.cli.helpers import ainvoke, kafka_args, make_topics, produce

PAYLOAD = "payload-with-private-words"
T0 = datetime(2025, 5, 1, tzinfo=UTC)


def letter(n: int, stage: str = "annotator", task: str = "t1") -> dlq_pb2.DeadLetter:
    out = dlq_pb2.DeadLetter(
        stage=stage,
        error_type="ParseError",
        error_message=f"bad output {n}",
        attempts=4,
        original_topic="act.annotations.v1",
        original_partition=1,
        original_offset=100 + n,
        original_key=f"item-{n}".encode(),
        original_value=PAYLOAD.encode(),
        item_id=f"item-{n}",
        task_id=task,
        raw_model_output=PAYLOAD,
    )
    out.failed_at.FromDatetime(T0 + timedelta(seconds=n))
    return out


def test_summary_leaves_payloads_out():
    row = dlq.dead_letter_summary(letter(1), Record("dlq", 2, 7, 0, b"item-1", b""))
    assert PAYLOAD not in json.dumps(row)
    assert row["original_value_bytes"] == len(PAYLOAD)
    assert row["item_id"] == "item-1" and row["attempts"] == 4 and row["original_offset"] == 101
    assert row["failed_at"] == "2025-05-01T00:00:01Z"
    assert (row["dlq_partition"], row["dlq_offset"]) == (2, 7)


def test_newest_first_limit_and_filters():
    records = [
        Record(
            "dlq",
            n % 2,
            n,
            0,
            None,
            letter(n, stage="sampler" if n == 3 else "annotator").SerializeToString(),
        )
        for n in range(6)
    ] + [Record("dlq", 0, 99, 0, None, b"\xff garbage")]
    rows, bad = dlq.summarize(reversed(records), limit=3)
    assert [r["item_id"] for r in rows] == ["item-3", "item-4", "item-5"]  # newest 3, oldest first
    assert bad == 1
    rows, _ = dlq.summarize(records, limit=10, stage="sampler")
    assert [r["item_id"] for r in rows] == ["item-3"]


@pytest.mark.kafka
async def test_dlq_list_reads_the_topic(kafka_bootstrap: str):
    kafka = await make_topics(kafka_bootstrap, unique_prefix())
    for n in range(5):
        await produce(
            kafka,
            "dlq",
            f"item-{n}".encode(),
            letter(n, task="t1" if n < 4 else "t2").SerializeToString(),
        )
    result = await ainvoke(["dlq", "list", "--limit", "2", *kafka_args(kafka)])
    assert result.exit_code == 0, result.output
    assert PAYLOAD not in result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["item_id"] for r in rows] == ["item-3", "item-4"]
    assert {
        "stage",
        "error_type",
        "error_message",
        "attempts",
        "original_topic",
        "original_partition",
        "original_offset",
        "item_id",
    } <= set(rows[0])
    only_t2 = await ainvoke(["dlq", "list", "--task", "t2", *kafka_args(kafka)])
    assert [json.loads(line)["item_id"] for line in only_t2.stdout.splitlines()] == ["item-4"]
