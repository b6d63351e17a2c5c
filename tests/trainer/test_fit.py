"""Training loop, checkpoints (atomic, exact resume), models and the grid search."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from services.trainer import checkpoint as ckpt
from services.trainer.data import ActDataset, LabelledSet
from services.trainer.fit import TrainConfig, accuracy, make_optimizer, new_state, train
from services.trainer.hpo import Candidate, grid, grid_search
from services.trainer.loss import LossKind, Objective
from services.trainer.networks import (
    InputKind,
    NetworkSpec,
    build_network,
    network_names,
    register_network,
)
from tests.trainer.support import blob_image


def _data(n: int = 256, seed: int = 0) -> tuple[ActDataset, LabelledSet]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    images = np.stack([blob_image(int(c), rng) for c in y])
    x = torch.from_numpy(images).unsqueeze(1)
    machine = np.where(rng.random(n) < 0.3, (y + 1) % 4, y)
    delta = rng.random(n) < 0.3
    pi = np.where(delta, 0.5, 0.2)
    data = ActDataset.from_arrays(x, machine, y, delta, pi, 4)
    return data, LabelledSet.from_arrays(x, y)


def _params(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.state_dict().values()]


def test_resume_from_a_checkpoint_gives_the_uninterrupted_result(tmp_path: Path) -> None:
    data, _ = _data()
    cfg = TrainConfig(learning_rate=1e-3, epochs=4, batch_size=32, seed=3)
    objective = Objective(LossKind.ACT, 0.8)

    torch.manual_seed(3)
    straight = train(data, objective, cfg, new_state(build_network("cnn-28x28", 4), cfg))

    torch.manual_seed(3)
    half = train(
        data, objective, replace(cfg, epochs=2), new_state(build_network("cnn-28x28", 4), cfg)
    )
    path = tmp_path / "c.pt"
    written = ckpt.save_checkpoint(path, half, extra={"lam": 0.8})
    assert written.epoch == 2 and len(written.sha256) == 64
    torch.manual_seed(999)  # a restarted process has other RNG state ...
    np.random.seed(999)
    model = build_network("cnn-28x28", 4)
    state, extra = ckpt.load_checkpoint(path, model, make_optimizer(model, cfg))
    assert extra == {"lam": 0.8} and state.epoch == 2 and len(state.history) == 2
    resumed = train(data, objective, cfg, state)  # ... which the checkpoint restores
    assert resumed.epoch == 4
    assert [r.epoch for r in resumed.history] == [1, 2, 3, 4]
    for a, b in zip(_params(straight.model), _params(resumed.model), strict=True):
        assert torch.equal(a, b)


def test_checkpoint_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data, _ = _data(64)
    cfg = TrainConfig(epochs=1, batch_size=32)
    state = train(
        data, Objective(LossKind.MACHINE_ONLY), cfg, new_state(build_network("cnn-28x28", 4), cfg)
    )
    path = tmp_path / "c.pt"
    ckpt.save_checkpoint(path, state)
    before = path.read_bytes()

    def boom(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    state.epoch = 7
    with pytest.raises(OSError):
        ckpt.save_checkpoint(path, state)
    assert path.read_bytes() == before  # the old checkpoint is intact
    assert os.listdir(tmp_path) == ["c.pt"]  # and no temporary file is left
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    model = build_network("cnn-28x28", 4)
    with pytest.raises(ValueError, match="not an ACT trainer checkpoint"):
        ckpt.load_checkpoint(tmp_path / "junk.pt", model, make_optimizer(model, cfg))


def test_training_learns_and_weighted_accuracy() -> None:
    data, test = _data(400)
    cfg = TrainConfig(learning_rate=2e-3, epochs=4, batch_size=32)
    torch.manual_seed(0)
    state = train(
        data,
        Objective(LossKind.HUMAN_ONLY),
        cfg,
        new_state(build_network("cnn-28x28", 4), cfg),
        validation=test,
    )
    assert state.history[-1].metrics["val_accuracy"] > 0.9
    assert state.history[-1].train_loss < state.history[0].train_loss
    # Weights: only the weighted items count.
    x, y = test.inputs, test.labels
    assert isinstance(x, torch.Tensor)
    wrong = LabelledSet.from_arrays(x, (y + 1) % 4)
    assert accuracy(state.model, wrong) < 0.1
    mixed = LabelledSet.from_arrays(
        torch.cat([x[:10], x[:10]]),
        torch.cat([y[:10], (y[:10] + 1) % 4]),
        np.r_[np.ones(10), np.zeros(10)],
    )
    assert accuracy(state.model, mixed) == accuracy(
        state.model, LabelledSet.from_arrays(x[:10], y[:10])
    )


def test_cancel_stops_between_batches() -> None:
    from services.trainer.fit import FitCancelledError

    data, _ = _data(128)
    cfg = TrainConfig(epochs=3, batch_size=16)
    calls = []

    def cancel() -> bool:
        calls.append(1)
        return len(calls) > 3

    with pytest.raises(FitCancelledError):
        train(
            data,
            Objective(LossKind.ACT),
            cfg,
            new_state(build_network("cnn-28x28", 4), cfg),
            cancel=cancel,
        )


def test_grid_search_selects_on_validation_and_starts_every_candidate_alike() -> None:
    data, val = _data(300)
    cfg = TrainConfig(epochs=2, batch_size=32, seed=1)
    inits: list[list[torch.Tensor]] = []

    def make() -> torch.nn.Module:
        m = build_network("cnn-28x28", 4)
        inits.append(_params(m))
        return m

    cands = [Candidate(1e-7, 1.0), Candidate(3e-3, 0.6), Candidate(1e-7, 0.8)]
    result = grid_search(make, data, LossKind.ACT, val, cfg, cands)
    assert result.best == Candidate(3e-3, 0.6)
    assert [r.candidate for r in result.results] == cands
    assert result.best_val_accuracy == max(r.val_accuracy for r in result.results)
    for a, b in zip(inits[0], inits[1], strict=True):
        assert torch.equal(a, b)
    assert grid(LossKind.ACT_DATA_CE, [1e-3, 1e-4], [0.6, 1.0]) == [
        Candidate(1e-3, 1.0),
        Candidate(1e-4, 1.0),
    ]
    assert len(grid(LossKind.ACT, [1e-3, 1e-4], [0.6, 0.8, 1.0])) == 6
    with pytest.raises(ValueError):
        grid_search(
            make,
            data,
            LossKind.ACT,
            LabelledSet.from_arrays(val.inputs[:0], val.labels[:0]),
            cfg,
            cands,
        )


def test_any_module_plugs_in() -> None:
    class Linear(torch.nn.Module):
        def __init__(self, classes: int) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(28 * 28, classes)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.fc(x.float().flatten(1) / 255.0)
            return out

    register_network(
        NetworkSpec("test-linear", InputKind.IMAGE28, lambda k, p: Linear(k), (1e-2,), 1e-2, 2, 32),
        replace=True,
    )
    assert "test-linear" in network_names()
    data, val = _data(200)
    cfg = TrainConfig(learning_rate=1e-2, epochs=3, batch_size=32)
    state = train(
        data,
        Objective(LossKind.ACT, 0.9),
        cfg,
        new_state(build_network("test-linear", 4), cfg),
        validation=val,
    )
    assert state.history[-1].metrics["val_accuracy"] > 0.5
    with pytest.raises(KeyError, match="unknown model"):
        build_network("no-such-model", 4)


def test_act_dataset_validation() -> None:
    x = torch.zeros(3, 1, 28, 28, dtype=torch.uint8)
    with pytest.raises(ValueError, match="pi <= 0"):
        ActDataset.from_arrays(x, [0, 1, 0], [0, 1, 0], [True, False, False], [0.0, 0.0, 0.0], 2)
    with pytest.raises(ValueError, match="machine labels"):
        ActDataset.from_arrays(x, [0, 2, 0], [0, 1, 0], [True, False, False], [1, 0, 0], 2)
    with pytest.raises(ValueError, match="human labels"):
        ActDataset.from_arrays(x, [0, 1, 0], [-1, 1, 0], [True, False, False], [1, 0, 0], 2)
    d = ActDataset.from_arrays(x, [0, 1, 0], [1, -1, -1], [True, False, False], [0.5, 0, 0], 2)
    assert d.human_filled.tolist() == [1, 1, 0]
    assert d.weight.tolist() == [2.0, 0.0, 0.0]
    assert len(d.reviewed_only()) == 1


def test_text_models_train_on_minilm() -> None:
    """The MiniLM head (cached embeddings) and the fine-tuned encoder both plug in."""
    from services.trainer.features import prepare_inputs
    from services.trainer.networks import network_spec

    texts = [f"cheap pills offer number {i} click now" for i in range(12)] + [
        f"meeting notes for project {i} attached" for i in range(12)
    ]
    labels = np.array([1] * 12 + [0] * 12)
    head = network_spec("minilm-head")
    x = prepare_inputs(head.input_kind, texts)
    assert isinstance(x, torch.Tensor) and tuple(x.shape) == (24, 384)
    data = ActDataset.from_arrays(x, labels, labels, np.ones(24, bool), np.ones(24), 2)
    cfg = TrainConfig(learning_rate=1e-2, epochs=10, batch_size=8)
    torch.manual_seed(0)
    state = train(
        data, Objective(LossKind.ACT), cfg, new_state(build_network("minilm-head", 2), cfg)
    )
    assert accuracy(state.model, LabelledSet.from_arrays(x, labels)) == 1.0
    # End to end: gradients reach the encoder.
    tuned = build_network("minilm-finetune", 2, {"max_seq_length": "16"})
    text_data = ActDataset.from_arrays(
        texts[:4], labels[:4], labels[:4], np.ones(4, bool), np.ones(4), 2
    )
    before = next(p.detach().clone() for p in tuned.parameters() if p.requires_grad)
    cfg2 = TrainConfig(learning_rate=1e-3, epochs=1, batch_size=4)
    train(text_data, Objective(LossKind.ACT_DATA_CE), cfg2, new_state(tuned, cfg2))
    after = next(p.detach() for p in tuned.parameters() if p.requires_grad)
    assert not torch.equal(before, after)
