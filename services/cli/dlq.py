"""Listing dead letters without their payloads (pure helpers + one reader)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from act.v1 import dlq_pb2
from google.protobuf.message import DecodeError

from services.cli.kafkaio import Record, read_snapshot
from services.runtime.config import KafkaSettings
from services.runtime.topics import default_catalog


def dead_letter_summary(letter: dlq_pb2.DeadLetter, record: Record | None = None) -> dict[str, Any]:
    """What an operator needs to triage a dead letter, never its payload.

    ``original_value``, ``original_key`` bytes and ``raw_model_output`` may
    hold item content and are left out (only the value's size is shown).
    """
    out: dict[str, Any] = {
        "stage": letter.stage,
        "error_type": letter.error_type,
        "error_message": letter.error_message,
        "attempts": letter.attempts,
        "original_topic": letter.original_topic,
        "original_partition": letter.original_partition,
        "original_offset": letter.original_offset,
        "item_id": letter.item_id,
        "task_id": letter.task_id,
        "failed_at": letter.failed_at.ToJsonString() if letter.HasField("failed_at") else None,
        "original_value_bytes": len(letter.original_value),
    }
    if letter.HasField("trace") and letter.trace.trace_id:
        out["trace_id"] = letter.trace.trace_id
    if record is not None:
        out["dlq_partition"] = record.partition
        out["dlq_offset"] = record.offset
    return out


def summarize(
    records: Iterable[Record],
    *,
    limit: int | None = None,
    stage: str | None = None,
    task_id: str | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """Summaries of the newest ``limit`` dead letters (oldest first) and the
    number of undecodable records."""
    rows: list[tuple[tuple[int, int, int], dict[str, Any]]] = []
    bad = 0
    for record in records:
        if record.value is None:
            continue
        try:
            letter = dlq_pb2.DeadLetter.FromString(record.value)
        except DecodeError:
            bad += 1
            continue
        if stage and letter.stage != stage:
            continue
        if task_id and letter.task_id != task_id:
            continue
        when = (
            letter.failed_at.ToNanoseconds()
            if letter.HasField("failed_at")
            else record.timestamp * 10**6
        )
        rows.append(((when, record.partition, record.offset), dead_letter_summary(letter, record)))
    rows.sort(key=lambda r: r[0])
    if limit is not None:
        rows = rows[-limit:] if limit > 0 else []
    return [row for _, row in rows], bad


async def list_dead_letters(
    kafka: KafkaSettings,
    *,
    limit: int,
    stage: str | None = None,
    task_id: str | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """Read the dlq topic and summarize.

    Without filters only the tail of each partition is read: ``2 * limit``
    offsets, since transaction markers take offsets too.
    """
    topic = default_catalog().name("dlq", kafka.topic_prefix)
    last = None if (stage or task_id) else 2 * limit
    records = await read_snapshot(kafka, topic, last=last)
    return summarize(records, limit=limit, stage=stage, task_id=task_id)
