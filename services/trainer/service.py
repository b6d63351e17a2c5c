"""The trainer service: final labels in, ACT-loss fits, checkpoints and training events out.

* :class:`TrainerStage` consumes ``act.labels`` (``FinalLabel``, keyed by item
  id) and upserts every label into the local store
  (:class:`~services.trainer.store.TrainerStore`); a label seen twice counts
  once. It produces no records, so the runtime's transaction only commits the
  input offset, after the upsert: a crash between the two replays the record,
  which the upsert absorbs.
* :class:`FitManager` runs fits one at a time in a background thread: on
  request (gRPC ``StartFit``) or automatically when ``min_new_labels`` labels
  arrived since the task's last fit. Each epoch writes a checkpoint atomically
  (model, optimizer, epoch, RNG state) and the fit's metrics; a restarted
  process resumes every interrupted fit from its last checkpoint, on the same
  label snapshot, with the same batches.
* Training events (``FitStarted``, ``EpochCompleted``, ``CheckpointWritten``,
  ``FitCompleted``/``FitFailed``/``FitCancelled``) go to ``act.training.events``
  through a plain idempotent producer, not in a transaction: they are
  informational, published at least once, and carry deterministic event ids
  (``<fit_id>/epoch/3``) so a consumer can drop the repeats a resume causes.
* :class:`TrainingServicer` serves ``act.v1.TrainingService``.

Hyper-parameters: ``FitConfig.power_lambda_grid`` selects lambda (appendix A.3)
on the reviewed items of a held-out slice (``validation_fraction`` of the items
by a hash of the item id), weighted by ``1/pi``: human labels only
(:mod:`services.trainer.hpo`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import queue
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import grpc
import numpy as np
import structlog
import torch
from act.v1 import api_pb2, api_pb2_grpc, common_pb2, item_pb2, review_pb2, training_pb2
from aiokafka import AIOKafkaProducer
from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.runtime.config import KafkaSettings, StageSettings
from services.runtime.retry import PermanentError
from services.runtime.stage import Envelope, Output, Stage
from services.runtime.topics import default_catalog
from services.trainer.checkpoint import atomic_write_bytes, load_checkpoint, save_checkpoint
from services.trainer.data import ActDataset, LabelledSet
from services.trainer.features import FeatureError, decode_item_image, prepare_inputs
from services.trainer.fit import (
    EpochReport,
    FitCancelledError,
    TrainConfig,
    TrainState,
    make_optimizer,
    new_state,
    train,
)
from services.trainer.hpo import PAPER_LAMBDA_GRID, Candidate, grid_search
from services.trainer.loss import LossKind, Objective
from services.trainer.models import InputKind, build_model, model_spec
from services.trainer.store import TrainerStore

log = structlog.get_logger(__name__)

SERVICE_NAME = "act.v1.TrainingService"
_TERMINAL = (
    training_pb2.FIT_STATE_SUCCEEDED,
    training_pb2.FIT_STATE_FAILED,
    training_pb2.FIT_STATE_CANCELLED,
)
_LOSS_KINDS = {
    training_pb2.LOSS_KIND_UNSPECIFIED: LossKind.ACT,
    training_pb2.LOSS_KIND_ACT: LossKind.ACT,
    training_pb2.LOSS_KIND_HUMAN_ONLY: LossKind.HUMAN_ONLY,
    training_pb2.LOSS_KIND_MACHINE_ONLY: LossKind.MACHINE_ONLY,
    training_pb2.LOSS_KIND_ACT_DATA_CE: LossKind.ACT_DATA_CE,
}
#: Default downstream model by task modality.
DEFAULT_MODEL_BY_MODALITY = {
    common_pb2.MODALITY_IMAGE: "cnn-28x28",
    common_pb2.MODALITY_TEXT: "minilm-head",
}


class TrainerSettings(StageSettings):
    """Trainer settings (env prefix ``ACT_TRAINER_``)."""

    model_config = SettingsConfigDict(env_prefix="ACT_TRAINER_", extra="ignore")

    checkpoint_dir: Path = Field(
        Path(".local/trainer/checkpoints"), description="Checkpoints, metrics, final models."
    )
    store_path: Path = Field(
        Path(".local/trainer/store.sqlite"), description="SQLite file of labels and fits."
    )
    min_new_labels: int = Field(
        0, ge=0, description="Start a fit after this many new labels of a task; 0 = never."
    )
    model: str = Field(
        "",
        description="Default downstream model; empty = by task modality (cnn-28x28, minilm-head).",
    )
    device: str = Field("cpu", description="torch device of fits.")
    epochs: int = Field(0, ge=0, description="Default epochs; 0 = the model's default.")
    batch_size: int = Field(0, ge=0, description="Default batch size; 0 = the model's default.")
    learning_rate: float = Field(0.0, ge=0.0, description="Default lr; 0 = the model's default.")
    power_lambda_grid: list[float] = Field(
        default_factory=lambda: list(PAPER_LAMBDA_GRID),
        description="lambda grid of automatic fits (appendix A.3); [] = lambda 1.",
    )
    validation_fraction: float = Field(
        0.1, ge=0.0, lt=1.0, description="Items held out (by id hash) for validation."
    )
    checkpoint_every: int = Field(1, ge=1, description="Write a checkpoint every this many epochs.")
    torch_threads: int = Field(0, ge=0, description="torch intra-op threads; 0 = default.")
    event_timeout_s: float = Field(10.0, gt=0.0, description="Wait for a training event's ack.")
    use_task_registry: bool = Field(
        True, description="Read act.tasks for class counts and modality."
    )


# ------------------------------------------------------------------- helpers


def _now() -> Timestamp:
    ts = Timestamp()
    ts.GetCurrentTime()
    return ts


def validation_member(item_id: str, fraction: float) -> bool:
    """Whether an item belongs to the held-out validation slice (stable hash of its id)."""
    if fraction <= 0:
        return False
    digest = hashlib.blake2b(item_id.encode(), digest_size=8, person=b"act-trainer-val").digest()
    return int.from_bytes(digest, "little") / 2**64 < fraction


class EventSink(Protocol):
    """Where training events go (thread-safe)."""

    def publish(self, event: training_pb2.TrainingEvent) -> None:
        """Publish one event; failures are logged, never raised."""
        ...


class MemorySink:
    """Keeps events in a list (tests, offline fits)."""

    def __init__(self) -> None:
        self.events: list[training_pb2.TrainingEvent] = []
        self._lock = threading.Lock()

    def publish(self, event: training_pb2.TrainingEvent) -> None:
        """Append the event."""
        with self._lock:
            self.events.append(event)


class KafkaEventSink:
    """Publishes to ``act.training.events`` (keyed by task id) with an idempotent producer.

    Not transactional: the events describe progress and are published at
    least once (a resumed fit repeats the events of its unfinished epoch with
    the same deterministic ids).
    """

    def __init__(self, kafka: KafkaSettings, timeout_s: float = 10.0) -> None:
        self.kafka = kafka
        self.topic = default_catalog().name("training_events", kafka.topic_prefix)
        self.timeout_s = timeout_s
        self._producer: AIOKafkaProducer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        """Open the producer on the running loop."""
        self._loop = asyncio.get_running_loop()
        self._producer = AIOKafkaProducer(
            enable_idempotence=True, acks="all", linger_ms=5, **self.kafka.client_kwargs()
        )
        await self._producer.start()

    async def stop(self) -> None:
        """Flush and close the producer."""
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    def publish(self, event: training_pb2.TrainingEvent) -> None:
        """Send from any thread and wait for the broker's acknowledgement (bounded)."""
        producer, loop = self._producer, self._loop
        if producer is None or loop is None:
            log.warning("training_event_dropped", reason="producer not started", id=event.event_id)
            return
        coro = producer.send_and_wait(
            self.topic, event.SerializeToString(), key=event.task_id.encode()
        )
        try:
            if _on_loop(loop):
                loop.create_task(coro)  # cannot block the loop we run on
                return
            asyncio.run_coroutine_threadsafe(coro, loop).result(self.timeout_s)
        except Exception as exc:  # informational: a lost event must not fail a fit
            log.warning("training_event_failed", id=event.event_id, error=str(exc))


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


class FitInterruptedError(RuntimeError):
    """The process is stopping; the fit stays RUNNING and resumes after a restart."""


@dataclass
class _Running:
    fit_id: str
    cancel: threading.Event
    reason: str = ""


@dataclass
class PreparedData:
    """A fit's training and validation data, built from a label snapshot."""

    train: ActDataset
    validation: LabelledSet
    skipped: int
    num_classes: int


# ------------------------------------------------------------------ the fits


class FitManager:
    """Queues, runs, checkpoints and resumes fits (one at a time, in a worker thread)."""

    def __init__(
        self,
        store: TrainerStore,
        settings: TrainerSettings,
        sink: EventSink,
        *,
        on_change: Callable[[training_pb2.FitStatus], None] | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.sink = sink
        self.on_change = on_change
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._running: _Running | None = None
        self._lock = threading.Lock()
        self._auto_lock = threading.Lock()  # one check-then-submit at a time
        self._queued: set[str] = set()

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the worker and re-queue fits that were queued or running at the last stop."""
        for status in self.store.list_fits(
            states=(training_pb2.FIT_STATE_QUEUED, training_pb2.FIT_STATE_RUNNING)
        ):
            log.info("fit_recovered", fit_id=status.fit_id, state=status.state, epoch=status.epoch)
            self._enqueue(status.fit_id)
        self._thread = threading.Thread(target=self._work, name="act-trainer-fits", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Interrupt the running fit (it resumes after a restart) and stop the worker."""
        self._stop.set()
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout)

    def wait_idle(self, timeout: float) -> bool:
        """Block until no fit is queued or running (tests)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._queued and self._running is None:
                    return True
            time.sleep(0.05)
        return False

    # ------------------------------------------------------------- requests

    def resolve_config(
        self,
        config: training_pb2.FitConfig,
        *,
        num_classes: int | None = None,
        modality: int | None = None,
    ) -> training_pb2.FitConfig:
        """Fill defaults; raise ValueError for an invalid config."""
        c = training_pb2.FitConfig()
        c.CopyFrom(config)
        if not c.model:
            c.model = self.settings.model or DEFAULT_MODEL_BY_MODALITY.get(
                modality or common_pb2.MODALITY_UNSPECIFIED, "cnn-28x28"
            )
        spec = model_spec(c.model)  # KeyError for unknown models
        if c.epochs <= 0:
            c.epochs = self.settings.epochs or spec.epochs
        if c.batch_size <= 0:
            c.batch_size = self.settings.batch_size or spec.batch_size
        if c.learning_rate <= 0:
            c.learning_rate = self.settings.learning_rate or spec.learning_rate
        if c.HasField("power_lambda") and not 0.0 <= c.power_lambda <= 1.0:
            raise ValueError("power_lambda must be in [0, 1]")
        if any(not 0.0 <= v <= 1.0 for v in c.power_lambda_grid):
            raise ValueError("power_lambda_grid values must be in [0, 1]")
        if not 0.0 <= c.validation_fraction < 1.0:
            raise ValueError("validation_fraction must be in [0, 1)")
        if c.validation_fraction == 0.0:
            c.validation_fraction = self.settings.validation_fraction
        if num_classes is not None and "num_classes" not in c.params:
            c.params["num_classes"] = str(num_classes)
        return c

    def submit(
        self, task_id: str, config: training_pb2.FitConfig, idempotency_key: str = ""
    ) -> training_pb2.FitStatus:
        """Create (or return, for a known idempotency key) a fit and queue it."""
        now = _now()
        status = training_pb2.FitStatus(
            fit_id=f"fit-{uuid.uuid4().hex[:16]}",
            task_id=task_id,
            state=training_pb2.FIT_STATE_QUEUED,
            created_at=now,
            updated_at=now,
        )
        status.config.CopyFrom(config)
        stored, created = self.store.create_fit(status, idempotency_key or None)
        if created:
            log.info("fit_queued", fit_id=stored.fit_id, task_id=task_id, model=config.model)
            self._enqueue(stored.fit_id)
            self._changed(stored)
        return stored

    def maybe_auto_fit(self, task_id: str, config: training_pb2.FitConfig) -> None:
        """Queue a fit when enough new labels arrived and none of the task's is pending."""
        n = self.settings.min_new_labels
        with self._auto_lock:
            if n <= 0 or self.store.labels_since_last_fit(task_id) < n:
                return
            pending = self.store.list_fits(
                task_id, states=(training_pb2.FIT_STATE_QUEUED, training_pb2.FIT_STATE_RUNNING)
            )
            if pending:
                return
            self.submit(task_id, config)

    def cancel(self, fit_id: str, reason: str = "") -> training_pb2.FitStatus | None:
        """Cancel a queued or running fit; a finished one is returned unchanged."""
        # Under the lock the worker cannot pick the fit up between our check and our write.
        with self._lock:
            status = self.store.get_fit(fit_id)
            if status is None or status.state in _TERMINAL:
                return status
            running = self._running if self._running and self._running.fit_id == fit_id else None
            if running is not None:
                running.reason = reason
                running.cancel.set()  # the fit stops at its next batch
            else:
                self._finish_cancelled(status, reason)
        return self.store.get_fit(fit_id)

    # --------------------------------------------------------------- worker

    def _enqueue(self, fit_id: str) -> None:
        with self._lock:
            if fit_id in self._queued:
                return
            self._queued.add(fit_id)
        self._queue.put(fit_id)

    def _work(self) -> None:
        if self.settings.torch_threads:
            torch.set_num_threads(self.settings.torch_threads)
        while not self._stop.is_set():
            fit_id = self._queue.get()
            if fit_id is None:
                break
            running = _Running(fit_id=fit_id, cancel=threading.Event())
            with self._lock:  # see cancel(): read the state and claim the fit atomically
                status = self.store.get_fit(fit_id)
                if status is None or status.state in _TERMINAL:
                    self._queued.discard(fit_id)
                    continue
                self._running = running
            try:
                self._run(status, running)
            except FitInterruptedError:
                log.info("fit_interrupted", fit_id=fit_id)
            except Exception as exc:  # a failed fit must not kill the worker
                log.exception("fit_failed", fit_id=fit_id)
                self._finish_failed(fit_id, exc)
            finally:
                with self._lock:
                    self._running = None
                    self._queued.discard(fit_id)

    def _changed(self, status: training_pb2.FitStatus) -> None:
        if self.on_change is not None:
            self.on_change(status)

    def _save(self, status: training_pb2.FitStatus) -> None:
        status.updated_at.CopyFrom(_now())
        self.store.save_fit(status)
        self._changed(status)

    def _event(self, status: training_pb2.FitStatus, suffix: str, **kwargs: Any) -> None:
        event = training_pb2.TrainingEvent(
            event_id=f"{status.fit_id}/{suffix}",
            task_id=status.task_id,
            fit_id=status.fit_id,
            at=_now(),
            **kwargs,
        )
        self.sink.publish(event)

    def fit_dir(self, fit_id: str) -> Path:
        """Where a fit's checkpoint, metrics and final model live."""
        return Path(self.settings.checkpoint_dir) / fit_id

    def _check(self, running: _Running) -> bool:
        if self._stop.is_set():
            raise FitInterruptedError(running.fit_id)
        return running.cancel.is_set()

    def prepare(self, status: training_pb2.FitStatus) -> PreparedData:
        """The fit's label snapshot as tensors, split into training and validation."""
        config = status.config
        spec = model_spec(config.model)
        snapshot = self.store.fit_snapshot(status.fit_id)
        rows = list(self.store.iter_labels(status.task_id, snapshot))
        if not rows:
            raise ValueError(f"task {status.task_id!r} has no labels to train on")
        raws: list[Any] = []
        kept = []
        skipped = 0
        for row in rows:
            try:
                raws.append(_raw_input(spec.input_kind, item_pb2.Item.FromString(row.item)))
                kept.append(row)
            except FeatureError as exc:
                skipped += 1
                log.warning("item_skipped", item_id=row.item_id, error=str(exc))
        if not kept:
            raise ValueError("no item could be turned into model input")
        labels_seen = [r.machine_label for r in kept] + [
            r.human_label for r in kept if r.human_label is not None
        ]
        num_classes = int(config.params.get("num_classes", "0")) or max(2, max(labels_seen) + 1)
        val_mask = np.array(
            [validation_member(r.item_id, config.validation_fraction) for r in kept], dtype=bool
        )
        if val_mask.all():
            val_mask[:] = False  # never hold out everything
        inputs = prepare_inputs(spec.input_kind, _stack(spec.input_kind, raws))
        machine = np.array([r.machine_label for r in kept], dtype=np.int64)
        human = np.array([-1 if r.human_label is None else r.human_label for r in kept])
        delta = np.array([r.delta for r in kept], dtype=bool)
        pi = np.array([r.pi for r in kept], dtype=np.float64)
        train_idx = torch.from_numpy(np.flatnonzero(~val_mask))
        all_data = ActDataset.from_arrays(inputs, machine, human, delta, pi, num_classes)
        val_rows = np.flatnonzero(val_mask & delta)
        validation = LabelledSet.from_arrays(
            all_data.subset(torch.from_numpy(val_rows)).inputs,
            human[val_rows],
            1.0 / pi[val_rows],
        )
        return PreparedData(
            train=all_data.subset(train_idx),
            validation=validation,
            skipped=skipped,
            num_classes=num_classes,
        )

    def _run(self, status: training_pb2.FitStatus, running: _Running) -> None:
        config = status.config
        resumed = status.state == training_pb2.FIT_STATE_RUNNING
        status.state = training_pb2.FIT_STATE_RUNNING
        if not status.HasField("started_at"):
            status.started_at.CopyFrom(_now())
        self._save(status)
        data = self.prepare(status)
        status.labels_used = len(data.train)
        status.human_labels_used = data.train.reviewed
        status.metrics["skipped_items"] = float(data.skipped)
        status.metrics["validation_items"] = float(len(data.validation))
        self._save(status)
        if status.epoch == 0:  # not announced yet, or interrupted before any epoch (same id)
            self._event(
                status,
                "started",
                started=training_pb2.FitStarted(
                    config=config,
                    labels_used=status.labels_used,
                    human_labels_used=status.human_labels_used,
                ),
            )
        log.info(
            "fit_started",
            fit_id=status.fit_id,
            resumed=resumed,
            labels=status.labels_used,
            human=status.human_labels_used,
        )
        kind = _LOSS_KINDS[config.loss]
        spec = model_spec(config.model)
        params = {k: v for k, v in config.params.items() if k != "num_classes"}
        base = TrainConfig(
            learning_rate=config.learning_rate,
            epochs=config.epochs,
            batch_size=config.batch_size,
            seed=config.seed,
            device=self.settings.device,
            validate_every_epoch=len(data.validation) > 0,
        )

        def make_model() -> torch.nn.Module:
            return build_model(spec.name, data.num_classes, params)

        def cancelled() -> bool:
            return self._check(running)

        try:
            lam = self._select_lambda(status, kind, data, base, make_model, cancelled)
            status.power_lambda_used = lam
            self._save(status)
            state = self._train_final(status, kind, lam, data, base, make_model, cancelled)
        except FitCancelledError:
            self._finish_cancelled(status, running.reason or "cancelled")
            return
        final = self.fit_dir(status.fit_id) / "model.pt"
        self._write_final(final, state, status)
        status.state = training_pb2.FIT_STATE_SUCCEEDED
        status.finished_at.CopyFrom(_now())
        status.checkpoint_uri = final.resolve().as_uri()
        self._save(status)
        self._event(
            status,
            "completed",
            completed=training_pb2.FitCompleted(
                metrics=dict(status.metrics),
                checkpoint_uri=status.checkpoint_uri,
                epochs=state.epoch,
                power_lambda_used=lam,
            ),
        )
        log.info("fit_succeeded", fit_id=status.fit_id, metrics=dict(status.metrics))

    def _select_lambda(
        self,
        status: training_pb2.FitStatus,
        kind: LossKind,
        data: PreparedData,
        base: TrainConfig,
        make_model: Callable[[], torch.nn.Module],
        cancelled: Callable[[], bool],
    ) -> float:
        config = status.config
        default = config.power_lambda if config.HasField("power_lambda") else 1.0
        if status.HasField("power_lambda_used"):
            return float(status.power_lambda_used)  # chosen before an interruption
        grid_values = list(config.power_lambda_grid)
        if kind is not LossKind.ACT or not grid_values:
            return default
        if len(data.validation) == 0:
            log.warning(
                "lambda_search_skipped",
                fit_id=status.fit_id,
                reason="no human-labelled validation items",
            )
            status.metrics["lambda_search_skipped"] = 1.0
            return default
        scores: dict[float, float] = {}
        for lam in grid_values:
            key = f"search/lambda={lam:g}/val_accuracy"
            if key in status.metrics:  # finished before an interruption
                scores[lam] = status.metrics[key]
                continue
            result = grid_search(
                make_model,
                data.train,
                kind,
                data.validation,
                base,
                [Candidate(base.learning_rate, lam)],
                cancel=cancelled,
            )
            scores[lam] = result.best_val_accuracy
            status.metrics[key] = result.best_val_accuracy
            self._save(status)
        valid = {k: v for k, v in scores.items() if not math.isnan(v)}
        if not valid:
            return default
        return max(valid, key=lambda k: (valid[k], -grid_values.index(k)))

    def _train_final(
        self,
        status: training_pb2.FitStatus,
        kind: LossKind,
        lam: float,
        data: PreparedData,
        base: TrainConfig,
        make_model: Callable[[], torch.nn.Module],
        cancelled: Callable[[], bool],
    ) -> TrainState:
        torch.manual_seed(base.seed)
        model = make_model()
        ckpt = self.fit_dir(status.fit_id) / "checkpoint.pt"
        if ckpt.exists():
            model.to(base.device)
            state, extra = load_checkpoint(ckpt, model, make_optimizer(model, base))
            if not math.isclose(float(extra.get("power_lambda", lam)), lam):
                raise RuntimeError("checkpoint was written with another lambda")
            log.info("fit_resumed", fit_id=status.fit_id, epoch=state.epoch)
        else:
            state = new_state(model, base)
        every = self.settings.checkpoint_every

        def on_epoch(st: TrainState, report: EpochReport) -> None:
            status.epoch = report.epoch
            status.metrics["train_loss"] = report.train_loss
            status.metrics["epoch_seconds"] = report.seconds
            for k, v in report.metrics.items():
                status.metrics[k] = v
            self._event(
                status,
                f"epoch/{report.epoch}",
                epoch=training_pb2.EpochCompleted(
                    epoch=report.epoch,
                    train_loss=report.train_loss,
                    metrics=report.metrics,
                ),
            )
            if report.epoch % every == 0 or report.epoch == base.epochs:
                written = save_checkpoint(
                    ckpt, st, extra={"power_lambda": lam, "fit_id": status.fit_id}
                )
                status.checkpoint_uri = ckpt.resolve().as_uri()
                self._write_metrics(status, st)
                self._save(status)
                self._event(
                    status,
                    f"checkpoint/{report.epoch}",
                    checkpoint=training_pb2.CheckpointWritten(
                        checkpoint_uri=status.checkpoint_uri,
                        epoch=report.epoch,
                        sha256=written.sha256,
                    ),
                )
            else:
                self._save(status)

        return train(
            data.train,
            Objective(kind, lam),
            base,
            state,
            validation=data.validation if len(data.validation) else None,
            on_epoch=on_epoch,
            cancel=cancelled,
        )

    def _write_metrics(self, status: training_pb2.FitStatus, state: TrainState) -> None:
        doc = {
            "fit_id": status.fit_id,
            "task_id": status.task_id,
            "epoch": state.epoch,
            "metrics": dict(status.metrics),
            "history": [
                {
                    "epoch": r.epoch,
                    "train_loss": r.train_loss,
                    "seconds": r.seconds,
                    "metrics": r.metrics,
                }
                for r in state.history
            ],
        }
        atomic_write_bytes(
            self.fit_dir(status.fit_id) / "metrics.json", json.dumps(doc, indent=2).encode()
        )

    def _write_final(self, path: Path, state: TrainState, status: training_pb2.FitStatus) -> None:
        import io

        buffer = io.BytesIO()
        torch.save(
            {
                "model": state.model.state_dict(),
                "model_name": status.config.model,
                "config": status.config.SerializeToString(),
                "metrics": dict(status.metrics),
            },
            buffer,
        )
        atomic_write_bytes(path, buffer.getvalue())
        self._write_metrics(status, state)

    def _finish_cancelled(self, status: training_pb2.FitStatus, reason: str) -> None:
        status.state = training_pb2.FIT_STATE_CANCELLED
        status.finished_at.CopyFrom(_now())
        status.error = reason
        self._save(status)
        self._event(status, "cancelled", cancelled=training_pb2.FitCancelled(reason=reason))
        log.info("fit_cancelled", fit_id=status.fit_id, reason=reason)

    def _finish_failed(self, fit_id: str, exc: BaseException) -> None:
        status = self.store.get_fit(fit_id)
        if status is None:
            return
        status.state = training_pb2.FIT_STATE_FAILED
        status.finished_at.CopyFrom(_now())
        status.error = f"{type(exc).__name__}: {exc}"
        self._save(status)
        self._event(
            status,
            "failed",
            failed=training_pb2.FitFailed(error_type=type(exc).__name__, error_message=str(exc)),
        )


def _raw_input(kind: InputKind, item: item_pb2.Item) -> Any:
    if kind is InputKind.IMAGE28:
        which = item.WhichOneof("image")
        if which == "image_bytes":
            return decode_item_image(bytes(item.image_bytes))
        if which == "image_uri":
            return decode_item_image(_read_uri(item.image_uri))
        raise FeatureError("item has no image")
    if kind in (InputKind.MINILM_EMBEDDING, InputKind.TEXT):
        if not item.text.strip():
            raise FeatureError("item has no text")
        return item.text
    raise FeatureError(f"the trainer cannot build {kind} inputs from items")


def _read_uri(uri: str) -> bytes:
    """Resolve a claim-check reference on the local store (``file://`` or a path)."""
    from urllib.parse import unquote, urlparse

    parsed = urlparse(uri)
    if parsed.scheme not in ("", "file"):
        raise FeatureError(f"unsupported image_uri scheme {parsed.scheme!r}")
    try:
        return Path(unquote(parsed.path)).read_bytes()
    except OSError as exc:
        raise FeatureError(f"cannot read {uri}: {exc}") from exc


def _stack(kind: InputKind, raws: Sequence[Any]) -> Any:
    if kind is InputKind.IMAGE28:
        return np.stack(raws).astype(np.uint8)
    return list(raws)


# ------------------------------------------------------------------ the stage


class TaskLookup(Protocol):
    """Task definitions (``services.runtime.tasks.TaskRegistry`` in production)."""

    async def get(self, task_id: str) -> Any:
        """The task or an exception."""
        ...


class TrainerStage(Stage[review_pb2.FinalLabel]):
    """``act.labels`` -> the local training set (no output records)."""

    name = "trainer"
    input_topic = "labels"
    input_type = review_pb2.FinalLabel

    def __init__(
        self,
        settings: TrainerSettings,
        kafka: KafkaSettings | None = None,
        *,
        tasks: TaskLookup | None = None,
        sink: EventSink | None = None,
    ) -> None:
        self.settings = settings
        self.kafka = kafka
        self.tasks = tasks
        if settings.model:
            model_spec(settings.model)  # fail at start-up, not on the first automatic fit
        self.store = TrainerStore(settings.store_path)
        self._kafka_sink = (
            KafkaEventSink(kafka, settings.event_timeout_s) if sink is None and kafka else None
        )
        self.manager = FitManager(self.store, settings, sink or self._kafka_sink or MemorySink())
        self.servicer = TrainingServicer(self)
        self._started = False

    async def start(self) -> None:
        """Open the event producer and the task registry; resume interrupted fits."""
        if self._kafka_sink is not None:
            await self._kafka_sink.start()
        start = getattr(self.tasks, "start", None)
        if start is not None:
            await start()
        self.manager.start()
        self._started = True

    async def stop(self) -> None:
        """Interrupt fits (they resume on restart) and close clients."""
        await asyncio.to_thread(self.manager.stop)
        stop = getattr(self.tasks, "stop", None)
        if stop is not None:
            await stop()
        if self._kafka_sink is not None:
            await self._kafka_sink.stop()
        self.store.close()

    async def task_info(self, task_id: str) -> tuple[int | None, int | None]:
        """(number of classes, modality) of a task when the task registry knows it."""
        if self.tasks is None:
            return None, None
        try:
            task = await self.tasks.get(task_id)
        except Exception:  # unknown task: fall back to what the labels show
            return None, None
        return (len(task.labels) or None), int(task.modality)

    async def default_config(self, task_id: str) -> training_pb2.FitConfig:
        """The config of an automatic fit: the ACT loss, lambda searched on the settings' grid."""
        num_classes, modality = await self.task_info(task_id)
        config = training_pb2.FitConfig(loss=training_pb2.LOSS_KIND_ACT)
        config.power_lambda_grid.extend(self.settings.power_lambda_grid)
        return self.manager.resolve_config(config, num_classes=num_classes, modality=modality)

    async def process(self, envelope: Envelope[review_pb2.FinalLabel]) -> Sequence[Output]:
        """Upsert the label; maybe start an automatic fit. Produces nothing."""
        label = envelope.message
        if not label.item_id or not label.task_id:
            raise PermanentError("final label without item_id or task_id")
        if label.delta and not label.HasField("human_label"):
            raise PermanentError("final label with delta = 1 but no human label")
        result = await asyncio.to_thread(self.store.upsert_label, label)
        threshold = self.settings.min_new_labels
        if (
            result.inserted
            and threshold > 0
            and self.store.labels_since_last_fit(label.task_id) >= threshold
        ):
            config = await self.default_config(label.task_id)
            await asyncio.to_thread(self.manager.maybe_auto_fit, label.task_id, config)
        return []


# -------------------------------------------------------------------- gRPC


class TrainingServicer(api_pb2_grpc.TrainingServiceServicer):  # type: ignore[misc]
    """``act.v1.TrainingService``: start, read, list and cancel fits."""

    MAX_PAGE = 500
    CANCEL_WAIT_S = 5.0

    def __init__(self, stage: TrainerStage) -> None:
        self.stage = stage

    async def StartFit(
        self, request: api_pb2.StartFitRequest, context: grpc.aio.ServicerContext
    ) -> training_pb2.FitStatus:
        """Queue a fit of the task's current labels (idempotent by ``idempotency_key``)."""
        if not request.task_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "task_id is required")
        store = self.stage.store
        if await asyncio.to_thread(store.count_labels, request.task_id) == 0:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION, f"task {request.task_id!r} has no labels yet"
            )
        num_classes, modality = await self.stage.task_info(request.task_id)
        try:
            config = self.stage.manager.resolve_config(
                request.config, num_classes=num_classes, modality=modality
            )
        except (KeyError, ValueError) as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return await asyncio.to_thread(
            self.stage.manager.submit, request.task_id, config, request.idempotency_key
        )

    async def GetFit(
        self, request: api_pb2.GetFitRequest, context: grpc.aio.ServicerContext
    ) -> training_pb2.FitStatus:
        """A fit's status with its latest metrics."""
        status = await asyncio.to_thread(self.stage.store.get_fit, request.fit_id)
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no fit {request.fit_id!r}")
        return status

    async def ListFits(
        self, request: api_pb2.ListFitsRequest, context: grpc.aio.ServicerContext
    ) -> api_pb2.ListFitsResponse:
        """Fits in creation order, paged (``page_token`` is an opaque offset)."""
        size = min(request.page_size or 50, self.MAX_PAGE)
        try:
            offset = int(request.page_token) if request.page_token else 0
        except ValueError:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad page_token")
        fits = await asyncio.to_thread(
            self.stage.store.list_fits, request.task_id or None, offset=offset, limit=size + 1
        )
        token = str(offset + size) if len(fits) > size else ""
        return api_pb2.ListFitsResponse(fits=fits[:size], next_page_token=token)

    async def CancelFit(
        self, request: api_pb2.CancelFitRequest, context: grpc.aio.ServicerContext
    ) -> training_pb2.FitStatus:
        """Cancel a queued or running fit (a running one stops at its next batch)."""
        manager = self.stage.manager
        status = await asyncio.to_thread(
            manager.cancel, request.fit_id, request.reason or "cancelled by request"
        )
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no fit {request.fit_id!r}")
        # A running fit stops at its next batch: wait briefly so the reply says so.
        deadline = time.monotonic() + self.CANCEL_WAIT_S
        while status is not None and status.state not in _TERMINAL:
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
            status = await asyncio.to_thread(self.stage.store.get_fit, request.fit_id)
        return status


def registrations(stage: TrainerStage) -> list[tuple[Any, Any, str]]:
    """The gRPC services the trainer process serves besides health."""
    return [(api_pb2_grpc.add_TrainingServiceServicer_to_server, stage.servicer, SERVICE_NAME)]
