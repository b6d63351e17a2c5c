"""The runtime's changelog state on a real broker: partition hooks, commit, restore.

A counting stage keeps, per input partition, the number of records it
processed as changelog state (key ``"count"``). Its writes go in the same
transaction as the outputs and offsets; a second runner of the group must be
handed exactly the committed counts on assignment, and never a write of an
aborted transaction, nor one a zombie left open (the fencing aborts it).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

import pytest
from act.v1 import annotation_pb2, item_pb2, sampling_pb2
from aiokafka import TopicPartition

from services.devkit.kafkaio import make_topics, produce_items, topic, unique_prefix
from services.runtime import kafka_clients
from services.runtime.config import KafkaSettings, StageSettings
from services.runtime.runner import StageRunner
from services.runtime.stage import Envelope, Output, PartitionContext, Stage
from tests.support.kafkaio import Collector

pytestmark = [pytest.mark.kafka]

PARTITIONS = 2
# Any compacted topic of the specification serves as the test changelog.
CHANGELOG = "sampler_state"


class CountingStage(Stage[item_pb2.Item]):
    """Item -> Annotation; counts records per partition in its changelog."""

    name = "counting"
    input_topic = "items"
    input_type = item_pb2.Item
    changelog_topic = CHANGELOG

    def __init__(self) -> None:
        self.assigned: list[tuple[int, int | None, dict[str, bytes]]] = []
        self.revoked: list[int] = []
        self.counts: dict[int, int] = {}
        self.after: dict[int, list[tuple[int, int]]] = {}  # (offset, count) not committed

    async def on_assigned(
        self, partition: int, committed_offset: int | None, context: PartitionContext
    ) -> None:
        state = dict(context.state)
        self.assigned.append((partition, committed_offset, state))
        seen = state.get("count")
        self.counts[partition] = sampling_pb2.SamplerState.FromString(seen).seen if seen else 0
        self.after[partition] = []

    async def on_revoked(self, partition: int) -> None:
        self.revoked.append(partition)
        self.counts.pop(partition, None)
        self.after.pop(partition, None)

    async def process(self, envelope: Envelope[item_pb2.Item]) -> Sequence[Output]:
        p = envelope.partition
        assert p in self.counts, "a record dispatched before on_assigned"
        self.counts[p] += 1
        self.after[p].append((envelope.offset, self.counts[p]))
        a = annotation_pb2.Annotation(annotation_id=envelope.message.item_id)
        a.item.CopyFrom(envelope.message)
        return [Output(topic="annotations", key=envelope.message.item_id, value=a)]

    def changelog(self, partition: int, upto_offset: int) -> Sequence[Output]:
        count = None
        for offset, c in self.after.get(partition, ()):
            if offset <= upto_offset:
                count = c
        if count is None:
            return ()
        value = sampling_pb2.SamplerState(task_id="count", partition=partition, seen=count)
        return [Output(topic=CHANGELOG, key="count", value=value)]

    def on_committed(self, partition: int, upto_offset: int) -> None:
        after = self.after.get(partition)
        if after is not None:
            after[:] = [(o, c) for o, c in after if o > upto_offset]


def _settings(group: str) -> StageSettings:
    return StageSettings(
        group_id=group, metrics_port=0, grpc_port=0, commit_interval_ms=50,
        session_timeout_ms=6000, heartbeat_interval_ms=500, drain_timeout_s=5.0,
    )  # fmt: skip


@contextlib.asynccontextmanager
async def _running(kafka: KafkaSettings, stage: CountingStage, group: str) -> AsyncIterator[None]:
    runner = StageRunner(stage, kafka, _settings(group))
    task = asyncio.create_task(runner.run())
    try:
        await asyncio.wait_for(runner.started.wait(), timeout=30)
        yield
    finally:
        runner.stop()
        await asyncio.wait_for(task, timeout=60)


async def _wait_assigned(stage: CountingStage, n: int) -> None:
    for _ in range(300):
        if len({p for p, _, _ in stage.assigned}) >= n:
            return
        await asyncio.sleep(0.1)
    raise TimeoutError("partitions not assigned")


async def _zombie_writes(kafka: KafkaSettings, group: str, partition: int) -> None:
    """What a previous owner of ``partition`` may leave: an aborted transaction with a
    changelog write, then one left open (the process died inside it)."""
    txn_id = f"{group}.{topic(kafka, 'items')}.{partition}"
    name = topic(kafka, CHANGELOG)
    bogus = sampling_pb2.SamplerState(task_id="count", seen=999_999).SerializeToString()
    producer = kafka_clients.transactional_producer(kafka, txn_id)
    await producer.start()
    try:
        await producer.begin_transaction()
        await (await producer.send(name, bogus, key=b"count", partition=partition))
        await producer.abort_transaction()
        await producer.begin_transaction()
        await (await producer.send(name, bogus, key=b"count", partition=partition))
    finally:
        # No commit, no abort (stop() does neither): the next owner's fencing ends it.
        await producer.stop()


async def test_committed_state_is_restored_and_aborted_or_open_writes_are_not(
    kafka_bootstrap: str,
) -> None:
    kafka = await make_topics(
        kafka_bootstrap, unique_prefix(), ["items", "annotations", CHANGELOG, "dlq"], PARTITIONS
    )
    group = f"cl-{kafka.topic_prefix}"
    await _zombie_writes(kafka, group, 0)
    ids = [f"c-{i:04d}" for i in range(600)]
    await produce_items(kafka, ids)
    collector = Collector(kafka, ["annotations"])
    await collector.start()
    try:
        first = CountingStage()
        async with _running(kafka, first, group):
            await _wait_assigned(first, PARTITIONS)
            await collector.wait_for("annotations", len(ids), timeout=60)
        # Fresh start: nothing committed, no zombie write restored (and the open
        # transaction did not block the restore).
        assert sorted((p, off, st) for p, off, st in first.assigned) == [
            (0, None, {}),
            (1, None, {}),
        ]
        assert sorted(first.revoked) == [0, 1]  # at shutdown

        more = [f"d-{i:04d}" for i in range(200)]
        await produce_items(kafka, more)
        second = CountingStage()
        async with _running(kafka, second, group):
            await _wait_assigned(second, PARTITIONS)
            await collector.wait_for("annotations", len(ids) + len(more), timeout=60)
        # The second runner is handed exactly the committed counts: a partition's
        # count equals its committed offset (each record counted once).
        for partition, committed, state in second.assigned:
            restored = sampling_pb2.SamplerState.FromString(state["count"]).seen
            assert committed is not None and restored == committed, (partition, state)
        assert sum(first.counts.values()) == 0  # dropped on revoke
        assert collector.count("annotations") == len(ids) + len(more)
    finally:
        await collector.stop()

    # And the changelog read back committed holds the final counts = end offsets.
    reader = kafka_clients.snapshot_consumer(kafka)
    await reader.start()
    try:
        tps = [TopicPartition(topic(kafka, CHANGELOG), p) for p in range(PARTITIONS)]
        reader.assign(tps)
        ends = await reader.end_offsets(tps)
        latest: dict[int, int] = {}
        while [tp for tp in tps if await reader.position(tp) < ends[tp]]:
            for tp, recs in (await reader.getmany(timeout_ms=200)).items():
                for r in recs:
                    latest[tp.partition] = sampling_pb2.SamplerState.FromString(r.value).seen
        assert sum(latest.values()) == len(ids) + len(more)
        assert all(v < 999_999 for v in latest.values())
    finally:
        await reader.stop()


class OwingStage(CountingStage):
    """A counting stage that, asked to, owes one output per partition beyond its
    records: it is written by the partition's next transaction, which it requests."""

    name = "owing"

    def __init__(self) -> None:
        super().__init__()
        self.requests: dict[int, object] = {}
        self.owed: dict[int, str] = {}
        self.paid: list[tuple[int, int]] = []

    async def on_assigned(
        self, partition: int, committed_offset: int | None, context: PartitionContext
    ) -> None:
        await super().on_assigned(partition, committed_offset, context)
        self.requests[partition] = context.request_commit

    def owe(self, partition: int, item_id: str) -> None:
        self.owed[partition] = item_id
        request = self.requests[partition]
        assert callable(request)
        request()

    def changelog(self, partition: int, upto_offset: int) -> Sequence[Output]:
        writes = list(super().changelog(partition, upto_offset))
        item_id = self.owed.get(partition)
        if item_id is not None:
            a = annotation_pb2.Annotation(annotation_id=item_id)
            writes.append(Output(topic="annotations", key=item_id, value=a))
            writes.append(Output(topic=CHANGELOG, key="count", value=sampling_pb2.SamplerState()))
        return writes

    def on_committed(self, partition: int, upto_offset: int) -> None:
        if self.owed.pop(partition, None) is not None:
            self.paid.append((partition, upto_offset))


async def test_a_requested_commit_writes_what_the_stage_owes_without_new_records(
    kafka_bootstrap: str,
):
    kafka = await make_topics(
        kafka_bootstrap, unique_prefix(), ["items", "annotations", "dlq", CHANGELOG],
        partitions=PARTITIONS,
    )  # fmt: skip
    group = f"owing-{kafka.topic_prefix}"
    await produce_items(kafka, [f"i{n}" for n in range(20)])
    collector = Collector(kafka, ["annotations"])
    await collector.start()
    stage = OwingStage()
    try:
        async with _running(kafka, stage, group):
            await collector.wait_for("annotations", 20, timeout=60)
            await asyncio.sleep(0.3)  # every record committed: nothing left to commit
            last = stage.after[1][-1][0]  # partition 1's last record, committed
            stage.owe(1, "owed-1")
            await collector.wait_for("annotations", 21, timeout=30)
            await asyncio.sleep(0.5)
        keys = [k for k, _ in collector.records["annotations"]]
        assert keys.count(b"owed-1") == 1 and len(keys) == 21
        # One transaction with no new record, at the committed offset (nothing moved).
        assert stage.paid == [(1, last)]
        # Its changelog write is a real tombstone (a null value), not an empty record.
        reader = kafka_clients.snapshot_consumer(kafka)
        await reader.start()
        try:
            tp = TopicPartition(topic(kafka, CHANGELOG), 1)
            reader.assign([tp])
            await reader.seek_to_beginning(tp)
            records = (await reader.getmany(tp, timeout_ms=2000)).get(tp, [])
        finally:
            await reader.stop()
        assert records and records[-1].key == b"count" and records[-1].value is None
    finally:
        await collector.stop()
