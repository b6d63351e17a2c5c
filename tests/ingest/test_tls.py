"""The ingest service serves over TLS when its GrpcServer settings say so."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from act.v1 import api_pb2, api_pb2_grpc

from services.ingest.app import IngestService
from services.runtime.grpc_client import ClientTLS, channel
from tests.ingest.conftest import Env, producer_auth
from tests.support.tls import make_pki

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


async def test_ingest_service_over_tls(env: Env, tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    settings = env.settings(grpc_tls_cert_file=pki.server.cert, grpc_tls_key_file=pki.server.key)
    service = IngestService(settings, env.kafka, host="127.0.0.1")
    await service.start()
    target = f"127.0.0.1:{service.port}"
    try:
        async with channel(target, ClientTLS(pki.ca.cert_file)) as ch:
            stub = api_pb2_grpc.IngestServiceStub(ch)
            page = await stub.ListTasks(
                api_pb2.ListTasksRequest(), metadata=producer_auth(), timeout=10
            )
            assert isinstance(page, api_pb2.ListTasksResponse)
        async with channel(target, None) as plain:  # no plaintext port
            stub = api_pb2_grpc.IngestServiceStub(plain)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.ListTasks(
                    api_pb2.ListTasksRequest(), metadata=producer_auth(), timeout=3
                )
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await service.stop()
