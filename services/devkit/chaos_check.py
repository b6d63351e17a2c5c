"""What a chaos run checks once the pipeline is quiet, and how it watches progress.

:class:`Follower` reads topics ``read_committed`` from the beginning, without
a consumer group, through broker restarts (records are kept by offset, so a
re-read after a reconnect counts nothing twice); the run watches the labels
and the dead letters with it. :func:`tally` is pure: from what the topics,
the trainer's store and the replay reviewer hold it counts what was lost or
duplicated (:func:`parse_outcome` and :func:`trainer_item_ids` read the
records and the store it counts).

What counts as an outcome of an item: a FinalLabel on ``act.labels`` or a
dead letter on ``act.dlq`` (with its reason, ``DeadLetter.error_type``). The
ingest service publishes an item at least once: a SIGKILL between Kafka's
acknowledgement and the ledger's commit republishes up to one chunk on the
retried stream (:mod:`services.ingest.ledger`), and each record of an item
then passes through the pipeline. So an item is *duplicated* when it has more
outcomes than records on ``act.items`` (a stage did something twice) or more
than one human label (the gateway queues an item once); items with several
records are reported as ``republished``.

The review budget in streaming mode is paced per (task, sampler input
partition) over windows of ``W`` items, at most ``ceil(b * W)`` selections
per window (:class:`services.core.streaming.StreamingParams`), so the
reviews of a partition with ``n`` critiques are at most
``floor(n / W) * ceil(b * W) + min(n mod W, ceil(b * W))``.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from act.v1 import dlq_pb2, review_pb2
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.cli.kafkaio import topic_partitions
from services.core.sampling import Rule
from services.core.streaming import StreamingParams
from services.runtime import kafka_clients
from services.runtime.config import KafkaSettings

#: A decoded record of interest: whatever the follower's parser returns.
Parsed = Any


class Follower:
    """Follow topics from the beginning, read_committed, keeping every record once.

    ``parse(topic, value)`` turns a record into what is kept (None = skip).
    """

    def __init__(
        self, kafka: KafkaSettings, topics: Iterable[str], parse: Callable[[str, bytes], Parsed]
    ) -> None:
        self.kafka = kafka
        self.topics = list(topics)
        self.parse = parse
        #: (topic, partition, offset) -> parsed record.
        self.records: dict[tuple[str, int, int], Parsed] = {}
        self.errors = 0
        self._task: asyncio.Task[None] | None = None

    def values(self, topic: str) -> list[Parsed]:
        """The parsed records of ``topic`` (in no particular order)."""
        return [v for (t, _, _), v in self.records.items() if t == topic]

    def start(self) -> None:
        """Follow in the background until :meth:`stop`."""
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Stop following."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        positions: dict[TopicPartition, int] = {}
        while True:
            consumer: AIOKafkaConsumer | None = None
            try:
                consumer = kafka_clients.snapshot_consumer(self.kafka)
                await consumer.start()
                parts = [tp for t in self.topics for tp in await topic_partitions(consumer, t)]
                consumer.assign(parts)
                for tp in parts:
                    if tp in positions:
                        consumer.seek(tp, positions[tp])
                    else:
                        await consumer.seek_to_beginning(tp)
                while True:
                    batches = await consumer.getmany(timeout_ms=500, max_records=2000)
                    for tp, records in batches.items():
                        for r in records:
                            parsed = self.parse(tp.topic, r.value) if r.value else None
                            if parsed is not None:
                                self.records[(tp.topic, tp.partition, r.offset)] = parsed
                            positions[tp] = r.offset + 1
            except asyncio.CancelledError:
                raise
            except Exception:  # the broker restarting: follow again from where we were
                self.errors += 1
                await asyncio.sleep(1.0)
            finally:
                if consumer is not None:
                    with contextlib.suppress(Exception):
                        await consumer.stop()


@dataclass(frozen=True, slots=True)
class LabelSeen:
    """What the check needs of a FinalLabel."""

    item_id: str
    human: bool
    review_id: str


@dataclass(frozen=True, slots=True)
class DeadLetterSeen:
    """What the check needs of a dead letter."""

    item_id: str
    stage: str
    reason: str


def parse_outcome(topic: str, value: bytes) -> Parsed:
    """Keep only what the check needs of labels and dead letters."""
    if topic.endswith("labels.v1"):
        label = review_pb2.FinalLabel.FromString(value)
        return LabelSeen(label.item_id, label.delta, label.review_id)
    dead = dlq_pb2.DeadLetter.FromString(value)
    return DeadLetterSeen(dead.item_id, dead.stage, dead.error_type)


def trainer_item_ids(store: Path, task_id: str) -> list[str]:
    """Item ids of every row of the trainer's label table (one per item, if all is well)."""
    if not store.exists():
        return []
    with contextlib.closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=10)) as db:
        try:
            rows = db.execute("SELECT item_id FROM labels WHERE task_id = ?", (task_id,))
            return [str(r[0]) for r in rows]
        except sqlite3.OperationalError:  # the trainer has not created its table yet
            return []


def budget_bound(critiques_per_partition: Mapping[int, int], fraction: float, window: int) -> int:
    """Most reviews the streaming sampler may request (see the module docstring)."""
    per_window = StreamingParams(Rule.THRESHOLD, fraction, window_items=window).window_max
    return sum(
        (n // window) * per_window + min(n % window, per_window)
        for n in critiques_per_partition.values()
    )


@dataclass(frozen=True)
class Tally:
    """The counts a chaos run reports and asserts on."""

    items: int  # distinct item ids the ingest service accepted
    item_records: int  # records of those ids on act.items
    republished: int  # ids with more than one record on act.items (ingest's crash window)
    labels: int  # FinalLabels on act.labels
    labelled_items: int  # distinct ids with a FinalLabel
    human_labels: int
    dead_letters: int
    dead_letters_without_reason: int
    lost: int  # accepted ids with neither a label nor a dead letter
    duplicated: int  # ids with more outcomes than records, or two human labels
    unknown: int  # labels or dead letters of ids nobody ingested
    review_requests: int
    budget_bound: int
    reviews_submitted: int  # accepted by the gateway, as the replay reviewer saw it
    reviews_lost: int  # accepted reviews missing from the human FinalLabels
    trainer_rows: int
    trainer_duplicates: int  # rows beyond one per item id
    trainer_missing: int  # labelled ids the trainer's store lacks

    @property
    def ok(self) -> bool:
        """Nothing lost, nothing duplicated, within budget, every review kept."""
        return not (
            self.lost
            or self.duplicated
            or self.unknown
            or self.dead_letters_without_reason
            or self.human_labels > self.budget_bound
            or self.review_requests > self.budget_bound
            or self.reviews_lost
            or self.trainer_duplicates
            or self.trainer_missing
        )


def tally(
    *,
    accepted: set[str],
    item_records: Counter[str],
    labels: list[LabelSeen],
    dead_letters: list[DeadLetterSeen],
    review_requests: int,
    bound: int,
    reviews: Mapping[str, str],
    trainer_ids: list[str],
) -> Tally:
    """Count the outcomes of every accepted item (pure; see the module docstring).

    ``reviews`` maps item id -> review id of every submission the gateway
    accepted; ``trainer_ids`` is the item id of every row of the trainer's store.
    """
    outcomes: Counter[str] = Counter()
    humans: Counter[str] = Counter()
    for label in labels:
        outcomes[label.item_id] += 1
        humans[label.item_id] += label.human
    for dead in dead_letters:
        outcomes[dead.item_id] += 1
    duplicated = {i for i, n in outcomes.items() if n > max(1, item_records[i]) or humans[i] > 1}
    human_pairs = {(x.item_id, x.review_id) for x in labels if x.human}
    labelled = {x.item_id for x in labels}
    store = Counter(trainer_ids)
    return Tally(
        items=len(accepted),
        item_records=sum(item_records[i] for i in accepted),
        republished=sum(1 for i in accepted if item_records[i] > 1),
        labels=len(labels),
        labelled_items=len(labelled),
        human_labels=sum(1 for x in labels if x.human),
        dead_letters=len(dead_letters),
        dead_letters_without_reason=sum(1 for d in dead_letters if not d.reason),
        lost=sum(1 for i in accepted if outcomes[i] == 0),
        duplicated=len(duplicated),
        unknown=len(set(outcomes) - accepted),
        review_requests=review_requests,
        budget_bound=bound,
        reviews_submitted=len(reviews),
        reviews_lost=sum(1 for pair in reviews.items() if pair not in human_pairs),
        trainer_rows=sum(store.values()),
        trainer_duplicates=sum(n - 1 for n in store.values()),
        trainer_missing=len(labelled - set(store)),
    )
