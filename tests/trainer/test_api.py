"""The trainer's gRPC API (``act.v1.TrainingService``) on a real server, no Kafka."""

from __future__ import annotations

import shutil
from pathlib import Path

import grpc
import pytest
from act.v1 import api_pb2, api_pb2_grpc, training_pb2

from services.runtime.grpc_server import GrpcServer
from services.trainer.api import registrations
from services.trainer.events import MemorySink
from services.trainer.factory import build_trainer
from tests.trainer.support import TASK, make_label, trainer_settings


async def test_grpc_api(tmp_path: Path) -> None:
    settings = trainer_settings(tmp_path, epochs=1)
    trainer = build_trainer(settings, sink=MemorySink())
    for i in range(50):
        trainer.store.upsert_label(make_label(i))
    server = GrpcServer(0, registrations(trainer.facade), host="127.0.0.1")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = api_pb2_grpc.TrainingServiceStub(channel)
            cfg = training_pb2.FitConfig(model="cnn-28x28", epochs=1, batch_size=16)
            cfg.params["num_classes"] = "4"
            a = await stub.StartFit(
                api_pb2.StartFitRequest(task_id=TASK, config=cfg, idempotency_key="k1")
            )
            b = await stub.StartFit(
                api_pb2.StartFitRequest(task_id=TASK, config=cfg, idempotency_key="k1")
            )
            assert a.fit_id == b.fit_id and a.state == training_pb2.FIT_STATE_QUEUED
            assert a.config.learning_rate > 0 and a.config.validation_fraction > 0
            c = await stub.StartFit(api_pb2.StartFitRequest(task_id=TASK, config=cfg))
            assert c.fit_id != a.fit_id
            got = await stub.GetFit(api_pb2.GetFitRequest(fit_id=a.fit_id))
            assert got.fit_id == a.fit_id
            page = await stub.ListFits(api_pb2.ListFitsRequest(task_id=TASK, page_size=1))
            assert [f.fit_id for f in page.fits] == [a.fit_id] and page.next_page_token
            rest = await stub.ListFits(
                api_pb2.ListFitsRequest(task_id=TASK, page_size=1, page_token=page.next_page_token)
            )
            assert [f.fit_id for f in rest.fits] == [c.fit_id] and not rest.next_page_token
            cancelled = await stub.CancelFit(api_pb2.CancelFitRequest(fit_id=c.fit_id))
            assert cancelled.state == training_pb2.FIT_STATE_CANCELLED
            for request, code in [
                (api_pb2.StartFitRequest(task_id="", config=cfg), grpc.StatusCode.INVALID_ARGUMENT),
                (
                    api_pb2.StartFitRequest(task_id="empty-task", config=cfg),
                    grpc.StatusCode.FAILED_PRECONDITION,
                ),
                (
                    api_pb2.StartFitRequest(task_id=TASK, config=training_pb2.FitConfig(model="x")),
                    grpc.StatusCode.INVALID_ARGUMENT,
                ),
            ]:
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await stub.StartFit(request)
                assert err.value.code() == code
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.GetFit(api_pb2.GetFitRequest(fit_id="nope"))
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        await server.stop(0)
        trainer.store.close()
    shutil.rmtree(tmp_path, ignore_errors=True)
