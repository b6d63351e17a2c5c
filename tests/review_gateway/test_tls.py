"""The review gateway over mutual TLS: its settings, the ``act`` CLI and the replay reviewer.

An in-process gateway on SQLite (no Kafka, no web workspace) whose gRPC API
requires client certificates of the test CA (tests/support/tls.py).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from act.v1 import api_pb2
from typer.testing import CliRunner

from services.cli.main import app
from services.devkit.stack import REPO_ROOT
from services.review_gateway import replay
from services.review_gateway.app import Gateway
from services.runtime.grpc_client import ClientTLS, channel
from tests.review_gateway.conftest import Database, gateway_settings
from tests.review_gateway.support import ADMIN_TOKEN, Client, make_request, make_task
from tests.support.tls import Pki, make_pki


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    """The test CA, the gateway's certificate and client certificates."""
    return make_pki(tmp_path / "pki")


@pytest.fixture
async def gateway(tmp_path: Path, pki: Pki) -> AsyncIterator[Gateway]:
    """A started gateway whose gRPC API requires client certificates of ``pki.ca``."""
    database = Database("sqlite", f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}", "")
    settings = gateway_settings(
        database,
        http_enabled=False,
        grpc_tls_cert_file=pki.server.cert,
        grpc_tls_key_file=pki.server.key,
        grpc_tls_client_ca_file=pki.ca.cert_file,
    )
    running = Gateway(settings, kafka=None, host="127.0.0.1")
    await running.start(consume=False, relay=False, reaper=False)
    assert running.store is not None
    await running.store.upsert_task(make_task())
    try:
        yield running
    finally:
        await running.stop()


def tls_options(pki: Pki) -> list[str]:
    """The client TLS options of the command-line tools (right CA, right client certificate)."""
    return [
        "--tls-ca",
        str(pki.ca.cert_file),
        "--tls-cert",
        str(pki.client.cert),
        "--tls-key",
        str(pki.client.key),
    ]


async def test_review_service_over_mutual_tls(gateway: Gateway, pki: Pki) -> None:
    target = f"127.0.0.1:{gateway.port}"
    right = ClientTLS(pki.ca.cert_file, pki.client.cert, pki.client.key)
    async with channel(target, right) as ch:
        created = await Client(ch, ADMIN_TOKEN).CreateReviewer(
            api_pb2.CreateReviewerRequest(name="tls", role=api_pb2.REVIEWER_ROLE_REVIEWER)
        )
        assert created.token
    for tls in (
        None,  # plaintext
        ClientTLS(pki.ca.cert_file),  # no client certificate
        ClientTLS(pki.ca.cert_file, pki.stranger.cert, pki.stranger.key),  # another CA's
    ):
        async with channel(target, tls) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await Client(ch, created.token, timeout=5).lease(task_id="task-1")
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_cli_and_replay_reviewer_over_mutual_tls(gateway: Gateway, pki: Pki) -> None:
    target = f"127.0.0.1:{gateway.port}"
    runner = CliRunner()
    env = {"ACT_GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN}
    args = ["reviewers", "create", "replayer", "--gateway", target]
    # Plaintext (today's default) cannot reach a TLS gateway.
    plain = await asyncio.to_thread(runner.invoke, app, args, env=env)
    assert plain.exit_code == 1 and "UNAVAILABLE" in plain.output
    # A client certificate without the CA is a usage error.
    half = ["--tls-cert", str(pki.client.cert), "--tls-key", str(pki.client.key)]
    usage = await asyncio.to_thread(runner.invoke, app, [*args, *half], env=env)
    assert usage.exit_code == 2 and "needs the CA file" in usage.output
    result = await asyncio.to_thread(runner.invoke, app, [*args, *tls_options(pki)], env=env)
    assert result.exit_code == 0, result.output
    token = json.loads(result.stdout)["token"]

    assert gateway.store is not None
    await gateway.store.enqueue(make_request(1, machine_label=0))
    reviewer = replay.ReplayReviewer(
        replay.ReplayConfig(
            target=target,
            token=token,
            idle_seconds=0.5,
            tls=ClientTLS(pki.ca.cert_file, pki.client.cert, pki.client.key),
        )
    )
    summary = await reviewer.run()
    assert summary.submitted == 1

    # The module's command line takes the same options (here: nothing left to review).
    argv = ["--target", target, "--token", token, "--idle-seconds", "0.5", *tls_options(pki)]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.review_gateway.replay",
        *argv,
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, err.decode()
    assert json.loads(out)["leased"] == 0
