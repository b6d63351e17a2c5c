"""Per-stage status from topic offsets and consumer-group commits.

Record counts are estimates: ``end offset - beginning offset`` summed over
partitions, which also counts transaction markers (one per committed or
aborted transaction per partition) and aborted records. ``act status`` prints
this report directly; :class:`~services.pipeline_status.ops.StatusOps` serves
it (with dead letters by reason added) as ``PipelineStatus.stages``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from act.v1 import api_pb2
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import CoordinatorLoadInProgressError, GroupCoordinatorNotAvailableError
from aiokafka.protocol.admin import DescribeGroupsRequest

from services.runtime import kafka_clients
from services.runtime.config import KafkaSettings
from services.runtime.topics import TopicCatalog, default_catalog

#: Each pipeline stage and the topic id (topics.yaml) its consumer group reads.
STAGE_INPUTS: dict[str, str] = {
    "annotator": "items",
    "criticizer": "annotations",
    "sampler": "critiques",
    "review-gateway": "review_requests",
    "trainer": "labels",
}


def stage_group(stage: str, group_prefix: str = "") -> str:
    """The consumer group of a stage: ``act-<stage>`` (as services.runtime.runner)."""
    return f"{group_prefix}act-{stage}"


@dataclass(frozen=True, slots=True)
class TopicReport:
    """One topic of the specification as the broker has it."""

    id: str
    topic: str
    exists: bool
    partitions: int
    records: int
    message: str


@dataclass(frozen=True, slots=True)
class PartitionReport:
    """Offsets of one partition of a stage's input topic."""

    partition: int
    begin_offset: int
    end_offset: int
    #: The group's committed offset; -1 = none.
    committed_offset: int
    lag: int


@dataclass(frozen=True, slots=True)
class StageReport:
    """One stage's consumer group on its input topic."""

    stage: str
    topic_id: str
    topic: str
    consumer_group: str
    exists: bool
    records: int
    lag: int
    committed: bool
    partitions: list[PartitionReport] = field(default_factory=list)
    #: Active group members; ``None`` when unknown.
    members: int | None = None
    #: Group state as the coordinator reports it ("Stable", "Empty", "Dead", ...).
    state: str | None = None
    #: Records below the committed offsets (markers count, as in ``records``).
    committed_records: int = 0


@dataclass(frozen=True, slots=True)
class StatusReport:
    """Every topic and every stage, observed at one moment."""

    observed_at: datetime
    topic_prefix: str
    topics: list[TopicReport]
    stages: list[StageReport]

    def to_dict(self) -> dict[str, Any]:
        """Plain data (``observed_at`` as ISO 8601)."""
        data = asdict(self)
        data["observed_at"] = self.observed_at.isoformat()
        return data

    def to_json(self, indent: int | None = 2) -> str:
        """:meth:`to_dict` as JSON."""
        return json.dumps(self.to_dict(), indent=indent)

    def to_proto(
        self,
        dead_letters: Mapping[str, Mapping[str, int]] | None = None,
        *,
        include_partitions: bool = True,
    ) -> api_pb2.PipelineStatus:
        """The report as the PipelineStatusService message.

        ``dead_letters`` (stage -> reason -> count) fills
        ``StageStatus.dead_letters``; offsets alone cannot tell them.
        """
        out = api_pb2.PipelineStatus()
        out.observed_at.FromDatetime(self.observed_at)
        for stage in self.stages:
            msg = out.stages.add(
                stage=stage.stage,
                topic=stage.topic,
                consumer_group=stage.consumer_group,
                records=stage.records,
                lag=stage.lag,
                members=stage.members or 0,
                committed_records=stage.committed_records,
            )
            msg.dead_letters.update((dead_letters or {}).get(stage.stage, {}))
            if not include_partitions:
                continue
            for part in stage.partitions:
                msg.partitions.add(
                    partition=part.partition,
                    end_offset=part.end_offset,
                    committed_offset=part.committed_offset,
                    lag=part.lag,
                )
        return out


def partition_lag(begin: int, end: int, committed: int) -> int:
    """Records after the committed offset; all of them when nothing is committed."""
    if committed < 0:
        return max(0, end - begin)
    return max(0, end - max(committed, begin))


def partition_committed(begin: int, end: int, committed: int) -> int:
    """Records below the committed offset that still exist; 0 when nothing is committed."""
    if committed < 0:
        return 0
    return max(0, min(committed, end) - begin)


def build_stage_report(
    *,
    stage: str,
    topic_id: str,
    topic: str,
    group: str,
    begin: Mapping[int, int],
    end: Mapping[int, int],
    committed: Mapping[int, int],
    exists: bool = True,
    members: int | None = None,
    state: str | None = None,
) -> StageReport:
    """A stage's lag from offsets keyed by partition (pure)."""
    parts: list[PartitionReport] = []
    for p in sorted(end):
        b, e = begin.get(p, 0), end[p]
        c = committed.get(p, -1)
        parts.append(PartitionReport(p, b, e, c, partition_lag(b, e, c)))
    return StageReport(
        stage=stage,
        topic_id=topic_id,
        topic=topic,
        consumer_group=group,
        exists=exists,
        records=sum(max(0, p.end_offset - p.begin_offset) for p in parts),
        lag=sum(p.lag for p in parts),
        committed=any(p.committed_offset >= 0 for p in parts),
        partitions=parts,
        members=members,
        state=state,
        committed_records=sum(
            partition_committed(p.begin_offset, p.end_offset, p.committed_offset) for p in parts
        ),
    )


def _group_descriptions(responses: Sequence[Any]) -> dict[str, tuple[str, int]]:
    """group id -> (state, members) from raw DescribeGroups responses."""
    out: dict[str, tuple[str, int]] = {}
    for response in responses:
        for group in getattr(response, "groups", []):
            # (error_code, group_id, state, protocol_type, protocol, members, ...)
            error_code, group_id, state, members = group[0], group[1], group[2], group[5]
            if error_code == 0:
                out[str(group_id)] = (str(state), len(members))
    return out


async def describe_groups(
    admin: AIOKafkaAdminClient, groups: list[str]
) -> dict[str, tuple[str, int]]:
    """group id -> (state, members); empty when the broker cannot tell.

    aiokafka 0.12's ``describe_consumer_groups`` builds a malformed v3 request
    (it omits ``include_authorized_operations``) and cannot decode the v3
    response, so this sends DescribeGroups v0-v2 to each group's coordinator.
    """
    try:
        version = min(2, admin._matching_api_version(DescribeGroupsRequest))
        responses = []
        for group in groups:
            node = await admin.find_coordinator(group)
            request = DescribeGroupsRequest[version](groups=[group])
            responses.append(await admin._send_request(request, node))
        return _group_descriptions(responses)
    except Exception:  # members are a nicety; offsets are what matters
        return {}


async def _group_offsets(
    admin: Any, group: str, partitions: list[TopicPartition], attempts: int = 10
) -> dict[TopicPartition, Any]:
    """Committed offsets of a group; waits out a coordinator that is still loading.

    On a fresh broker the offsets topic is created on first use, and until it
    is, every group's coordinator is "not available" (a transient state).
    """
    for attempt in range(attempts):
        try:
            result: dict[TopicPartition, Any] = await admin.list_consumer_group_offsets(
                group, partitions=partitions
            )
            return result
        except (GroupCoordinatorNotAvailableError, CoordinatorLoadInProgressError):
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


async def _offsets(
    consumer: AIOKafkaConsumer, parts: Iterable[TopicPartition]
) -> tuple[dict[int, int], dict[int, int]]:
    """Beginning and end offsets of the partitions, keyed by partition number."""
    parts = list(parts)
    if not parts:
        return {}, {}
    begin, end = await asyncio.gather(
        consumer.beginning_offsets(parts), consumer.end_offsets(parts)
    )
    return {tp.partition: o for tp, o in begin.items()}, {tp.partition: o for tp, o in end.items()}


async def collect_status(
    kafka: KafkaSettings,
    *,
    catalog: TopicCatalog | None = None,
    group_prefix: str = "",
    stages: Mapping[str, str] | None = None,
) -> StatusReport:
    """Read offsets and group commits from the broker."""
    catalog = catalog or default_catalog()
    stages = STAGE_INPUTS if stages is None else stages
    prefix = kafka.topic_prefix
    # read_uncommitted: end offsets are high watermarks, as consumer-group tools show.
    consumer = kafka_clients.snapshot_consumer(kafka, isolation_level="read_uncommitted")
    admin = kafka_clients.admin_client(kafka)
    try:
        await consumer.start()
        await admin.start()
        existing = await consumer.topics()
        topic_offsets: dict[str, tuple[dict[int, int], dict[int, int]]] = {}
        topics: list[TopicReport] = []
        for spec in catalog:
            name = spec.full_name(prefix)
            if name not in existing:
                topics.append(TopicReport(spec.id, name, False, 0, 0, spec.message))
                continue
            parts = [
                TopicPartition(name, p) for p in sorted(consumer.partitions_for_topic(name) or ())
            ]
            b, e = await _offsets(consumer, parts)
            topic_offsets[spec.id] = (b, e)
            records = sum(max(0, e[p] - b.get(p, 0)) for p in e)
            topics.append(TopicReport(spec.id, name, True, len(parts), records, spec.message))
        groups = {stage: stage_group(stage, group_prefix) for stage in stages}
        described = await describe_groups(admin, list(groups.values()))
        reports: list[StageReport] = []
        for stage, topic_id in stages.items():
            name = catalog.name(topic_id, prefix)
            group = groups[stage]
            state, members = described.get(group, (None, None))
            b, e = topic_offsets.get(topic_id, ({}, {}))
            committed: dict[int, int] = {}
            if topic_id in topic_offsets:
                fetched = await _group_offsets(
                    admin, group, [TopicPartition(name, p) for p in sorted(e)]
                )
                committed = {
                    tp.partition: meta.offset for tp, meta in fetched.items() if tp.topic == name
                }
            reports.append(
                build_stage_report(
                    stage=stage,
                    topic_id=topic_id,
                    topic=name,
                    group=group,
                    begin=b,
                    end=e,
                    committed=committed,
                    exists=topic_id in topic_offsets,
                    members=members,
                    state=state,
                )
            )
        return StatusReport(
            observed_at=datetime.now(UTC), topic_prefix=prefix, topics=topics, stages=reports
        )
    finally:
        await admin.close()
        await consumer.stop()
