"""A stage process: gRPC health, Prometheus metrics, clean logs, SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.devkit.kafkaio import make_topics, produce_items, unique_prefix
from services.devkit.processes import read_log, reap, spawn_service
from services.devkit.stack import free_port
from services.runtime.config import KafkaSettings
from tests.support.kafkaio import Collector, spawn_echo_stage

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


async def test_sigterm_during_startup_exits_0_without_committing(tmp_path: Path) -> None:
    """SIGTERM while the stage is still starting (here: its broker never answers)
    abandons the start: the process exits 0 and reports NOT_SERVING until then."""
    # A listener that never accepts: the TCP handshake completes in the kernel's
    # backlog, and the Kafka client waits for an answer that never comes.
    silent = socket.create_server(("127.0.0.1", 0))
    grpc_port, metrics_port = free_port(), free_port()
    log = tmp_path / "stage.log"
    kafka = KafkaSettings(
        bootstrap_servers=f"127.0.0.1:{silent.getsockname()[1]}", topic_prefix="none."
    )
    proc = spawn_echo_stage(
        kafka,
        "startup-sigterm",
        log,
        ACT_ECHO_GRPC_PORT=str(grpc_port),
        ACT_ECHO_METRICS_PORT=str(metrics_port),
    )
    try:
        # The metrics server starts after the signal handlers are installed, and
        # the health service answers NOT_SERVING while the consumer connects.
        status = None
        for _ in range(300):
            assert proc.poll() is None, read_log(log)
            try:
                status = await _health(grpc_port)
                break
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.1)
        assert status == health_pb2.HealthCheckResponse.NOT_SERVING
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 30)
        assert code == 0, read_log(log)
    finally:
        reap(proc)
        silent.close()
    events = [json.loads(line) for line in read_log(log).splitlines() if line.startswith("{")]
    assert any(e["event"] == "stopped_during_startup" for e in events)
    assert not any(e["event"] == "stage_started" for e in events)


async def test_gateway_shares_the_lifecycle_sigterm_during_startup_exits_0(
    tmp_path: Path,
) -> None:
    """The review gateway runs under the same lifecycle as the stages: a SIGTERM
    while it still waits for its database abandons the start and exits 0."""
    silent = socket.create_server(("127.0.0.1", 0))  # a database that never answers
    metrics_port = free_port()
    log = tmp_path / "gateway.log"
    proc = spawn_service(
        "services.review_gateway",
        {
            "ACT_GATEWAY_DATABASE_URL": (
                f"postgresql+psycopg://act:act@127.0.0.1:{silent.getsockname()[1]}/act"
            ),
            "ACT_GATEWAY_GRPC_PORT": str(free_port()),
            "ACT_GATEWAY_METRICS_PORT": str(metrics_port),
            "ACT_GATEWAY_HTTP_ENABLED": "false",
            "ACT_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{silent.getsockname()[1]}",
        },
        log,
    )
    try:
        # /metrics answers once the signal handlers are installed.
        for _ in range(300):
            assert proc.poll() is None, read_log(log)
            try:
                await asyncio.to_thread(
                    lambda: urllib.request.urlopen(
                        f"http://127.0.0.1:{metrics_port}/metrics", timeout=1
                    ).read()
                )
                break
            except OSError:
                await asyncio.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 30)
        assert code == 0, read_log(log)
    finally:
        reap(proc)
        silent.close()
    events = [json.loads(line) for line in read_log(log).splitlines() if line.startswith("{")]
    assert any(e["event"] == "stopped_during_startup" for e in events)
    assert not any(e["event"] == "gateway_started" for e in events)
