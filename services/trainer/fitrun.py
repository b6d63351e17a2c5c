"""One fit from its label snapshot to ``model.pt``, resumable after a crash.

:class:`FitRunner` moves a fit through its states, records its progress in the
store and emits its training events; :mod:`services.trainer.fitting` decides
what is trained, :class:`~services.trainer.artifacts.FitFiles` writes it. A
fit interrupted by a stopping process stays RUNNING in the store and is run
again after a restart: it reuses the lambda scores it already has, loads its
last checkpoint and sees the batches it would have seen, on the same snapshot.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

import structlog
import torch
from act.v1 import training_pb2

from services.trainer.artifacts import FitFiles
from services.trainer.choices import FitChoice, Search, choose
from services.trainer.events import EventSink, now_timestamp, training_event
from services.trainer.fit import (
    EpochReport,
    FitCancelledError,
    TrainConfig,
    TrainState,
    new_state,
    train,
)
from services.trainer.fitting import (
    PreparedData,
    loss_kind,
    model_factory,
    prepare_data,
    train_config,
)
from services.trainer.items import decode_stored_item
from services.trainer.loss import LossKind, Objective
from services.trainer.publish import build_published_model, status_metrics
from services.trainer.store import TrainerStore

log = structlog.get_logger(__name__)

#: Called with a fit's status after every change that is stored.
StatusListener = Callable[[training_pb2.FitStatus], None]


class FitControl(Protocol):
    """How the fit queue steers the fit it runs."""

    @property
    def reason(self) -> str:
        """Why the fit was cancelled (empty until it is)."""
        ...

    def cancelled(self) -> bool:
        """Whether the fit was cancelled; raises to interrupt it (the process is stopping)."""
        ...


class FitRunner:
    """Runs one fit at a time in the caller's thread (the fit queue's worker)."""

    def __init__(
        self,
        store: TrainerStore,
        sink: EventSink,
        files: FitFiles,
        *,
        device: str = "cpu",
        checkpoint_every: int = 1,
        on_change: StatusListener | None = None,
        publish_models: bool = True,
    ) -> None:
        self.store = store
        self.publish_models = publish_models
        self.sink = sink
        self.files = files
        self.device = device
        self.checkpoint_every = checkpoint_every
        self.on_change = on_change

    def run(self, status: training_pb2.FitStatus, control: FitControl) -> None:
        """Run (or resume) a QUEUED or RUNNING fit to SUCCEEDED or CANCELLED.

        Any exception but the control's interruption should end the fit with
        :meth:`finish_failed`.
        """
        config = status.config
        resumed = status.state == training_pb2.FIT_STATE_RUNNING
        status.state = training_pb2.FIT_STATE_RUNNING
        if not status.HasField("started_at"):
            status.started_at.CopyFrom(now_timestamp())
        self.save(status)
        data = self._prepare(status)
        base = train_config(config, self.device, validate=len(data.validation) > 0)
        make_model = model_factory(config, data.num_classes)
        kind = loss_kind(config)
        try:
            choice = self._choose(status, kind, data, base, make_model, control.cancelled)
        except FitCancelledError:
            self.finish_cancelled(status, control.reason or "cancelled")
            return
        data, lam = choice.data, choice.power_lambda
        status.metrics.update(choice.metrics)
        status.labels_used = len(data.train)
        status.human_labels_used = data.train.reviewed
        status.metrics["skipped_items"] = float(data.skipped)
        status.metrics["validation_items"] = float(len(data.validation))
        status.metrics.update(data.calibration_metrics())
        status.power_lambda_used = lam
        self.save(status)
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
            power_lambda=lam,
            cleaning_applied=choice.metrics.get("cleaning_applied"),
        )
        try:
            state = self._train_final(status, kind, lam, data, base, make_model, control.cancelled)
        except FitCancelledError:
            self.finish_cancelled(status, control.reason or "cancelled")
            return
        final = self.files.write_final(status, state)
        published = self._second_critic(status, state.model, data)
        if published is not None:
            # Before SUCCEEDED: whoever sees the fit succeed can count on the
            # model being on act.models (a crash here republishes it, harmlessly).
            self.sink.publish_model(published)
            log.info(
                "model_published", fit_id=status.fit_id, use_as_critic=published.use_as_critic,
                reason=published.reason,
            )  # fmt: skip
        status.state = training_pb2.FIT_STATE_SUCCEEDED
        status.finished_at.CopyFrom(now_timestamp())
        status.checkpoint_uri = final.resolve().as_uri()
        self.save(status)
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

    def _second_critic(
        self, status: training_pb2.FitStatus, model: torch.nn.Module, data: PreparedData
    ) -> training_pb2.PublishedModel | None:
        """The model to publish for the sampler (:mod:`services.trainer.publish`), its
        metrics added to the status; None when publishing is off or fails (the fit
        has succeeded either way)."""
        if not self.publish_models:
            return None
        try:
            published = build_published_model(status, model, data, device=self.device)
        except Exception as exc:
            log.warning("model_not_published", fit_id=status.fit_id, error=repr(exc))
            return None
        status.metrics.update(status_metrics(published))
        return published

    def finish_cancelled(self, status: training_pb2.FitStatus, reason: str) -> None:
        """Mark a fit CANCELLED and announce it."""
        status.state = training_pb2.FIT_STATE_CANCELLED
        status.finished_at.CopyFrom(now_timestamp())
        status.error = reason
        self.save(status)
        self._event(status, "cancelled", cancelled=training_pb2.FitCancelled(reason=reason))
        log.info("fit_cancelled", fit_id=status.fit_id, reason=reason)

    def finish_failed(self, fit_id: str, exc: BaseException) -> None:
        """Mark a fit FAILED with the exception and announce it."""
        status = self.store.get_fit(fit_id)
        if status is None:
            return
        status.state = training_pb2.FIT_STATE_FAILED
        status.finished_at.CopyFrom(now_timestamp())
        status.error = f"{type(exc).__name__}: {exc}"
        self.save(status)
        self._event(
            status,
            "failed",
            failed=training_pb2.FitFailed(error_type=type(exc).__name__, error_message=str(exc)),
        )

    def changed(self, status: training_pb2.FitStatus) -> None:
        """Tell the listener about a stored change."""
        if self.on_change is not None:
            self.on_change(status)

    def save(self, status: training_pb2.FitStatus) -> None:
        """Store the status (stamped now) and tell the listener."""
        status.updated_at.CopyFrom(now_timestamp())
        self.store.save_fit(status)
        self.changed(status)

    def _event(self, status: training_pb2.FitStatus, suffix: str, **payload: Any) -> None:
        self.sink.publish(training_event(status, suffix, **payload))

    def _prepare(self, status: training_pb2.FitStatus) -> PreparedData:
        # The snapshot fixes the labels at submission: a resumed fit trains on
        # the same items even when more arrived meanwhile.
        snapshot = self.store.fit_snapshot(status.fit_id)
        rows = list(self.store.iter_labels(status.task_id, snapshot))
        if not rows:
            raise ValueError(f"task {status.task_id!r} has no labels to train on")
        return prepare_data(rows, status.config, decode_stored_item)

    def _choose(
        self,
        status: training_pb2.FitStatus,
        kind: LossKind,
        data: PreparedData,
        base: TrainConfig,
        make_model: Callable[[], torch.nn.Module],
        cancelled: Callable[[], bool],
    ) -> FitChoice:
        """The fit's cleaning and lambda (:func:`services.trainer.choices.choose`).

        Every validation score is saved on the status as it comes, so a
        resumed fit re-derives the same choice without training again (only
        the cleaning's judge is trained again, seeded like the first time).
        """

        def record(key: str, score: float) -> None:
            status.metrics[key] = score
            self.save(status)

        search = Search(status.config, kind, base, make_model, cancelled, status.metrics, record)
        choice = choose(search, data)
        if choice.lambda_skipped:
            log.warning(
                "lambda_search_skipped",
                fit_id=status.fit_id,
                reason="no human-labelled validation items",
            )
            choice.metrics["lambda_search_skipped"] = 1.0
        return choice

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
        loaded = self.files.load_checkpoint(status.fit_id, model, base)
        if loaded is not None:
            state, extra = loaded
            if not math.isclose(float(extra.get("power_lambda", lam)), lam):
                raise RuntimeError("checkpoint was written with another lambda")
            log.info("fit_resumed", fit_id=status.fit_id, epoch=state.epoch)
        else:
            state = new_state(model, base)
        every = self.checkpoint_every

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
                written = self.files.save_checkpoint(
                    status.fit_id, st, {"power_lambda": lam, "fit_id": status.fit_id}
                )
                status.checkpoint_uri = written.path.resolve().as_uri()
                self.files.write_metrics(status, st)
                self.save(status)
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
                self.save(status)

        return train(
            data.train,
            Objective(kind, lam),
            base,
            state,
            validation=data.validation if len(data.validation) else None,
            on_epoch=on_epoch,
            cancel=cancelled,
        )
