"""Dead letters: what a failed record becomes (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from act.v1 import dlq_pb2

from services.runtime.stage import Identity

MAX_ERROR_CHARS = 2_000


def error_text(error: BaseException) -> str:
    """A bounded description of an error; never the input's content."""
    text = f"{type(error).__name__}: {error}"
    return text[:MAX_ERROR_CHARS]


def build_dead_letter(
    *,
    stage: str,
    error: BaseException,
    attempts: int,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    headers: Mapping[str, bytes],
    identity: Identity,
    raw_model_output: str = "",
    now: datetime | None = None,
) -> dlq_pb2.DeadLetter:
    """The dead letter for a record that could not be processed.

    It keeps the original bytes and coordinates so an operator can inspect and
    replay it after fixing the cause.
    """
    letter = dlq_pb2.DeadLetter(
        stage=stage,
        error_type=type(error).__name__,
        error_message=error_text(error),
        attempts=attempts,
        original_topic=topic,
        original_partition=partition,
        original_offset=offset,
        original_key=key or b"",
        original_value=value or b"",
        item_id=identity.item_id,
        task_id=identity.task_id,
        raw_model_output=raw_model_output,
    )
    for name, raw in headers.items():
        letter.original_headers[name] = raw.decode("utf-8", "replace")
    letter.failed_at.FromDatetime(now or datetime.now(UTC))
    return letter
