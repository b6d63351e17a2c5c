"""The input partitions a runner owns, and their transactional commits.

Every assigned input partition gets its own transactional producer with the
id ``<group>.<input topic>.<partition>`` (the pre-KIP-447 scheme; aiokafka
cannot fence by consumer-group generation). Creating that producer bumps the
id's epoch, which fences the previous owner and completes or aborts the
transaction it left open; only then is the partition's committed offset read,
so the offset the new owner starts from is final.

:class:`PartitionCommitter` owns that per-partition state. It commits each
partition's finished prefix (outputs and next offset) in one transaction,
recovers from a failed or ambiguous commit by re-fencing and re-reading the
committed offset, and drops a partition's work when another owner fenced it.
It calls the stage's partition hooks (``on_assigned`` once the partition is
fenced, positioned and its changelog restored, before any dispatch;
``on_revoked`` once its work is released or lost) and adds the stage's
changelog writes to each transaction (:mod:`services.runtime.changelog`).
The runner dispatches records into the partitions' ledgers; details in
docs/architecture.md, "The exactly-once runtime".
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import ProducerFenced
from aiokafka.partitioner import DefaultPartitioner

from services.runtime import kafka_clients, metrics
from services.runtime.changelog import ChangelogReader
from services.runtime.config import KafkaSettings, StageSettings
from services.runtime.ledger import CommitBatch, PartitionLedger
from services.runtime.outcome import OutRecord
from services.runtime.retry import PermanentError, RetryPolicy
from services.runtime.stage import Output, PartitionContext, Stage

log = structlog.get_logger(__name__)


@dataclass(eq=False)
class Partition:
    """One owned input partition: its producer, ledger and running handlers."""

    tp: TopicPartition
    producer: AIOKafkaProducer
    ledger: PartitionLedger[OutRecord] = field(default_factory=PartitionLedger)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one transaction at a time
    active: bool = True  # owned: completions count and commits may run
    draining: bool = False  # no new records are dispatched
    last_offset: int = -1  # highest dispatched offset; redeliveries up to it are skipped
    #: A transaction was interrupted (cancelled) after it may have been sent:
    #: whether it committed is unknown until a recovery re-reads the offset.
    in_doubt: bool = False
    #: The group's committed offset (next record to read); None: nothing yet.
    committed: int | None = None
    #: The stage asked for a transaction even without finished records.
    flush: bool = False


class PartitionCommitter:
    """Owns the assigned input partitions and commits their finished prefixes.

    ``progress`` is set whenever buffered records shrink (a commit, a released
    or lost partition) so that a fetch loop paused by backpressure wakes up;
    ``on_fatal`` is called with a reason when a partition can neither be taken
    nor recovered, and should stop the runner. ``encode`` turns the stage's
    changelog writes into records; ``changelog_topic`` is the changelog's
    broker name (None: the stage keeps no changelog state).
    """

    def __init__(
        self,
        *,
        stage: Stage[Any],
        group_id: str,
        kafka: KafkaSettings,
        settings: StageSettings,
        retry: RetryPolicy,
        progress: asyncio.Event,
        on_fatal: Callable[[str], None],
        encode: Callable[[Sequence[Output]], list[OutRecord]],
        changelog_topic: str | None = None,
    ) -> None:
        self.stage = stage
        stage_name = self.stage_name = stage.name
        self.group_id = group_id
        self.kafka = kafka
        self.settings = settings
        self.retry = retry
        #: Owned partitions. Only ever mutated, never rebound: the runner's
        #: fetch loop holds the same dict.
        self.partitions: dict[TopicPartition, Partition] = {}
        #: Commits asked for partitions not registered yet (the stage restores
        #: state in on_assigned, before the partition is registered here).
        self._early_requests: set[TopicPartition] = set()
        #: Set to commit before ``commit_interval_ms`` is up (enough records done).
        self.commit_now = asyncio.Event()
        #: Input records committed so far.
        self.committed_records = 0
        self._progress = progress
        self._on_fatal = on_fatal
        self._consumer: AIOKafkaConsumer | None = None
        self._partitioner = DefaultPartitioner()
        self._encode = encode
        self._loop_stopping = False
        self._changelog = (
            None if changelog_topic is None else ChangelogReader(kafka, changelog_topic)
        )
        # Labelled metric children are resolved once: labels() is costly per message.
        self._m_committed = metrics.COMMITTED.labels(stage=stage_name)
        self._m_buffered = metrics.BUFFERED.labels(stage=stage_name)
        self._m_txn = metrics.TXN_LATENCY.labels(stage=stage_name)
        self._m_recoveries = metrics.RECOVERIES.labels(stage=stage_name)
        self._m_produced: dict[str, Any] = {}

    def attach(self, consumer: AIOKafkaConsumer) -> None:
        """Use ``consumer`` (the runner's, of the group) for committed offsets and seeks."""
        self._consumer = consumer

    async def close(self) -> None:
        """Close the changelog reader (after every partition was released)."""
        if self._changelog is not None:
            await self._changelog.close()

    def buffered(self) -> int:
        """Records dispatched and not yet committed, over all owned partitions."""
        return sum(p.ledger.pending for p in self.partitions.values())

    # -------------------------------------------------------------- ownership

    async def assign(self, tp: TopicPartition) -> None:
        """Take ``tp``: fence its previous owner, seek to its committed offset,
        restore its changelog and run the stage's ``on_assigned``."""
        consumer = self._consumer
        assert consumer is not None
        if tp in self.partitions:
            return
        for attempt in range(1, self.settings.recovery_attempts + 1):
            producer: AIOKafkaProducer | None = None
            try:
                producer = await self._new_producer(tp)
                committed = await self._committed(tp)
                await self._seek(consumer, tp, committed)
                state = {}
                if self._changelog is not None:
                    state = await self._changelog.restore(tp.partition)
                parts = consumer.partitions_for_topic(tp.topic) or ()
                context = PartitionContext(
                    state=state,
                    input_partitions=len(parts),
                    request_commit=functools.partial(self.request_commit, tp),
                )
                await self.stage.on_assigned(tp.partition, committed, context)
                break
            except Exception as exc:
                if producer is not None:
                    with contextlib.suppress(Exception):
                        await producer.stop()
                log.warning(
                    "assign_retry", partition=tp.partition, attempt=attempt, error=repr(exc)
                )
                await asyncio.sleep(self.retry.delay_s(min(attempt, 6)))
        else:
            self._on_fatal(f"cannot take partition {tp}")
            return
        # Records fetched while the awaits above ran are skipped by the fetch
        # loop (the partition is not registered yet) and advanced the position:
        # seek again, with no await until the partition is registered.
        await self._seek(consumer, tp, committed)
        self.partitions[tp] = Partition(
            tp=tp, producer=producer, last_offset=(committed or 0) - 1, committed=committed
        )
        if tp in self._early_requests:
            self._early_requests.discard(tp)
            self.partitions[tp].flush = True
            self.commit_now.set()

    @staticmethod
    async def _seek(consumer: AIOKafkaConsumer, tp: TopicPartition, committed: int | None) -> None:
        if committed is None:
            await consumer.seek_to_beginning(tp)
        else:
            consumer.seek(tp, committed)

    async def release(self, part: Partition, drain_s: float) -> None:
        """Stop a partition: let its work finish (bounded), commit, hand back the rest."""
        part.draining = True
        if part.tasks and drain_s > 0:
            await asyncio.wait(list(part.tasks), timeout=drain_s)
        for task in list(part.tasks):
            task.cancel()
        if part.tasks:
            await asyncio.gather(*part.tasks, return_exceptions=True)
        try:
            await self._commit(part)
        finally:
            part.active = False
            part.ledger.clear()
            self.partitions.pop(part.tp, None)
            with contextlib.suppress(Exception):
                await part.producer.stop()
            self._progress.set()
            await self._revoked(part)

    async def _revoked(self, part: Partition) -> None:
        try:
            await self.stage.on_revoked(part.tp.partition)
        except Exception as exc:
            log.warning("on_revoked_failed", partition=part.tp.partition, error=repr(exc))

    async def _lose(self, part: Partition) -> None:
        """Another owner fenced us: forget the partition's work without committing."""
        part.active = False
        for task in list(part.tasks):
            task.cancel()
        part.ledger.clear()
        self.partitions.pop(part.tp, None)
        with contextlib.suppress(Exception):
            await part.producer.stop()
        self._progress.set()
        await self._revoked(part)

    # ------------------------------------------------------------- committing

    def request_commit(self, tp: TopicPartition) -> None:
        """A transaction of ``tp`` soon, with the stage's :meth:`~Stage.changelog`
        writes even when no record finished (asked during the partition's
        assignment: as soon as it is registered)."""
        part = self.partitions.get(tp)
        if part is None:
            # Asked while partitions are being assigned (from on_assigned): the
            # request waits for the partition's registration.
            self._early_requests.add(tp)
        elif part.active:
            part.flush = True
            self.commit_now.set()

    def stop_loop(self) -> None:
        """Let :meth:`commit_loop` return after the transactions it is running."""
        self._loop_stopping = True
        self.commit_now.set()

    async def commit_loop(self) -> None:
        """Commit every partition's finished prefix each interval, or when asked earlier.

        Returns after :meth:`stop_loop`, never in the middle of a transaction
        (a cancelled one leaves its partition in doubt, see :meth:`_commit`).
        """
        interval = self.settings.commit_interval_ms / 1000
        while not self._loop_stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.commit_now.wait(), timeout=interval)
            self.commit_now.clear()
            if self._loop_stopping:
                return
            parts = [
                p for p in self.partitions.values() if p.active and (p.flush or p.ledger.ready())
            ]
            if parts:
                await asyncio.gather(*(self._commit(p) for p in parts))

    async def _commit(self, part: Partition) -> None:
        """Commit the finished prefix of one partition (outputs + offset), or recover.

        Bounded like the recovery: when a recovery fails, or the transaction
        still fails after ``recovery_attempts`` recoveries in a row, the
        partition is given up (fatal, see :meth:`_give_up`), so that a stop
        with the broker away returns instead of retrying forever.
        """
        async with part.lock:
            if part.in_doubt and part.active:
                # The last transaction was cancelled mid-way: it may have
                # committed. Re-fence and drop what did, as after a failure.
                await self._recover(part)
                part.in_doubt = False
            failures = 0
            while part.active:
                batch = part.ledger.peek(self.settings.commit_max_records)
                if batch is None:
                    if not part.flush:
                        return
                    # Asked for by the stage with nothing finished: its
                    # changelog writes alone, at the committed offset.
                    next_offset = 0 if part.committed is None else part.committed
                    batch = CommitBatch(outputs=[], next_offset=next_offset, records=0)
                # Cleared before the stage is asked for its writes: a request
                # made while this transaction runs asks for another one.
                part.flush = False
                try:
                    await self._transact(part, batch)
                except asyncio.CancelledError:
                    part.in_doubt = part.flush = True
                    raise
                except ProducerFenced:
                    log.warning("partition_fenced", partition=part.tp.partition)
                    await self._lose(part)
                    return
                except Exception as exc:
                    log.warning("commit_failed", partition=part.tp.partition, error=repr(exc))
                    part.flush = True  # the stage's writes were not committed: ask again
                    failures += 1
                    if failures > self.settings.recovery_attempts:
                        self._give_up(part, f"cannot commit partition {part.tp}")
                        return
                    await self._recover(part)
                    continue
                failures = 0
                if batch.records:
                    part.ledger.pop(batch)
                    part.committed = batch.next_offset
                self._progress.set()
                if part.ledger.ready() < self.settings.commit_max_records:
                    return

    async def _transact(self, part: Partition, batch: CommitBatch[OutRecord]) -> None:
        started = time.perf_counter()
        producer = part.producer
        outputs = batch.outputs
        if self._changelog is not None:
            # The state after exactly this prefix, to the changelog's partition p.
            p = part.tp.partition
            writes = self.stage.changelog(p, batch.next_offset - 1)
            if writes:
                changelog = self.stage.changelog_topic
                pinned = [_to(w, p) if w.topic == changelog else w for w in writes]
                outputs = [*outputs, *self._encode(pinned)]
        if not outputs and not batch.records:
            return  # a commit asked for with nothing to write
        await producer.begin_transaction()
        try:
            futures = await self._send_all(producer, outputs)
            if futures:
                await asyncio.gather(*futures)
            if batch.records:
                await producer.send_offsets_to_transaction(
                    {part.tp: batch.next_offset}, self.group_id
                )
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.abort_transaction(), timeout=10)
            raise
        await producer.commit_transaction()
        if self._changelog is not None:
            self.stage.on_committed(part.tp.partition, batch.next_offset - 1)
        self._m_txn.observe(time.perf_counter() - started)
        self.committed_records += batch.records
        self._m_committed.inc(batch.records)
        per_topic: dict[str, int] = {}
        for o in outputs:
            per_topic[o.topic] = per_topic.get(o.topic, 0) + 1
        for name, count in per_topic.items():
            child = self._m_produced.get(name)
            if child is None:
                child = self._m_produced[name] = metrics.PRODUCED.labels(
                    stage=self.stage_name, topic=name
                )
            child.inc(count)
        self._m_buffered.set(self.buffered())

    async def _send_all(
        self, producer: AIOKafkaProducer, outputs: Sequence[OutRecord]
    ) -> list[asyncio.Future[Any]]:
        """Send outputs as record batches, one stream per output partition.

        ``send()`` per record costs tens of microseconds of event-loop time;
        building batches ourselves keeps the commit path short. Records keep
        their order within each output partition, and the partition is the
        default partitioner's (murmur2 of the key), as with ``send()``.
        """
        groups: dict[tuple[str, int], list[OutRecord]] = {}
        partitions: dict[str, list[int]] = {}
        for o in outputs:
            parts = partitions.get(o.topic)
            if parts is None:
                parts = partitions[o.topic] = sorted(await producer.partitions_for(o.topic))
            p = self._partitioner(o.key, parts, parts) if o.partition is None else o.partition
            groups.setdefault((o.topic, p), []).append(o)
        futures: list[asyncio.Future[Any]] = []
        for (topic, p), records in groups.items():
            builder = producer.create_batch()
            for r in records:
                if builder.append(key=r.key, value=r.value, timestamp=None, headers=r.headers):
                    continue
                if builder.record_count() == 0:
                    raise PermanentError(
                        f"output record of {len(r.value or b'')} bytes exceeds the batch size"
                    )
                futures.append(await producer.send_batch(builder, topic, partition=p))
                builder = producer.create_batch()
                if not builder.append(key=r.key, value=r.value, timestamp=None, headers=r.headers):
                    raise PermanentError(
                        f"output record of {len(r.value or b'')} bytes exceeds the batch size"
                    )
            if builder.record_count():
                futures.append(await producer.send_batch(builder, topic, partition=p))
        return futures

    # ------------------------------------------------------- fencing, recovery

    async def _new_producer(self, tp: TopicPartition) -> AIOKafkaProducer:
        """A started transactional producer for ``tp`` that has fenced every
        predecessor (and resolved its open transaction): only after that is the
        committed offset final."""
        return await kafka_clients.fenced_transactional_producer(
            self.kafka,
            f"{self.group_id}.{tp.topic}.{tp.partition}",
            transaction_timeout_ms=self.settings.transaction_timeout_ms,
        )

    async def _committed(self, tp: TopicPartition) -> int | None:
        """The group's committed offset of ``tp``; None when it has none yet."""
        assert self._consumer is not None
        offset = await self._consumer.committed(tp)
        return None if offset is None or offset < 0 else int(offset)

    async def _recover(self, part: Partition) -> None:
        """After a failed transaction: re-fence, then drop what did commit.

        After ``recovery_attempts`` failed tries the partition is given up.
        """
        self._m_recoveries.inc()
        for attempt in range(1, self.settings.recovery_attempts + 1):
            if not part.active:
                return
            with contextlib.suppress(Exception):
                await part.producer.stop()
            try:
                part.producer = await self._new_producer(part.tp)
                committed = await self._committed(part.tp)
            except Exception as exc:
                delay = self.retry.delay_s(min(attempt, 6))
                log.warning(
                    "recovery_retry", partition=part.tp.partition, attempt=attempt, error=repr(exc)
                )
                await asyncio.sleep(delay)
                continue
            if committed is not None:
                part.committed = committed
                dropped = part.ledger.drop_below(committed)
                if dropped:
                    log.info("recovered_committed", partition=part.tp.partition, records=dropped)
            return
        self._give_up(part, f"cannot recover partition {part.tp}")

    def _give_up(self, part: Partition, reason: str) -> None:
        """Fatal for the partition: no further commits of it (its uncommitted
        records go to the next owner); the runner is asked to stop."""
        part.active = False
        self._on_fatal(reason)


def _to(write: Output, partition: int) -> Output:
    """A changelog write, pinned to the changelog partition of its input partition."""
    if write.partition == partition:
        return write
    return Output(
        topic=write.topic, key=write.key, value=write.value, headers=write.headers,
        partition=partition,
    )  # fmt: skip
