"""The per-task read model of GetStatus: a pure fold and the follower that feeds it.

:func:`apply` folds one decoded record of a pipeline topic into
:class:`Progress` (no I/O). :class:`ProgressFollower` reads the pipeline's
topics with ``isolation_level=read_committed`` from the beginning and applies
every record, so it sees exactly what the stages committed (aborted outputs of
a failed transaction never count).

It is a view, not a source of truth: it lives in memory and is rebuilt from
the beginning of the topics whenever the process starts (the topics are the
truth; retention bounds what a rebuild can see). Counts are records, except
final labels: a FinalLabel counts once per item even when it is read twice,
because the same item can legitimately be labelled twice (``act ingest`` run
again with the same stable item ids sends it through the pipeline again, and
the trainer upserts labels by (task, item), so it trains on the item once). As
in the trainer, a human label is never replaced by a machine one. That needs
one entry per finalized item in memory, the only state that grows with items.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

import structlog
from act.v1 import (
    annotation_pb2,
    critique_pb2,
    dlq_pb2,
    heartbeat_pb2,
    item_pb2,
    review_pb2,
    training_pb2,
)
from aiokafka import AIOKafkaConsumer, TopicPartition
from google.protobuf.message import DecodeError, Message

from services.runtime import kafka_clients
from services.runtime.config import KafkaSettings
from services.runtime.heartbeat import is_live
from services.runtime.topics import TopicCatalog, default_catalog

log = structlog.get_logger(__name__)

#: The topics the read model follows (topics.yaml ids) and their record types.
MESSAGES: dict[str, type[Message]] = {
    "items": item_pb2.Item,
    "annotations": annotation_pb2.Annotation,
    "critiques": critique_pb2.Critique,
    "review_requests": review_pb2.ReviewRequest,
    "labels": review_pb2.FinalLabel,
    "dlq": dlq_pb2.DeadLetter,
    "training_events": training_pb2.TrainingEvent,
    "stage_heartbeats": heartbeat_pb2.StageHeartbeat,
}

#: The state a fit is in after each kind of training event.
_FIT_STATES = {
    "started": training_pb2.FIT_STATE_RUNNING,
    "epoch": training_pb2.FIT_STATE_RUNNING,
    "checkpoint": training_pb2.FIT_STATE_RUNNING,
    "completed": training_pb2.FIT_STATE_SUCCEEDED,
    "failed": training_pb2.FIT_STATE_FAILED,
    "cancelled": training_pb2.FIT_STATE_CANCELLED,
}
_FINISHED = {"completed", "failed", "cancelled"}


@dataclass(slots=True)
class FitView:
    """The latest fit of a task as its events tell it."""

    fit_id: str
    state: int = training_pb2.FIT_STATE_UNSPECIFIED
    updated_at: datetime | None = None
    finished_at: datetime | None = None
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(slots=True)
class TaskCounts:
    """One task's counters."""

    ingested: int = 0
    annotated: int = 0
    critiqued: int = 0
    #: Review requests (sampler decisions delta = 1): the budget spent.
    sampled_for_review: int = 0
    dead_letters: int = 0
    #: item id -> True once a human-final label was seen (never set back).
    finals: dict[str, bool] = field(default_factory=dict)
    latest_fit: FitView | None = None
    #: Fits seen, so an old fit's late event does not displace the latest.
    fits_seen: set[str] = field(default_factory=set)

    @property
    def reviewed(self) -> int:
        """Items with a human-final label."""
        return sum(self.finals.values())

    @property
    def machine_final(self) -> int:
        """Items finalized with the machine's label only."""
        return len(self.finals) - self.reviewed

    @property
    def finalized(self) -> int:
        """Items with any final label."""
        return len(self.finals)


@dataclass(slots=True)
class Progress:
    """Every task's counters and the dead letters by stage and reason."""

    tasks: dict[str, TaskCounts] = field(default_factory=dict)
    #: stage -> reason (DeadLetter.error_type) -> dead letters.
    dead_letters: dict[str, dict[str, int]] = field(default_factory=dict)
    #: Records that did not decode as their topic's type (skipped).
    undecodable: int = 0
    #: Records that name no task (skipped; dead letters still count for their stage).
    without_task: int = 0
    #: (stage, replica) -> the replica's latest heartbeat; a clean stop removes it.
    replicas: dict[tuple[str, str], heartbeat_pb2.StageHeartbeat] = field(default_factory=dict)

    def task(self, task_id: str) -> TaskCounts:
        """The counters of ``task_id``, created empty when first asked for."""
        counts = self.tasks.get(task_id)
        if counts is None:
            counts = self.tasks[task_id] = TaskCounts()
        return counts


def decode(topic_id: str, value: bytes | None) -> Message | None:
    """The record's message, or None for a tombstone or an undecodable value."""
    if not value:
        return None
    try:
        return MESSAGES[topic_id].FromString(value)
    except DecodeError:
        return None


def task_of(topic_id: str, message: Message) -> str:
    """The task a record belongs to (each stage's output embeds its input)."""
    if isinstance(message, item_pb2.Item):
        return str(message.task_id)
    if isinstance(message, annotation_pb2.Annotation):
        return str(message.item.task_id)
    if isinstance(message, critique_pb2.Critique):
        return str(message.annotation.item.task_id)
    if isinstance(message, review_pb2.ReviewRequest):
        return str(message.task.task_id or message.decision.critique.annotation.item.task_id)
    if isinstance(message, review_pb2.FinalLabel | dlq_pb2.DeadLetter):
        return str(message.task_id)
    if isinstance(message, training_pb2.TrainingEvent):
        return str(message.task_id)
    raise TypeError(f"no task in {type(message).__name__} of topic {topic_id}")


def apply(counts: Progress, topic_id: str, message: Message) -> Progress:
    """Fold one record of ``topic_id`` into ``counts`` (pure; returns ``counts``)."""
    if isinstance(message, heartbeat_pb2.StageHeartbeat):
        key = (message.stage, message.replica)
        if message.stopped:
            counts.replicas.pop(key, None)
        else:
            counts.replicas[key] = message
        return counts
    if isinstance(message, dlq_pb2.DeadLetter):
        # A dead letter of an undecodable input may have no task: it still
        # counts for its stage.
        reasons = counts.dead_letters.setdefault(message.stage, {})
        reason = message.error_type or "unknown"
        reasons[reason] = reasons.get(reason, 0) + 1
        if message.task_id:
            counts.task(message.task_id).dead_letters += 1
        return counts
    task_id = task_of(topic_id, message)
    if not task_id:
        counts.without_task += 1  # no stage accepts such a record; nothing to count it for
        return counts
    task = counts.task(task_id)
    if isinstance(message, item_pb2.Item):
        task.ingested += 1
    elif isinstance(message, annotation_pb2.Annotation):
        task.annotated += 1
    elif isinstance(message, critique_pb2.Critique):
        task.critiqued += 1
    elif isinstance(message, review_pb2.ReviewRequest):
        task.sampled_for_review += 1
    elif isinstance(message, review_pb2.FinalLabel):
        # Once per item; a human label is never replaced (module docstring).
        task.finals[message.item_id] = task.finals.get(message.item_id, False) or message.delta
    elif isinstance(message, training_pb2.TrainingEvent):
        _apply_fit_event(task, message)
    return counts


@dataclass(frozen=True, slots=True)
class StageLoad:
    """A stage's live replicas summed (from their heartbeats)."""

    in_flight: int = 0
    retries: int = 0
    live_replicas: int = 0


def stage_loads(
    replicas: Mapping[tuple[str, str], heartbeat_pb2.StageHeartbeat], now: datetime
) -> dict[str, StageLoad]:
    """Per stage, the sums over replicas live at ``now`` (pure; see :func:`is_live`)."""
    loads: dict[str, StageLoad] = {}
    for (stage, _replica), beat in replicas.items():
        if not is_live(beat, now):
            continue
        load = loads.get(stage, StageLoad())
        loads[stage] = StageLoad(
            in_flight=load.in_flight + beat.in_flight,
            retries=load.retries + beat.retries,
            live_replicas=load.live_replicas + 1,
        )
    return loads


def _apply_fit_event(task: TaskCounts, event: training_pb2.TrainingEvent) -> None:
    """The latest fit is the one whose first event came last (one-partition topic)."""
    if event.fit_id not in task.fits_seen:
        task.fits_seen.add(event.fit_id)
        task.latest_fit = FitView(event.fit_id)
    fit = task.latest_fit
    if fit is None or fit.fit_id != event.fit_id:
        return  # a late event of an older fit
    kind = event.WhichOneof("event")
    if kind is None:
        return
    fit.state = _FIT_STATES[kind]
    at = event.at.ToDatetime() if event.HasField("at") else None
    fit.updated_at = at
    if kind in _FINISHED:
        fit.finished_at = at
    if kind == "completed":
        fit.metrics = dict(event.completed.metrics)


def fold(records: Iterable[tuple[str, bytes | None]], counts: Progress | None = None) -> Progress:
    """Apply (topic id, value) records in order (pure)."""
    counts = Progress() if counts is None else counts
    for topic_id, value in records:
        message = decode(topic_id, value)
        if message is None:
            if value:
                counts.undecodable += 1
            continue
        apply(counts, topic_id, message)
    return counts


class ProgressFollower:
    """Follows the pipeline's topics and keeps :class:`Progress` current.

    Group-less (it commits nothing, so it never disturbs a stage) and
    ``read_committed``. After a broker error it reconnects and continues from
    the next offset of every partition it had read, so nothing counts twice.
    Topics missing when it connects are skipped; it looks for them every
    ``recheck_s`` and reconnects (keeping its offsets) once one exists.
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        *,
        catalog: TopicCatalog | None = None,
        topic_ids: Iterable[str] = tuple(MESSAGES),
        retry_s: float = 2.0,
        poll_ms: int = 100,
        recheck_s: float = 30.0,
    ) -> None:
        catalog = catalog or default_catalog()
        self.kafka = kafka
        self.topics = {catalog.name(t, kafka.topic_prefix): t for t in topic_ids}
        self.retry_s = retry_s
        self.poll_ms = poll_ms
        self.recheck_s = recheck_s
        self.progress = Progress()
        #: Topics not found at the last connect.
        self.missing: list[str] = []
        #: Connections opened (the first and every reconnect).
        self.connects = 0
        self._next: dict[TopicPartition, int] = {}
        #: Sync calls not yet given their end offsets, and those waiting for them.
        self._asked: list[asyncio.Future[bool]] = []
        self._targets: list[tuple[asyncio.Future[bool], dict[TopicPartition, int]]] = []
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start following (returns at once; :meth:`sync` waits for the data)."""
        if self._reader is None:
            self._reader = asyncio.create_task(self._follow_forever(), name="act-status-follower")

    async def sync(self, timeout_s: float) -> bool:
        """Wait until every record committed now has been applied; False on timeout."""
        if self._reader is None or self._reader.done():
            return False
        asked: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._asked.append(asked)
        try:
            return await asyncio.wait_for(asyncio.shield(asked), timeout_s)
        except TimeoutError:
            return False
        finally:
            if not asked.done():
                asked.cancel()

    async def stop(self) -> None:
        """Stop following."""
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
            self._reader = None

    async def _open(self) -> AIOKafkaConsumer:
        consumer = kafka_clients.snapshot_consumer(self.kafka)
        self.connects += 1
        await consumer.start()
        try:
            existing = await consumer.topics()
            self.missing = sorted(t for t in self.topics if t not in existing)
            if self.missing:
                log.warning("status_topics_missing", topics=self.missing)
            tps = [
                TopicPartition(topic, p)
                for topic in sorted(self.topics)
                if topic in existing
                for p in sorted(consumer.partitions_for_topic(topic) or ())
            ]
            consumer.assign(tps)
            for tp in tps:
                if tp in self._next:
                    consumer.seek(tp, self._next[tp])
                else:
                    await consumer.seek_to_beginning(tp)
        except BaseException:
            with contextlib.suppress(Exception):
                await consumer.stop()
            raise
        return consumer

    async def _follow_forever(self) -> None:
        while True:
            try:
                consumer = await self._open()
                try:
                    await self._follow(consumer)
                finally:
                    with contextlib.suppress(Exception):
                        await consumer.stop()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("status_follower_retry", error=type(exc).__name__)
                await asyncio.sleep(self.retry_s)

    async def _follow(self, consumer: AIOKafkaConsumer) -> None:
        tps = sorted(consumer.assignment(), key=lambda tp: (tp.topic, tp.partition))
        # After a reconnect the assignment may differ: ask for end offsets again.
        self._asked += [asked for asked, _ in self._targets]
        self._targets.clear()
        loop = asyncio.get_running_loop()
        recheck_at = loop.time() + self.recheck_s
        while True:
            if self.missing and loop.time() >= recheck_at:
                recheck_at = loop.time() + self.recheck_s
                existing = await consumer.topics()
                if any(t in existing for t in self.missing):
                    return  # reconnect: _open assigns the new topic too
            if self._asked:
                # End offsets asked for after the sync call began: with
                # read_committed they are the last stable offsets, so they
                # cover every transaction committed by then.
                end = await consumer.end_offsets(tps) if tps else {}
                self._targets += [(asked, dict(end)) for asked in self._asked]
                self._asked.clear()
            batches = await consumer.getmany(timeout_ms=self.poll_ms)
            for tp, records in batches.items():
                topic_id = self.topics[tp.topic]
                self.progress = fold(((topic_id, r.value) for r in records), self.progress)
                if records:
                    self._next[tp] = records[-1].offset + 1
            if self._targets:
                positions = {tp: await consumer.position(tp) for tp in tps}
                waiting = []
                for asked, end in self._targets:
                    if asked.done():
                        continue  # the caller timed out
                    if all(positions[tp] >= off for tp, off in end.items()):
                        asked.set_result(True)
                    else:
                        waiting.append((asked, end))
                self._targets = waiting
