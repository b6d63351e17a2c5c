"""The training loop: any model, any objective of :mod:`services.trainer.loss`, resumable.

A fit is a sequence of epochs over the ACT data set in minibatches. Epoch
``e`` shuffles with a generator seeded by ``(seed, e)`` alone, so a fit
resumed from a checkpoint after epoch ``e`` sees exactly the batches it
would have seen without the interruption; the global torch RNG (dropout) is
saved in the checkpoint and restored (:mod:`services.trainer.checkpoint`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn

from services.trainer.data import ActDataset, Inputs, LabelledSet, input_count, take
from services.trainer.loss import LossKind, Objective

OptimizerName = Literal["adam", "adamw", "sgd"]


class FitCancelledError(RuntimeError):
    """The fit was cancelled (``cancel()`` returned True between two batches)."""


class DivergedError(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """Optimisation settings of one fit (appendix A.3: Adam, fixed epochs)."""

    learning_rate: float = 1e-3
    epochs: int = 5
    batch_size: int = 128
    weight_decay: float = 0.0
    optimizer: OptimizerName = "adam"
    seed: int = 0
    device: str = "cpu"
    #: Evaluate the validation set after every epoch (else only at the end).
    validate_every_epoch: bool = False
    #: Stop with DivergedError on a non-finite loss (else keep going: the paper's
    #: normalization rule "collapses" rather than stops, and Table 3 reports it).
    stop_on_divergence: bool = False

    def __post_init__(self) -> None:
        if self.learning_rate <= 0 or self.epochs < 0 or self.batch_size < 1:
            raise ValueError("need learning_rate > 0, epochs >= 0 and batch_size >= 1")


@dataclass(slots=True)
class EpochReport:
    """What one epoch did."""

    epoch: int  # 1-based
    train_loss: float
    seconds: float
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(slots=True)
class TrainState:
    """A fit in progress: the model, its optimizer and the last completed epoch."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    epoch: int = 0
    history: list[EpochReport] = field(default_factory=list)


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer the config names, over the trainable parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    lr, wd = config.learning_rate, config.weight_decay
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=wd)


def epoch_permutation(n: int, seed: int, epoch: int) -> Tensor:
    """The item order of ``epoch`` (1-based): a function of ``(seed, epoch)`` only."""
    gen = torch.Generator()
    gen.manual_seed((int(seed) * 1_000_003 + int(epoch)) % (2**63))
    return torch.randperm(n, generator=gen)


def _to(inputs: Inputs, device: str) -> Inputs:
    return inputs.to(device) if isinstance(inputs, Tensor) else inputs


def new_state(model: nn.Module, config: TrainConfig) -> TrainState:
    """A fresh state: the model on its device and a new optimizer."""
    model.to(config.device)
    return TrainState(model=model, optimizer=make_optimizer(model, config))


def train(
    data: ActDataset,
    objective: Objective,
    config: TrainConfig,
    state: TrainState,
    *,
    validation: LabelledSet | None = None,
    on_epoch: Callable[[TrainState, EpochReport], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> TrainState:
    """Train ``state`` from epoch ``state.epoch + 1`` to ``config.epochs``.

    The human-only baseline trains on the reviewed items only. ``on_epoch``
    runs after each epoch (checkpoints, events); ``cancel`` is polled between
    batches and raises :class:`FitCancelledError`.
    """
    if data.trust is not None and objective.kind is not LossKind.ACT:
        raise ValueError(f"per-row trust applies to the ACT loss only, not {objective.kind}")
    if objective.uses_only_reviewed:
        data = data.reviewed_only()
    n = len(data)
    device = config.device
    inputs = _to(data.inputs, device)
    machine = data.machine.to(device)
    human_filled = data.human_filled.to(device)
    weight = data.weight.to(device)
    delta = data.delta.to(device)
    trust = None if data.trust is None else data.trust.to(device)
    model, optimizer = state.model, state.optimizer
    for epoch in range(state.epoch + 1, config.epochs + 1):
        started = time.perf_counter()
        model.train()
        order = epoch_permutation(n, config.seed, epoch).to(device)
        total, seen = 0.0, 0
        losses: list[Tensor] = []
        for start in range(0, n, config.batch_size):
            if cancel is not None and cancel():
                raise FitCancelledError("fit cancelled")
            idx = order[start : start + config.batch_size]
            logits = model(take(inputs, idx))
            loss = objective.batch_loss(
                logits,
                machine[idx],
                human_filled[idx],
                weight[idx],
                delta[idx],
                None if trust is None else trust[idx],
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            # Summing detached losses on the device avoids a host sync per batch.
            losses.append(loss.detach() * idx.numel())
            seen += idx.numel()
        if losses:
            total = float(torch.stack(losses).sum())
        train_loss = total / max(seen, 1)
        if not math.isfinite(train_loss) and config.stop_on_divergence:
            raise DivergedError(f"training loss is {train_loss} in epoch {epoch}")
        report = EpochReport(epoch=epoch, train_loss=train_loss, seconds=0.0)
        if validation is not None and (config.validate_every_epoch or epoch == config.epochs):
            report.metrics["val_accuracy"] = accuracy(model, validation, device=device)
        report.seconds = time.perf_counter() - started
        state.epoch = epoch
        state.history.append(report)
        if on_epoch is not None:
            on_epoch(state, report)
    return state


@torch.no_grad()
def _logits_map(
    model: nn.Module, inputs: Inputs, batch_size: int, device: str, head: Callable[[Tensor], Tensor]
) -> list[Tensor]:
    model.eval()
    n = input_count(inputs)
    out: list[Tensor] = []
    for start in range(0, n, batch_size):
        idx = torch.arange(start, min(start + batch_size, n))
        out.append(head(model(_to(take(inputs, idx), device))).cpu())
    return out


def predict(
    model: nn.Module, inputs: Inputs, *, batch_size: int = 1024, device: str = "cpu"
) -> Tensor:
    """Predicted class of every input (eval mode), on the CPU."""
    out = _logits_map(model, inputs, batch_size, device, lambda z: z.argmax(dim=-1))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.int64)


def predict_proba(
    model: nn.Module, inputs: Inputs, *, batch_size: int = 1024, device: str = "cpu"
) -> Tensor:
    """Softmax class probabilities of every input (eval mode), shape (N, K), on the CPU."""
    out = _logits_map(model, inputs, batch_size, device, lambda z: z.softmax(dim=-1))
    return torch.cat(out) if out else torch.zeros(0, 0)


def accuracy(
    model: nn.Module, data: LabelledSet, *, batch_size: int = 1024, device: str = "cpu"
) -> float:
    """Accuracy against the human labels (weighted by ``data.weights`` when given)."""
    if len(data) == 0:
        return float("nan")
    correct = predict(model, data.inputs, batch_size=batch_size, device=device) == data.labels
    if data.weights is None:
        return float(correct.double().mean())
    total = float(data.weights.sum())
    return float((correct.double() * data.weights).sum() / total) if total > 0 else float("nan")
