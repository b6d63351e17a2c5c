"""The ingest process (``python -m services.ingest``) serves GetStatus too.

With health, the review queue read from the process's own database, and a
clean exit on SIGTERM.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import grpc
import pytest
from act.v1 import api_pb2, api_pb2_grpc
from sqlalchemy import text

from services.devkit.kafkaio import make_topics, produce_items, unique_prefix
from services.devkit.processes import read_log, sigterm, spawn_service, wait_serving
from services.devkit.stack import free_port
from services.review_gateway.db import create_engine, normalize_url, open_database


@pytest.mark.kafka
async def test_the_ingest_process_serves_get_status_and_stops_on_sigterm(
    kafka_bootstrap: str, postgres_dsn: str, tmp_path: Path
):
    kafka = await make_topics(kafka_bootstrap, unique_prefix(), ["tasks", "items"], partitions=2)
    await produce_items(kafka, [f"i{i}" for i in range(3)], task_id="t1")
    schema = f"st_{uuid.uuid4().hex[:12]}"
    engine = await open_database(postgres_dsn, schema=schema, pool_size=1)  # the gateway's
    await engine.dispose()
    port = free_port()
    env = {
        "ACT_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "ACT_KAFKA_TOPIC_PREFIX": kafka.topic_prefix,
        "ACT_INGEST_DATABASE_URL": normalize_url(postgres_dsn),
        "ACT_INGEST_DATABASE_SCHEMA": schema,
        "ACT_INGEST_GRPC_PORT": str(port),
        "ACT_INGEST_METRICS_PORT": "0",
        "ACT_INGEST_LOG_JSON": "false",
    }
    log = tmp_path / "ingest.log"
    proc = spawn_service("services.ingest", env, log)
    try:
        await wait_serving(port, proc, what="ingest")
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = api_pb2_grpc.PipelineStatusServiceStub(channel)
            status = await stub.GetStatus(api_pb2.GetStatusRequest(), timeout=30)
    finally:
        code = sigterm(proc)
        engine = create_engine(postgres_dsn)
        async with engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await engine.dispose()
    assert code == 0, read_log(log)
    assert [(t.task_id, t.ingested, t.task_known) for t in status.tasks] == [("t1", 3, False)]
    assert status.tasks_caught_up
    # The queue depth comes from the process's own (the gateway's) database.
    assert status.review_queue_known
    # Topics the follower cannot find (annotations, ...) are skipped, not an error.
    assert {s.stage: s.records for s in status.stages}["annotator"] == 3
