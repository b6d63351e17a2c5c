"""GetStatus end to end on real Kafka and PostgreSQL: its numbers equal counts
read back from the topics and the gateway's database independently."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import grpc
import pytest
from act.v1 import (
    annotation_pb2,
    api_pb2,
    api_pb2_grpc,
    critique_pb2,
    dlq_pb2,
    item_pb2,
    review_pb2,
    task_pb2,
    training_pb2,
)
from aiokafka import TopicPartition
from aiokafka.structs import OffsetAndMetadata
from sqlalchemy import text

from services.cli.kafkaio import read_snapshot
from services.devkit.kafkaio import make_topics, topic, unique_prefix
from services.pipeline_status.api import add_to_server
from services.pipeline_status.ops import StatusOps, review_budget
from services.pipeline_status.settings import PipelineStatusSettings
from services.review_gateway.db import create_engine, open_database
from services.review_gateway.store import ReviewStore
from services.review_gateway.store.rows import ROLE_REVIEWER
from services.runtime import kafka_clients
from services.runtime.config import KafkaSettings
from tests.cli.helpers import ainvoke
from tests.review_gateway.support import make_request

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

TOPICS = [
    "tasks",
    "items",
    "annotations",
    "critiques",
    "review_requests",
    "labels",
    "dlq",
    "training_events",
]
#: task -> (items, annotated, critiqued, review requests, machine-final, human-final)
PLAN = {"t1": (10, 8, 7, 2, 4, 1), "t2": (6, 6, 5, 3, 2, 2)}
#: (stage, reason, task) of the dead letters written.
LETTERS = [
    ("annotator", "PermanentError", "t1"),
    ("annotator", "PermanentError", "t1"),
    ("criticizer", "TaskNotFoundError", "t2"),
    ("sampler", "DecodeError", ""),
]


def _task(task_id: str, fraction: float, hard_cap: int) -> task_pb2.Task:
    task = task_pb2.Task(task_id=task_id, name=task_id)
    task.labels.add(index=0, name="ham")
    task.labels.add(index=1, name="spam")
    task.budget.fraction, task.budget.hard_cap = fraction, hard_cap
    return task


#: The task definitions: t2's hard cap is below its budget fraction's share.
TASKS = {"t1": _task("t1", 0.2, 0), "t2": _task("t2", 0.5, 2)}


def _records() -> list[tuple[str, str, bytes]]:
    """(topic id, key, value) of everything written, in order."""
    out: list[tuple[str, str, bytes]] = []
    for task_id, (n, annotated, critiqued, requests, machine, human) in PLAN.items():
        items = [item_pb2.Item(item_id=f"{task_id}-{i}", task_id=task_id) for i in range(n)]
        for item in items:
            out.append(("items", item.item_id, item.SerializeToString()))
        for item in items[:annotated]:
            value = annotation_pb2.Annotation(item=item).SerializeToString()
            out.append(("annotations", item.item_id, value))
        for item in items[:critiqued]:
            critique = critique_pb2.Critique(annotation=annotation_pb2.Annotation(item=item))
            out.append(("critiques", item.item_id, critique.SerializeToString()))
        for i, item in enumerate(items[:requests]):
            request = make_request(i, task_id, request_id=f"{task_id}-r{i}", item_id=item.item_id)
            request.task.CopyFrom(TASKS[task_id])  # the sampler sends the task along
            out.append(("review_requests", item.item_id, request.SerializeToString()))
        for i, item in enumerate(items[: machine + human]):
            label = review_pb2.FinalLabel(item_id=item.item_id, task_id=task_id, delta=i < human)
            out.append(("labels", item.item_id, label.SerializeToString()))
        # One machine-final label arrives twice (an item ingested again): counted once.
        out.append(("labels", items[human].item_id, out[-machine][2]))
    letter = dlq_pb2.DeadLetter
    for stage, reason, task_id in LETTERS:
        value = letter(stage=stage, error_type=reason, task_id=task_id).SerializeToString()
        out.append(("dlq", task_id, value))
    for kind in ("started", "completed"):
        event = training_pb2.TrainingEvent(task_id="t1", fit_id="fit-1")
        event.at.GetCurrentTime()
        if kind == "started":
            event.started.SetInParent()
        else:
            event.completed.metrics["accuracy"] = 0.75
        out.append(("training_events", "t1", event.SerializeToString()))
    return out


async def _write(kafka: KafkaSettings) -> None:
    producer = kafka_clients.idempotent_producer(kafka)
    await producer.start()
    try:
        for task in TASKS.values():
            await producer.send(topic(kafka, "tasks"), task.SerializeToString(), key=b"t")
        for topic_id, key, value in _records():
            await producer.send(topic(kafka, topic_id), value, key=key.encode())
        await producer.flush()
    finally:
        await producer.stop()
    # An aborted transaction's label never counts (read_committed).
    txn = await kafka_clients.fenced_transactional_producer(kafka, f"abort-{uuid.uuid4().hex}")
    try:
        await txn.begin_transaction()
        label = review_pb2.FinalLabel(item_id="t1-9", task_id="t1", delta=True)
        await txn.send(topic(kafka, "labels"), label.SerializeToString(), key=b"t1-9")
        await txn.abort_transaction()
    finally:
        await txn.stop()


async def _expected_from_topics(kafka: KafkaSettings) -> tuple[dict[str, dict[str, int]], Counter]:
    """Per-task counts and (stage, reason) dead letters, from a read-back of the topics."""

    async def values(topic_id: str) -> list[bytes]:
        return [r.value or b"" for r in await read_snapshot(kafka, topic(kafka, topic_id))]

    tasks: dict[str, Counter] = {}

    def bump(task_id: str, field: str) -> None:
        tasks.setdefault(task_id, Counter())[field] += 1

    for v in await values("items"):
        bump(item_pb2.Item.FromString(v).task_id, "ingested")
    for v in await values("annotations"):
        bump(annotation_pb2.Annotation.FromString(v).item.task_id, "annotated")
    for v in await values("critiques"):
        bump(critique_pb2.Critique.FromString(v).annotation.item.task_id, "critiqued")
    for v in await values("review_requests"):
        bump(review_pb2.ReviewRequest.FromString(v).task.task_id, "sampled_for_review")
    finals: dict[tuple[str, str], bool] = {}
    for v in await values("labels"):
        label = review_pb2.FinalLabel.FromString(v)
        key = (label.task_id, label.item_id)
        finals[key] = finals.get(key, False) or label.delta
    for (task_id, _), human in finals.items():
        bump(task_id, "reviewed" if human else "machine_final")
        bump(task_id, "finalized")
    letters = Counter()
    for v in await values("dlq"):
        letter = dlq_pb2.DeadLetter.FromString(v)
        letters[(letter.stage, letter.error_type)] += 1
        if letter.task_id:
            bump(letter.task_id, "dead_letters")
    return {t: dict(c) for t, c in tasks.items()}, letters


@pytest.fixture
async def review_db(postgres_dsn: str) -> AsyncIterator[tuple[str, str]]:
    """A fresh gateway schema in the session's PostgreSQL, dropped afterwards."""
    schema = f"ps_{uuid.uuid4().hex[:12]}"
    yield postgres_dsn, schema
    engine = create_engine(postgres_dsn)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        await engine.dispose()


async def _fill_queue(dsn: str, schema: str) -> dict[str, tuple[int, int]]:
    """Queue each task's review requests, lease one of t2; task -> (pending, leased)."""
    engine = await open_database(dsn, schema=schema, pool_size=2)
    store = ReviewStore(engine, schema=schema, hot_pool_size=2)
    try:
        for task in TASKS.values():
            await store.upsert_task(task)
        for topic_id, _, value in _records():
            if topic_id == "review_requests":
                assert await store.enqueue(review_pb2.ReviewRequest.FromString(value))
        reviewer = await store.create_reviewer("r", ROLE_REVIEWER, "1" * 64, "test")
        assert await store.lease(reviewer.id, "t2", 300) is not None
        async with engine.connect() as conn:  # read back, not through the store
            rows = await conn.execute(
                text("SELECT task_id, state, count(*) FROM queue GROUP BY task_id, state")
            )
            states = {(t, s): int(n) for t, s, n in rows}
    finally:
        await store.close()
    return {t: (states.get((t, "pending"), 0), states.get((t, "leased"), 0)) for t in PLAN}


async def test_get_status_equals_counts_read_from_topics_and_database(
    kafka_bootstrap: str, review_db: tuple[str, str]
):
    kafka = await make_topics(kafka_bootstrap, unique_prefix(), TOPICS, partitions=3)
    group_prefix = f"g{uuid.uuid4().hex[:8]}-"
    await _write(kafka)
    queue = await _fill_queue(*review_db)
    assert queue == {"t1": (2, 0), "t2": (2, 1)}

    # The annotator's group has committed everything; the others nothing.
    items = topic(kafka, "items")
    consumer = kafka_clients.consumer(kafka, group_id=f"{group_prefix}act-annotator")
    await consumer.start()
    try:
        tps = [TopicPartition(items, p) for p in range(3)]
        consumer.assign(tps)
        end = await consumer.end_offsets(tps)
        await consumer.commit({tp: OffsetAndMetadata(o, "") for tp, o in end.items()})
        labels = [TopicPartition(topic(kafka, "labels"), p) for p in range(3)]
        label_records = sum((await consumer.end_offsets(labels)).values())
    finally:
        await consumer.stop()

    dsn, schema = review_db
    settings = PipelineStatusSettings(
        group_prefix=group_prefix,
        review_database_url=dsn,
        review_database_schema=schema,
        sync_timeout_s=20.0,
        environment="test",
    )
    ops = await StatusOps.open(settings, kafka)
    server = grpc.aio.server()
    add_to_server(server, ops)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = api_pb2_grpc.PipelineStatusServiceStub(channel)
            status = await stub.GetStatus(api_pb2.GetStatusRequest(), timeout=60)
            only_t2 = await stub.GetStatus(
                api_pb2.GetStatusRequest(task_id="t2", include_partitions=True), timeout=60
            )
        expected, letters = await _expected_from_topics(kafka)

        assert status.tasks_caught_up and status.review_queue_known
        tasks = {t.task_id: t for t in status.tasks}
        assert set(tasks) == set(expected) == set(PLAN)
        for task_id, counts in expected.items():
            got = tasks[task_id]
            for field in (
                "ingested",
                "annotated",
                "critiqued",
                "sampled_for_review",
                "machine_final",
                "reviewed",
                "finalized",
                "dead_letters",
            ):
                assert getattr(got, field) == counts.get(field, 0), (task_id, field)
            # ... which are also what was written (the aborted label left out).
            n, annotated, critiqued, requests, machine, human = PLAN[task_id]
            assert (got.ingested, got.annotated, got.critiqued) == (n, annotated, critiqued)
            assert (got.machine_final, got.reviewed) == (machine, human)
            pending, leased = queue[task_id]
            assert (got.review_pending, got.review_leased) == (pending, leased)
            assert got.review_queue_depth == pending + leased
            assert got.task_known and got.budget_spent == requests
        assert tasks["t1"].budget == review_budget(0.2, 0, 10) == 2
        assert tasks["t2"].budget == 2  # floor(0.5 * 6) = 3, capped at 2
        assert tasks["t1"].latest_fit.fit_id == "fit-1"
        assert tasks["t1"].latest_fit.state == training_pb2.FIT_STATE_SUCCEEDED
        assert dict(tasks["t1"].latest_fit.metrics) == {"accuracy": 0.75}
        assert not tasks["t2"].HasField("latest_fit")

        stages = {s.stage: s for s in status.stages}
        got_letters = Counter(
            {(s, r): n for s, st in stages.items() for r, n in st.dead_letters.items()}
        )
        assert got_letters == letters == Counter((s, r) for s, r, _ in LETTERS)
        assert stages["annotator"].records == sum(end.values()) == 16
        assert stages["annotator"].lag == 0
        assert stages["annotator"].committed_records == 16
        # 11 labels, the aborted one and its abort marker: offsets count them all.
        assert stages["trainer"].records == label_records == 13
        assert stages["trainer"].lag == label_records and stages["trainer"].committed_records == 0
        assert not stages["annotator"].partitions  # not asked for

        assert [t.task_id for t in only_t2.tasks] == ["t2"]
        assert only_t2.tasks[0] == tasks["t2"]
        assert len(only_t2.stages[0].partitions) == 3

        # Without a review database the depth is unset, and the answer says so.
        no_db = await StatusOps(
            kafka, ops.progress, ops.tasks, group_prefix=group_prefix
        ).get_status(api_pb2.GetStatusRequest(task_id="t1"))
        assert not no_db.review_queue_known
        assert not no_db.tasks[0].HasField("review_queue_depth")

        # `act status --via grpc` prints the same numbers.
        args = ["status", "--via", "grpc", "--target", f"127.0.0.1:{port}"]
        table = await ainvoke(args)
        assert table.exit_code == 0, table.output
        row = next(line for line in table.stdout.splitlines() if line.startswith("t2 "))
        assert row.split()[:10] == ["t2", "6", "6", "5", "3", "2", "2", "4", "3/2", "3"]
        as_json = await ainvoke([*args, "--json", "--task", "t1"])
        assert as_json.exit_code == 0, as_json.output
        data = json.loads(as_json.stdout)
        assert data["tasks"][0]["ingested"] == "10"  # int64 as a JSON string
    finally:
        await server.stop(None)
        await ops.close()
