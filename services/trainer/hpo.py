"""Hyper-parameter search over the learning rate and lambda (paper, appendix A.3).

Appendix A.3 searches the learning rate over four values per model family and
the power-tuning parameter of the ACT losses over ``[0.6, 0.7, 0.8, 0.9, 1.0]``
(appendix E). The paper does not say what the search is scored on; here it is
**accuracy against human labels on a validation set that is not trained on**,
never machine labels (which would reward fitting the annotator's mistakes) and
never the test set:

* in experiments, a small uniformly drawn human-labelled set, the kind of set
  the paper's section 4.3 already asks for to choose annotator and critic;
* in the trainer service, the reviewed (``delta = 1``) items of a held-out
  slice of the data, weighted by ``1 / pi`` (self-normalised Horvitz-Thompson),
  which estimates accuracy over every item that could have been reviewed
  (all of them when the sampler uses a ``pi_min`` floor; with plain
  thresholding only the high-eps region, since ``pi = 0`` elsewhere).

Every candidate starts from the same initial weights (torch seeded with the
fit's seed), so candidates differ only in what is searched.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch
from torch import nn

from services.trainer.data import ActDataset, LabelledSet
from services.trainer.fit import TrainConfig, accuracy, new_state, train
from services.trainer.loss import LossKind, Objective

#: Appendix A.3: the power-tuning grid of every ACT loss.
PAPER_LAMBDA_GRID: tuple[float, ...] = (0.6, 0.7, 0.8, 0.9, 1.0)
#: Appendix A.3: the ResNet18 learning-rate grid (Adam).
PAPER_RESNET_LR_GRID: tuple[float, ...] = (1e-2, 1e-3, 5e-4, 1e-4)
#: Appendix A.3: the RoBERTa learning-rate grid (AdamW).
PAPER_ROBERTA_LR_GRID: tuple[float, ...] = (1e-4, 5e-5, 2e-5, 1e-5)


@dataclass(frozen=True, slots=True)
class Candidate:
    """One point of the grid."""

    learning_rate: float
    power_lambda: float = 1.0


@dataclass(frozen=True, slots=True)
class CandidateResult:
    """A trained candidate's validation accuracy (NaN when it diverged)."""

    candidate: Candidate
    val_accuracy: float
    seconds: float


@dataclass
class SearchResult:
    """The selected candidate, its trained model and every candidate's score."""

    best: Candidate
    best_val_accuracy: float
    model: nn.Module
    results: list[CandidateResult]


def grid(
    kind: LossKind, learning_rates: Sequence[float], lambdas: Sequence[float] = PAPER_LAMBDA_GRID
) -> list[Candidate]:
    """The candidates of a loss kind: lambda is searched for the ACT loss only."""
    lams = tuple(lambdas) if kind in (LossKind.ACT, LossKind.ACT_NONNEG) else (1.0,)
    if not learning_rates or not lams:
        raise ValueError("the grid is empty")
    return [Candidate(lr, lam) for lr in learning_rates for lam in lams]


def grid_search(
    make_model: Callable[[], nn.Module],
    data: ActDataset,
    kind: LossKind,
    validation: LabelledSet,
    base: TrainConfig,
    candidates: Sequence[Candidate],
    *,
    on_result: Callable[[CandidateResult], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> SearchResult:
    """Train every candidate and keep the one with the best validation accuracy.

    Ties go to the earlier candidate. A candidate whose validation accuracy
    is NaN (diverged) never wins unless all do.
    """
    if len(validation) == 0:
        raise ValueError(
            "hyper-parameter selection needs a non-empty human-labelled validation set"
        )
    best: tuple[float, int, Candidate, nn.Module] | None = None
    results: list[CandidateResult] = []
    for i, cand in enumerate(candidates):
        started = time.perf_counter()
        torch.manual_seed(base.seed)
        model = make_model()
        config = replace(base, learning_rate=cand.learning_rate)
        state = train(
            data,
            Objective(kind, cand.power_lambda),
            config,
            new_state(model, config),
            cancel=cancel,
        )
        score = accuracy(state.model, validation, device=config.device)
        result = CandidateResult(cand, score, time.perf_counter() - started)
        results.append(result)
        if on_result is not None:
            on_result(result)
        key = -1.0 if math.isnan(score) else score
        if best is None or key > best[0]:
            best = (key, i, cand, state.model)
    assert best is not None
    return SearchResult(
        best=best[2],
        best_val_accuracy=results[best[1]].val_accuracy,
        model=best[3],
        results=results,
    )
