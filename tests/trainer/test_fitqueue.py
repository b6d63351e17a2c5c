"""The trainer's fit queue and fit runs: lambda selection, checkpoints, resume, cancel."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from act.v1 import training_pb2

from services.sampler.second_critic import load_model
from services.trainer.events import MemorySink
from services.trainer.factory import build_fit_queue
from services.trainer.fitqueue import FitQueue
from services.trainer.fitting import resolve_config, validation_member
from services.trainer.networks import build_network
from services.trainer.settings import TrainerSettings
from services.trainer.store import TrainerStore
from tests.trainer.support import TASK, make_label, trainer_settings

N = 240


def _filled_store(path: Path, n: int = N) -> TrainerStore:
    store = TrainerStore(path)
    for i in range(n):
        store.upsert_label(make_label(i))
    return store


def _config(settings: TrainerSettings, **kw: object) -> training_pb2.FitConfig:
    fields: dict[str, object] = {
        "model": "cnn-28x28",
        "epochs": 3,
        "batch_size": 32,
        "loss": training_pb2.LOSS_KIND_ACT,
        "seed": 1,
        "validation_fraction": 0.2,
    }
    config = training_pb2.FitConfig(**{**fields, **kw})
    return resolve_config(config, settings, num_classes=4)


def _run_fit(tmp_path: Path, **config: object) -> training_pb2.FitStatus:
    """One fit of the filled store with ``config`` overrides, run to the end."""
    settings = trainer_settings(tmp_path)
    store = _filled_store(settings.store_path)
    manager = build_fit_queue(store, settings, MemorySink())
    manager.start()
    try:
        status = manager.submit(TASK, _config(settings, **config))
        assert manager.wait_idle(300)
    finally:
        manager.stop()
    final = store.get_fit(status.fit_id)
    assert final is not None
    return final


def _ids(sink: MemorySink) -> list[str]:
    return [e.event_id.split("/", 1)[1] for e in sink.events]


def test_a_fit_selects_lambda_checkpoints_every_epoch_and_reports(tmp_path: Path) -> None:
    settings = trainer_settings(tmp_path)
    store = _filled_store(settings.store_path)
    sink = MemorySink()
    manager = build_fit_queue(store, settings, sink)
    manager.start()
    try:
        status = manager.submit(TASK, _config(settings, power_lambda_grid=[0.6, 1.0]))
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
    # The critic's calibration on the reviews (every 3rd item, pi = 0.5): eps 0.8
    # exactly where the machine is wrong (every 5th), 0.1 elsewhere.
    reviewed = [i for i in range(N) if i % 3 == 0]
    assert final.metrics["eps_calibration_reviews"] == len(reviewed)
    assert final.metrics["eps_calibration_identity"] == 0.0
    assert final.metrics["machine_error_rate_estimate"] == pytest.approx(
        sum(i % 5 == 0 for i in reviewed) / len(reviewed)
    )
    assert final.metrics["eps_calibrated_at_0.1"] < 0.01
    assert final.metrics["eps_calibrated_at_0.9"] > 0.99
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
    # The model is published for the sampler (the feedback loop), but not as a
    # critic: 16 validation reviews are too few to show that fusing helps.
    (published,) = sink.models
    assert (published.task_id, published.fit_id) == (TASK, status.fit_id)
    assert not published.use_as_critic and "too few" in published.reason
    assert final.metrics["second_critic_used"] == 0.0
    assert final.metrics["second_critic_fusion_reviews"] == final.metrics["validation_items"]
    network = load_model(published).network
    saved = torch.load(fit_dir / "model.pt", weights_only=True)
    reference = build_network("cnn-28x28", 4)
    reference.load_state_dict(saved["model"])
    images = torch.randint(0, 255, (5, 1, 28, 28), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.equal(network(images), reference.eval()(images))


class _StopAfter(MemorySink):
    """Simulates a process stop right after a given event (the fit stays RUNNING)."""

    def __init__(self, event: str) -> None:
        super().__init__()
        self.event = event
        self.manager: FitQueue | None = None

    def publish(self, event: training_pb2.TrainingEvent) -> None:
        super().publish(event)
        if event.event_id.endswith(self.event) and self.manager is not None:
            self.manager._stop.set()


def test_an_interrupted_fit_resumes_from_its_checkpoint_and_matches(tmp_path: Path) -> None:
    # Reference: the same fit, never interrupted.
    ref_settings = trainer_settings(tmp_path / "ref")
    ref_store = _filled_store(ref_settings.store_path)
    ref = build_fit_queue(ref_store, ref_settings, MemorySink())
    ref.start()
    ref_fit = ref.submit(TASK, _config(ref_settings, power_lambda=0.7, epochs=4))
    assert ref.wait_idle(300)
    ref.stop()

    settings = trainer_settings(tmp_path / "run")
    store = _filled_store(settings.store_path)
    sink = _StopAfter("checkpoint/2")
    first = build_fit_queue(store, settings, sink)
    sink.manager = first
    first.start()
    fit = first.submit(TASK, _config(settings, power_lambda=0.7, epochs=4))
    first._thread.join(120)  # type: ignore[union-attr]
    interrupted = store.get_fit(fit.fit_id)
    assert interrupted is not None
    assert interrupted.state == training_pb2.FIT_STATE_RUNNING and interrupted.epoch == 2
    # More labels arrive meanwhile: the fit keeps its snapshot.
    for i in range(N, N + 30):
        store.upsert_label(make_label(i))
    resumed_sink = MemorySink()
    second = build_fit_queue(store, settings, resumed_sink)
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
    settings = trainer_settings(tmp_path)
    store = _filled_store(settings.store_path, 60)
    sink = MemorySink()
    manager = build_fit_queue(store, settings, sink)
    # Not started: the fit stays queued and is cancelled directly.
    queued = manager.submit(TASK, _config(settings))
    cancelled = manager.cancel(queued.fit_id, "not needed")
    assert cancelled is not None and cancelled.state == training_pb2.FIT_STATE_CANCELLED
    assert cancelled.error == "not needed"
    assert manager.cancel("missing") is None
    # A fit whose labels do not fit its class count fails with the reason.
    bad = manager.submit(
        TASK,
        resolve_config(
            training_pb2.FitConfig(model="cnn-28x28", epochs=1), settings, num_classes=2
        ),
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
        resolve_config(training_pb2.FitConfig(power_lambda=1.5), settings)
    with pytest.raises(KeyError):
        resolve_config(training_pb2.FitConfig(model="nope"), settings)


def test_the_agreement_filter_drops_the_wrong_unreviewed_machine_labels(tmp_path: Path) -> None:
    """A model of the reviewed items' human labels disagrees with the machine where
    the machine is wrong (every 5th item); those unreviewed rows are not trained on."""
    final = _run_fit(tmp_path, cleaning=training_pb2.LABEL_CLEANING_AGREEMENT)
    assert final.state == training_pb2.FIT_STATE_SUCCEEDED, final.error
    train_ids = [i for i in range(N) if not validation_member(f"item-{i:05d}", 0.2)]
    wrong_unreviewed = [i for i in train_ids if i % 5 == 0 and i % 3 != 0]
    dropped = final.metrics["cleaning_dropped"]
    # The blob task is easy: the judge finds nearly every wrong label and drops
    # almost nothing else.
    assert 0.9 * len(wrong_unreviewed) <= dropped <= len(wrong_unreviewed) + 0.03 * len(train_ids)
    assert final.labels_used == len(train_ids) - dropped
    assert final.human_labels_used == sum(i % 3 == 0 for i in train_ids)  # never dropped
    assert final.metrics["cleaning_judge_val_accuracy"] > 0.8
    assert final.config.cleaning == training_pb2.LABEL_CLEANING_AGREEMENT


def test_auto_cleaning_trains_on_the_variant_with_the_better_validation_accuracy(
    tmp_path: Path,
) -> None:
    """LABEL_CLEANING_AUTO scores lambda on the data with and without the agreement
    filter and trains the better one (a tie keeps every label); the metrics say which."""
    final = _run_fit(
        tmp_path, cleaning=training_pb2.LABEL_CLEANING_AUTO, power_lambda_grid=[0.6, 1.0]
    )
    assert final.state == training_pb2.FIT_STATE_SUCCEEDED, final.error
    m = final.metrics
    scores = {
        (variant, lam): m[f"search/cleaning={variant}/lambda={lam}/val_accuracy"]
        for variant in ("none", "agreement")
        for lam in ("0.6", "1")
    }
    best = {v: max(s for (w, _), s in scores.items() if w == v) for v in ("none", "agreement")}
    applied = best["agreement"] > best["none"]
    assert m["cleaning_applied"] == float(applied)
    chosen = "agreement" if applied else "none"
    assert scores[(chosen, f"{final.power_lambda_used:g}")] == best[chosen]
    train_ids = [i for i in range(N) if not validation_member(f"item-{i:05d}", 0.2)]
    dropped = m["cleaning_dropped"] if applied else 0.0
    assert m["cleaning_dropped"] > 0  # the judge found wrong labels either way
    assert final.labels_used == len(train_ids) - dropped


def test_auto_cleaning_drops_nothing_without_validation_items(tmp_path: Path) -> None:
    final = _run_fit(tmp_path, cleaning=training_pb2.LABEL_CLEANING_AUTO, validation_fraction=1e-9)
    assert final.state == training_pb2.FIT_STATE_SUCCEEDED, final.error
    assert final.metrics["validation_items"] == 0  # 1e-9 of 240 ids
    assert final.metrics["cleaning_applied"] == 0.0
    assert final.metrics["cleaning_skipped"] == 1.0
    assert final.labels_used == N


def test_calibrated_eps_weighting_trusts_each_machine_label_by_its_recalibrated_eps(
    tmp_path: Path,
) -> None:
    """The critic's eps (0.8 where the machine is wrong, 0.1 elsewhere) recalibrated
    on the reviews is ~1 and ~0, so the unreviewed rows' mean trust is ~ the share
    of right machine labels among them."""
    weighting = training_pb2.MACHINE_LABEL_WEIGHTING_CALIBRATED_EPS
    final = _run_fit(tmp_path, machine_label_weighting=weighting)
    assert final.state == training_pb2.FIT_STATE_SUCCEEDED, final.error
    train_ids = [i for i in range(N) if not validation_member(f"item-{i:05d}", 0.2)]
    unreviewed = [i for i in train_ids if i % 3 != 0]
    right = sum(i % 5 != 0 for i in unreviewed) / len(unreviewed)
    assert final.metrics["machine_label_trust_mean"] == pytest.approx(right, abs=0.02)
    assert final.metrics["val_accuracy"] > 0.8
    with pytest.raises(ValueError, match="ACT loss only"):
        _config(
            trainer_settings(tmp_path),
            loss=training_pb2.LOSS_KIND_ACT_DATA_CE,
            machine_label_weighting=weighting,
        )


def test_the_non_negative_act_loss_is_a_fit_option_with_its_own_lambda_search(
    tmp_path: Path,
) -> None:
    final = _run_fit(tmp_path, loss=training_pb2.LOSS_KIND_ACT_NONNEG, power_lambda_grid=[0.6, 1.0])
    assert final.state == training_pb2.FIT_STATE_SUCCEEDED, final.error
    assert "search/lambda=0.6/val_accuracy" in final.metrics
    assert "search/lambda=1/val_accuracy" in final.metrics
    assert final.power_lambda_used in (0.6, 1.0)
    assert final.metrics["val_accuracy"] > 0.8
