"""SIGKILL the gateway process mid-stream, several times, while reviewers work.

The gateway runs as its own process (``python -m services.review_gateway``);
the replay reviewer works against it from the test process and retries
through the restarts. Review requests arrive in waves, some while the gateway
is down. Afterwards:

* every request ends as exactly one FinalLabel on the labels topic (no
  consumer-side dedupe needed: the relay publishes each outbox row once);
* every review the reviewer saw accepted is the one on the topic (none lost);
* no item was leased again after its label was accepted (database and client).
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import grpc
import pytest
from act.v1 import api_pb2
from sqlalchemy import text

from services.devkit.kafkaio import make_topics, unique_prefix
from services.devkit.processes import (
    read_log,
    reap,
    sigkill,
    sigterm,
    spawn_service,
    wait_serving,
    wait_until,
)
from services.devkit.stack import free_port
from services.review_gateway.db import create_engine
from services.review_gateway.replay import ReplayConfig, ReplayReviewer
from tests.review_gateway.conftest import Database
from tests.review_gateway.kafka_support import (
    duplicates,
    final_labels,
    produce_requests,
    produce_task,
)
from tests.review_gateway.support import ADMIN_TOKEN, Client, make_request, make_task
from tests.support.kafkaio import Collector

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

N = 120
WAVES = 4
KILLS = 3
MODULE = "services.review_gateway"


async def test_sigkill_gateway_mid_stream(database: Database, kafka_bootstrap: str, tmp_path: Path):
    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    prefix = unique_prefix()
    kafka = await make_topics(
        kafka_bootstrap, prefix, ["review_requests", "labels", "tasks", "dlq"], partitions=3
    )
    await produce_task(kafka, make_task())
    requests = [make_request(n, machine_label=0, priority=n % 3) for n in range(N)]
    held = {f"item-{n}": (n * 7) % 3 for n in range(N)}
    waves = [requests[i::WAVES] for i in range(WAVES)]
    port = free_port()
    env = {
        "ACT_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "ACT_KAFKA_TOPIC_PREFIX": kafka.topic_prefix,
        "ACT_GATEWAY_DATABASE_URL": database.url,
        "ACT_GATEWAY_DATABASE_SCHEMA": database.schema,
        "ACT_GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN,
        "ACT_GATEWAY_GRPC_PORT": str(port),
        "ACT_GATEWAY_METRICS_PORT": "0",
        "ACT_GATEWAY_HTTP_PORT": "0",
        "ACT_GATEWAY_GROUP_ID": f"gw-{prefix}",
        "ACT_GATEWAY_SESSION_TIMEOUT_MS": "6000",
        "ACT_GATEWAY_HEARTBEAT_INTERVAL_MS": "1000",
        "ACT_GATEWAY_MAX_POLL_INTERVAL_MS": "10000",
        "ACT_GATEWAY_LEASE_SECONDS": "4",
        "ACT_GATEWAY_REAPER_INTERVAL_S": "0.5",
        "ACT_GATEWAY_OUTBOX_POLL_INTERVAL_S": "0.05",
        "ACT_GATEWAY_OUTBOX_BATCH_SIZE": "7",
        "ACT_GATEWAY_ENVIRONMENT": "test",
        "ACT_GATEWAY_DATA_DIR": str(tmp_path / "data"),
    }
    log = tmp_path / "gateway.log"
    collector = Collector(kafka, ["labels", "dlq"])
    await collector.start()
    proc = spawn_service(MODULE, env, log)
    reviewer: ReplayReviewer | None = None
    work: asyncio.Task[object] | None = None
    try:
        await wait_serving(port, proc, what="gateway", timeout=60)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            created = await Client(channel, ADMIN_TOKEN).CreateReviewer(
                api_pb2.CreateReviewerRequest(name="replay")
            )
        reviewer = ReplayReviewer(
            ReplayConfig(
                target=f"127.0.0.1:{port}",
                token=created.token,
                held_labels=held,
                concurrency=4,
                seconds_per_item=0.03,
                idle_seconds=600,
                call_timeout_s=3,
                record=True,
            )
        )
        work = asyncio.create_task(reviewer.run())
        await produce_requests(kafka, waves[0])
        for kill in range(KILLS):
            target = len(requests) * (kill + 1) // (WAVES + 1)
            accepted = reviewer.accepted
            await wait_until(
                lambda t=target, seen=accepted: len(seen) >= t, 90, f"{target} accepted reviews"
            )
            await asyncio.sleep(rng.uniform(0.0, 0.3))
            sigkill(proc)
            await produce_requests(kafka, waves[kill + 1])  # arrives while the gateway is down
            proc = spawn_service(MODULE, env, log)
        await wait_until(lambda: len(reviewer.accepted) >= N, 120, "every item reviewed")
        reviewer.stop()
        await asyncio.wait_for(work, 30)
        await collector.wait_for("labels", N, timeout=60)
        await asyncio.sleep(2.0)  # duplicates, if any, would show up here
        code = sigterm(proc, timeout=60)
        assert code == 0, "graceful stop failed"
    finally:
        if work is not None and not work.done():
            work.cancel()
        reap(proc)
        await collector.stop()

    logged = read_log(log)
    assert "content of item" not in logged and ADMIN_TOKEN not in logged
    assert reviewer is not None and reviewer.config.token not in logged
    labels = final_labels(collector)
    assert not duplicates(labels), f"seed {seed}: {duplicates(labels)}"
    by_item = {label.item_id: label for label in labels}
    assert set(by_item) == {r.decision.critique.annotation.item.item_id for r in requests}
    assert collector.count("dlq") == 0
    # No accepted review lost: what the reviewer was told is what the trainer gets.
    for item_id, review_id in reviewer.accepted.items():
        assert by_item[item_id].review_id == review_id, item_id
        assert by_item[item_id].human_label == held[item_id]
    # Never served again after acceptance (client view) ...
    accepted_at: dict[str, float] = {}
    for event, item_id, _lease, at in reviewer.history:
        if event in ("accepted", "duplicate"):
            accepted_at.setdefault(item_id, at)
        elif event == "leased" and item_id in accepted_at:
            raise AssertionError(f"{item_id} leased again after its label was accepted")
    # ... and in the database: no lease began after the item's review.
    engine = create_engine(database.url, schema=database.schema)
    try:
        async with engine.connect() as conn:
            late = (
                await conn.execute(
                    text(
                        "SELECT count(*) FROM leases l"
                        " JOIN reviews r ON r.request_id = l.request_id"
                        " WHERE l.leased_at_us > r.submitted_at_us"
                    )
                )
            ).scalar_one()
            reviews = (await conn.execute(text("SELECT count(*) FROM reviews"))).scalar_one()
            unsent = (
                await conn.execute(text("SELECT count(*) FROM outbox WHERE sent_at_us IS NULL"))
            ).scalar_one()
    finally:
        await engine.dispose()
    assert (late, reviews, unsent) == (0, N, 0)
    print(f"seed={seed} {reviewer.summary}")
