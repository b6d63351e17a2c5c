"""The trainer's fit manager, stage and gRPC API, without Kafka."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import grpc
import pytest
import torch
from act.v1 import api_pb2, api_pb2_grpc, training_pb2

from services.runtime.grpc_server import GrpcServer
from services.runtime.stage import Envelope
from services.trainer.service import (
    FitManager,
    MemorySink,
    TrainerSettings,
    TrainerStage,
    registrations,
    validation_member,
)
from services.trainer.store import TrainerStore
from tests.trainer.support import TASK, make_label

N = 240


def _settings(tmp: Path, **kw: Any) -> TrainerSettings:
    return TrainerSettings(
        store_path=tmp / "store.sqlite",
        checkpoint_dir=tmp / "ckpt",
        metrics_port=0,
        grpc_port=0,
        use_task_registry=False,
        torch_threads=1,
        **kw,
    )


def _filled_store(path: Path, n: int = N) -> TrainerStore:
    store = TrainerStore(path)
    for i in range(n):
        store.upsert_label(make_label(i))
    return store


def _config(manager: FitManager, **kw: object) -> training_pb2.FitConfig:
    fields: dict[str, object] = {
        "model": "cnn-28x28",
        "epochs": 3,
        "batch_size": 32,
        "loss": training_pb2.LOSS_KIND_ACT,
        "seed": 1,
        "validation_fraction": 0.2,
    }
    config = training_pb2.FitConfig(**{**fields, **kw})
    return manager.resolve_config(config, num_classes=4)


def _ids(sink: MemorySink) -> list[str]:
    return [e.event_id.split("/", 1)[1] for e in sink.events]


def test_a_fit_selects_lambda_checkpoints_every_epoch_and_reports(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    store = _filled_store(settings.store_path)
    sink = MemorySink()
    manager = FitManager(store, settings, sink)
    manager.start()
    try:
        status = manager.submit(TASK, _config(manager, power_lambda_grid=[0.6, 1.0]))
        assert manager.wait_idle(300)
    finally:
        manager.stop()
    final = store.get_fit(status.fit_id)
    assert final is not None
    assert final.state == training_pb2.FIT_STATE_SUCCEEDED, final.error
    assert final.epoch == 3
    assert final.power_lambda_used in (0.6, 1.0)
    assert "search/lambda=0.6/val_accuracy" in final.metrics
    assert "search/lambda=1/val_accuracy" in final.metrics
    held_out = sum(validation_member(f"item-{i:05d}", 0.2) for i in range(N))
    assert final.labels_used == N - held_out
    assert final.metrics["validation_items"] == sum(
        validation_member(f"item-{i:05d}", 0.2) for i in range(0, N, 3)
    )
    assert final.metrics["val_accuracy"] > 0.8  # the blob task is easy
    assert _ids(sink) == [
        "started",
        "epoch/1",
        "checkpoint/1",
        "epoch/2",
        "checkpoint/2",
        "epoch/3",
        "checkpoint/3",
        "completed",
    ]
    fit_dir = settings.checkpoint_dir / status.fit_id
    assert (fit_dir / "checkpoint.pt").is_file() and (fit_dir / "model.pt").is_file()
    assert final.checkpoint_uri.endswith("model.pt")
    metrics = json.loads((fit_dir / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [1, 2, 3]
    checkpoint_event = sink.events[2].checkpoint
    import hashlib

    assert checkpoint_event.epoch == 1 and len(checkpoint_event.sha256) == 64
    assert hashlib.sha256((fit_dir / "checkpoint.pt").read_bytes()).hexdigest() != ""


class _StopAfter(MemorySink):
    """Simulates a process stop right after a given event (the fit stays RUNNING)."""

    def __init__(self, event: str) -> None:
        super().__init__()
        self.event = event
        self.manager: FitManager | None = None

    def publish(self, event: training_pb2.TrainingEvent) -> None:
        super().publish(event)
        if event.event_id.endswith(self.event) and self.manager is not None:
            self.manager._stop.set()


def test_an_interrupted_fit_resumes_from_its_checkpoint_and_matches(tmp_path: Path) -> None:
    # Reference: the same fit, never interrupted.
    ref_settings = _settings(tmp_path / "ref")
    ref_store = _filled_store(ref_settings.store_path)
    ref = FitManager(ref_store, ref_settings, MemorySink())
    ref.start()
    ref_fit = ref.submit(TASK, _config(ref, power_lambda=0.7, epochs=4))
    assert ref.wait_idle(300)
    ref.stop()

    settings = _settings(tmp_path / "run")
    store = _filled_store(settings.store_path)
    sink = _StopAfter("checkpoint/2")
    first = FitManager(store, settings, sink)
    sink.manager = first
    first.start()
    fit = first.submit(TASK, _config(first, power_lambda=0.7, epochs=4))
    first._thread.join(120)  # type: ignore[union-attr]
    interrupted = store.get_fit(fit.fit_id)
    assert interrupted is not None
    assert interrupted.state == training_pb2.FIT_STATE_RUNNING and interrupted.epoch == 2
    # More labels arrive meanwhile: the fit keeps its snapshot.
    for i in range(N, N + 30):
        store.upsert_label(make_label(i))
    resumed_sink = MemorySink()
    second = FitManager(store, settings, resumed_sink)
    second.start()  # recovers the RUNNING fit
    assert second.wait_idle(300)
    second.stop()
    done = store.get_fit(fit.fit_id)
    reference = ref_store.get_fit(ref_fit.fit_id)
    assert done is not None and reference is not None
    assert done.state == training_pb2.FIT_STATE_SUCCEEDED, done.error
    assert done.epoch == 4 and done.labels_used == reference.labels_used
    # The epoch continues (3, 4), nothing restarts from epoch 1, no second "started".
    assert _ids(resumed_sink) == ["epoch/3", "checkpoint/3", "epoch/4", "checkpoint/4", "completed"]
    history = json.loads((settings.checkpoint_dir / fit.fit_id / "metrics.json").read_text())
    assert [h["epoch"] for h in history["history"]] == [1, 2, 3, 4]
    # Bit-for-bit the model the uninterrupted fit produced.
    a = torch.load(ref_settings.checkpoint_dir / ref_fit.fit_id / "model.pt", weights_only=True)
    b = torch.load(settings.checkpoint_dir / fit.fit_id / "model.pt", weights_only=True)
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key


def test_cancel_and_failure(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    store = _filled_store(settings.store_path, 60)
    sink = MemorySink()
    manager = FitManager(store, settings, sink)
    # Not started: the fit stays queued and is cancelled directly.
    queued = manager.submit(TASK, _config(manager))
    cancelled = manager.cancel(queued.fit_id, "not needed")
    assert cancelled is not None and cancelled.state == training_pb2.FIT_STATE_CANCELLED
    assert cancelled.error == "not needed"
    assert manager.cancel("missing") is None
    # A fit whose labels do not fit its class count fails with the reason.
    bad = manager.submit(
        TASK,
        manager.resolve_config(training_pb2.FitConfig(model="cnn-28x28", epochs=1), num_classes=2),
    )
    manager.start()
    try:
        assert manager.wait_idle(120)
    finally:
        manager.stop()
    failed = store.get_fit(bad.fit_id)
    assert failed is not None and failed.state == training_pb2.FIT_STATE_FAILED
    assert "labels" in failed.error
    assert _ids(sink)[-1] == "failed" and "cancelled" in _ids(sink)
    with pytest.raises(ValueError):
        manager.resolve_config(training_pb2.FitConfig(power_lambda=1.5))
    with pytest.raises(KeyError):
        manager.resolve_config(training_pb2.FitConfig(model="nope"))


async def test_stage_dedupes_and_starts_a_fit_after_enough_new_labels(tmp_path: Path) -> None:
    settings = _settings(tmp_path, min_new_labels=40, epochs=1, power_lambda_grid=[])
    sink = MemorySink()
    stage = TrainerStage(settings, sink=sink)
    await stage.start()
    try:
        for i in list(range(39)) + list(range(10)):  # 10 duplicates
            await stage.process(Envelope(make_label(i), "labels", 0, i, None, {}, 0))
        assert stage.store.count_labels(TASK) == 39
        assert stage.store.list_fits(TASK) == []
        await stage.process(Envelope(make_label(39), "labels", 0, 99, None, {}, 0))
        fits = stage.store.list_fits(TASK)
        assert len(fits) == 1
        assert await asyncio.to_thread(stage.manager.wait_idle, 120)
        # No second fit until 40 more new labels arrive.
        await stage.process(Envelope(make_label(5), "labels", 0, 100, None, {}, 0))
        assert len(stage.store.list_fits(TASK)) == 1
        from services.runtime.retry import PermanentError

        broken = make_label(3)  # delta = 1
        broken.ClearField("human_label")
        with pytest.raises(PermanentError):
            await stage.process(Envelope(broken, "labels", 0, 101, None, {}, 0))
    finally:
        await stage.stop()
    status = TrainerStore(settings.store_path).get_fit(fits[0].fit_id)
    assert status is not None
    assert status.state == training_pb2.FIT_STATE_SUCCEEDED, status.error


async def test_grpc_api(tmp_path: Path) -> None:
    settings = _settings(tmp_path, epochs=1)
    stage = TrainerStage(settings, sink=MemorySink())
    for i in range(50):
        stage.store.upsert_label(make_label(i))
    server = GrpcServer(0, registrations(stage), host="127.0.0.1")
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
        stage.store.close()
    shutil.rmtree(tmp_path, ignore_errors=True)
