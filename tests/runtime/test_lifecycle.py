"""A stage process: gRPC health, Prometheus metrics, clean logs, SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.kafkaio import (
    Collector,
    make_topics,
    produce_items,
    spawn_echo_stage,
    unique_prefix,
)
from tests.support.stack import free_port

pytestmark = [pytest.mark.kafka]


async def _health(port: int) -> int:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
        return int(reply.status)


async def test_health_metrics_logs_and_graceful_sigterm(kafka_bootstrap: str, tmp_path: Path):
    kafka = await make_topics(kafka_bootstrap, unique_prefix(), ["items", "annotations", "dlq"])
    grpc_port, metrics_port = free_port(), free_port()
    log = tmp_path / "stage.log"
    proc = spawn_echo_stage(
        kafka,
        f"life-{kafka.topic_prefix}",
        log,
        ACT_ECHO_GRPC_PORT=str(grpc_port),
        ACT_ECHO_METRICS_PORT=str(metrics_port),
        ACT_ECHO_DELAY_MS="50",
    )
    collector = Collector(kafka, ["annotations"])
    await collector.start()
    try:
        status = None
        for _ in range(200):
            try:
                status = await _health(grpc_port)
                if status == health_pb2.HealthCheckResponse.SERVING:
                    break
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(0.1)
        assert status == health_pb2.HealthCheckResponse.SERVING

        ids = [f"life-{i}" for i in range(200)]
        await produce_items(kafka, ids)
        await collector.wait_for("annotations", len(ids), timeout=60)

        body = await asyncio.to_thread(
            lambda: (
                urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5)
                .read()
                .decode()
            )
        )
        consumed = [
            line
            for line in body.splitlines()
            if line.startswith('act_messages_consumed_total{stage="echo"}')
        ]
        assert consumed and float(consumed[0].split()[-1]) == len(ids)
        assert "act_handler_latency_seconds_bucket" in body
        assert "act_consumer_lag" in body or "act_in_flight" in body

        # More work in flight, then SIGTERM: it drains, commits and exits 0.
        more = [f"late-{i}" for i in range(100)]
        await produce_items(kafka, more)
        await asyncio.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 60)
        assert code == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        await collector.stop()

    text = log.read_text()
    events = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert any(e["event"] == "stage_started" for e in events)
    assert any(e["event"] == "stage_stopped" for e in events)
    assert all(e.get("service") == "echo" for e in events)
    assert "text of" not in text  # item content never reaches the logs
