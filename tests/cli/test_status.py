"""``act status``: lag arithmetic (pure) and a report from a real broker."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from uuid import uuid4

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from services.cli import status
from services.devkit.kafkaio import topic, unique_prefix
from services.runtime.topics import default_catalog
from tests.cli.helpers import ainvoke, kafka_args, make_topics


@pytest.mark.parametrize(
    ("begin", "end", "committed", "lag"),
    [
        (0, 10, -1, 10),  # nothing committed: every record
        (4, 10, -1, 6),  # ... that still exists
        (0, 10, 3, 7),
        (0, 10, 10, 0),
        (5, 10, 2, 5),  # committed below the log start (retention)
        (0, 10, 12, 0),  # never negative
    ],
)
def test_partition_lag(begin, end, committed, lag):
    assert status.partition_lag(begin, end, committed) == lag


def test_stage_report_totals_and_rendering():
    report = status.build_stage_report(
        stage="annotator",
        topic_id="items",
        topic="act.items.v1",
        group="act-annotator",
        begin={0: 0, 1: 2},
        end={0: 7, 1: 5},
        committed={0: 4},
        members=2,
        state="Stable",
    )
    assert report.records == 10
    assert report.lag == 3 + 3
    assert report.committed
    assert [(p.partition, p.committed_offset, p.lag) for p in report.partitions] == [
        (0, 4, 3),
        (1, -1, 3),
    ]
    full = status.StatusReport(
        observed_at=datetime(2025, 1, 1, tzinfo=UTC),
        topic_prefix="",
        topics=[status.TopicReport("items", "act.items.v1", True, 2, 10, "act.v1.Item")],
        stages=[report],
    )
    table = status.render_table(full, partitions=True)
    assert "act-annotator" in table and "Stable" in table
    assert "transaction markers count" in table
    row = next(line for line in table.splitlines() if line.startswith("annotator "))
    assert row.split()[3:7] == ["10", "6", "2", "Stable"]
    data = json.loads(full.to_json())
    assert data["stages"][0]["partitions"][1] == {
        "partition": 1,
        "begin_offset": 2,
        "end_offset": 5,
        "committed_offset": -1,
        "lag": 3,
    }
    proto = full.to_proto()
    assert proto.stages[0].lag == 6 and proto.stages[0].members == 2
    assert proto.stages[0].partitions[1].committed_offset == -1


def test_every_stage_reads_a_topic_of_the_spec():
    catalog = default_catalog()
    for stage, topic_id in status.STAGE_INPUTS.items():
        assert catalog.get(topic_id).message.startswith("act.v1."), stage
    assert status.stage_group("review-gateway") == "act-review-gateway"


@pytest.mark.kafka
async def test_status_after_ingest_reports_counts_and_lag(kafka_bootstrap: str):
    kafka = await make_topics(kafka_bootstrap, unique_prefix())
    args = kafka_args(kafka)
    group_prefix = f"g{uuid4().hex[:8]}-"
    created = await ainvoke(
        [
            "task",
            "create",
            "--task-id",
            "t1",
            "--name",
            "demo",
            "--labels",
            "ham,spam",
            "--modality",
            "text",
            "--budget",
            "0.2",
            "--rule",
            "threshold",
            *args,
        ]
    )
    assert created.exit_code == 0, created.output
    ingested = await ainvoke(["ingest", "--task", "t1", "--dataset", "demo-text", *args])
    assert ingested.exit_code == 0, ingested.output

    # The annotator's group has consumed (and committed) part of partition 0.
    items = topic(kafka, "items")
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka.bootstrap_servers,
        group_id=f"{group_prefix}act-annotator",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        tps = [TopicPartition(items, 0), TopicPartition(items, 1)]
        consumer.assign(tps)
        end = await consumer.end_offsets(tps)
        assert end[tps[0]] >= 1, "demo items should hash onto both partitions"
        await consumer.commit({tps[0]: OffsetAndMetadata(1, "")})
    finally:
        await consumer.stop()

    result = await ainvoke(["status", "--json", "--group-prefix", group_prefix, *args])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    topics = {t["id"]: t for t in report["topics"]}
    assert topics["items"]["records"] == 10  # idempotent, non-transactional: no markers
    assert topics["items"]["partitions"] == 2
    assert topics["tasks"]["records"] == 1
    assert topics["annotations"]["records"] == 0 and topics["annotations"]["exists"]
    stages = {s["stage"]: s for s in report["stages"]}
    annotator = stages["annotator"]
    assert annotator["consumer_group"] == f"{group_prefix}act-annotator"
    assert annotator["topic"] == items
    assert annotator["records"] == 10
    assert annotator["lag"] == 9
    assert annotator["committed"] is True
    parts = {p["partition"]: p for p in annotator["partitions"]}
    assert parts[0]["committed_offset"] == 1 and parts[0]["lag"] == end[tps[0]] - 1
    assert parts[1]["committed_offset"] == -1 and parts[1]["lag"] == end[tps[1]]
    assert annotator["members"] == 0  # nobody is consuming now
    assert stages["criticizer"]["lag"] == 0 and stages["criticizer"]["committed"] is False
    assert set(stages) == set(status.STAGE_INPUTS)

    table = await ainvoke(["status", "--group-prefix", group_prefix, *args])
    assert table.exit_code == 0
    row = next(line for line in table.stdout.splitlines() if line.startswith("annotator "))
    assert row.split()[1:5] == [f"{group_prefix}act-annotator", items, "10", "9"]


@pytest.mark.kafka
async def test_status_of_missing_topics_and_unreachable_broker(kafka_bootstrap: str):
    prefix = unique_prefix()
    result = await ainvoke(
        ["status", "--json", "--bootstrap", kafka_bootstrap, "--topic-prefix", prefix]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert not any(t["exists"] for t in report["topics"])
    assert all(s["lag"] == 0 and not s["exists"] for s in report["stages"])

    # Commands that read or write a topic say how to create it.
    for args in (
        ["task", "list"],
        ["ingest", "--task", "t", "--dataset", "demo-text", "--no-check-task"],
    ):
        missing = await ainvoke([*args, "--bootstrap", kafka_bootstrap, "--topic-prefix", prefix])
        assert missing.exit_code == 1, missing.output
        assert "does not exist (create it with `act topics ensure`)" in missing.stderr

    down = await ainvoke(["status", "--bootstrap", "127.0.0.1:1"])
    assert down.exit_code == 1
    assert down.stderr.startswith("error: kafka:")


def test_grpc_answer_rendering_and_proto_dead_letters():
    report = status.build_stage_report(
        stage="sampler",
        topic_id="critiques",
        topic="act.critiques.v1",
        group="act-sampler",
        begin={0: 2},
        end={0: 9},
        committed={0: 5},
    )
    assert report.committed_records == 3  # offsets 2..4 still exist
    full = status.StatusReport(datetime(2025, 1, 1, tzinfo=UTC), "", [], [report])
    proto = full.to_proto({"sampler": {"DecodeError": 2}}, include_partitions=False)
    assert dict(proto.stages[0].dead_letters) == {"DecodeError": 2}
    assert proto.stages[0].committed_records == 3 and not proto.stages[0].partitions
    proto.tasks.add(task_id="t1", ingested=4, budget_spent=1, task_known=False)
    proto.stages[0].live_replicas, proto.stages[0].in_flight, proto.stages[0].retries = 2, 7, 1
    table = status.render_proto(proto)
    stage_row = next(line for line in table.splitlines() if line.startswith("sampler "))
    # COMMITTED~, REPLICAS, IN FLIGHT, RETRIES, DEAD LETTERS
    assert stage_row.split()[-5:] == ["3", "2", "7", "1", "DecodeError=2"]
    task_row = next(line for line in table.splitlines() if line.startswith("t1 "))
    assert task_row.split()[8:10] == ["1/?", "?"]  # budget unknown, no review database
    assert "QUEUE ? = the server reads no review database." in table
    assert "had not caught up" in table
