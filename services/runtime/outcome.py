"""What one consumed record becomes: the stage's encoded outputs, or one dead letter.

:class:`RecordHandler` decodes a record, runs the stage's handler on it with a
per-attempt timeout and bounded retries, and encodes the outputs as
:class:`OutRecord`. A record that cannot be decoded, or whose handler fails
permanently or runs out of attempts, becomes a single dead letter for the
dead-letter topic instead. Either way the result is buffered in the
partition's ledger and committed in the same transaction as the record's
offset (see :mod:`services.runtime.partitions`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic

import structlog
from aiokafka import ConsumerRecord
from google.protobuf.message import DecodeError

from services.runtime import metrics
from services.runtime.dlq import build_dead_letter
from services.runtime.retry import PermanentError, RetryPolicy
from services.runtime.stage import Envelope, Identity, M, Output, Stage
from services.runtime.topics import TopicCatalog

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class OutRecord:
    """An encoded output record."""

    topic: str
    key: bytes | None
    #: None: a tombstone (compaction removes the key).
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    #: None: the default partitioner's (murmur2 of the key).
    partition: int | None = None


class RecordHandler(Generic[M]):
    """Runs a stage's handler on one record: decode, attempts with retries, encode."""

    def __init__(
        self,
        stage: Stage[M],
        *,
        catalog: TopicCatalog,
        topic_prefix: str,
        dlq_topic: str,
        handler_timeout_s: float,
        retry: RetryPolicy,
    ) -> None:
        self.stage = stage
        self.catalog = catalog
        self.topic_prefix = topic_prefix
        self.dlq_topic = dlq_topic
        self.handler_timeout_s = handler_timeout_s
        self.retry = retry
        # Topic ids resolved to full names once; the catalog lookup is per output.
        self._topic_names: dict[str, str] = {}
        self._m_retries = metrics.RETRIES.labels(stage=stage.name)
        #: Attempts that failed and were retried (for the stage's heartbeat).
        self.retries = 0

    async def outcome(self, record: ConsumerRecord[bytes, bytes]) -> list[OutRecord]:
        """The encoded outputs of one record: the stage's, or one dead letter."""
        headers = {k: v for k, v in (record.headers or ())}
        identity = Identity()
        try:
            message = self.stage.input_type.FromString(record.value or b"")
        except (DecodeError, RuntimeWarning) as exc:
            return self._dead_letter(
                record, headers, identity, PermanentError(f"undecodable: {exc}"), 1
            )
        identity = self.stage.identify(message)
        # Each record runs in its own asyncio task, hence its own context copy:
        # binding here never leaks to other records and needs no unbinding.
        structlog.contextvars.bind_contextvars(task_id=identity.task_id, item_id=identity.item_id)
        attempt = 1
        while True:
            envelope = Envelope(
                message=message,
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                key=record.key,
                headers=headers,
                timestamp_ms=record.timestamp,
                attempt=attempt,
            )
            try:
                async with asyncio.timeout(self.handler_timeout_s):
                    outputs = await self.stage.process(envelope)
                return self.encode(outputs)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not self.retry.should_retry(attempt, exc):
                    return self._dead_letter(record, headers, identity, exc, attempt)
                self._m_retries.inc()
                self.retries += 1
                delay = self.retry.delay_s(attempt, exc)
                log.warning(
                    "handler_retry",
                    attempt=attempt,
                    error_type=type(exc).__name__,
                    delay_s=delay,
                )
                await asyncio.sleep(delay)
                attempt += 1

    def _topic(self, topic_id: str) -> str:
        name = self._topic_names.get(topic_id)
        if name is None:
            name = self.catalog.name(topic_id, self.topic_prefix)
            self._topic_names[topic_id] = name
        return name

    def encode(self, outputs: Sequence[Output]) -> list[OutRecord]:
        """Outputs as records: topic ids resolved, keys and values serialised.

        An empty message written to the stage's changelog becomes a null value,
        a real tombstone: compaction then removes the key instead of keeping
        an empty record of it forever.
        """
        changelog = self.stage.changelog_topic
        return [
            OutRecord(
                topic=self._topic(o.topic),
                key=o.key.encode(),
                value=(o.value.SerializeToString() or (None if o.topic == changelog else b"")),
                headers=[(k, v.encode()) for k, v in o.headers.items()],
                partition=o.partition,
            )
            for o in outputs
        ]

    def _dead_letter(
        self,
        record: ConsumerRecord[bytes, bytes],
        headers: dict[str, bytes],
        identity: Identity,
        error: BaseException,
        attempts: int,
    ) -> list[OutRecord]:
        letter = build_dead_letter(
            stage=self.stage.name,
            error=error,
            attempts=attempts,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value,
            headers=headers,
            identity=identity,
            raw_model_output=getattr(error, "raw_output", "") or "",
        )
        metrics.DEAD_LETTERS.labels(stage=self.stage.name, reason=type(error).__name__).inc()
        log.warning(
            "dead_letter",
            error_type=type(error).__name__,
            attempts=attempts,
            partition=record.partition,
            offset=record.offset,
            item_id=identity.item_id,
            task_id=identity.task_id,
        )
        # Keyed by item so an item's dead letters land in one DLQ partition.
        key = identity.item_id.encode() if identity.item_id else record.key
        return [OutRecord(topic=self.dlq_topic, key=key, value=letter.SerializeToString())]
