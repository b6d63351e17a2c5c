"""Where a row's reviews come from: the critic, a baseline's stand-in critic, or the feedback loop.

Baseline critics (:func:`critic_eps`): a uniformly random ranking (under
thresholding, human labels on a uniform random subset of size B), the same
eps for every item (under normalization, ``pi = B/N``: the random-critic ACT
of the paper's ablations) and the oracle (eps high exactly where the machine
label is wrong: the upper bound any critic can reach).

The feedback loop (:func:`feedback_reviews`) spends the budget in rounds. The
first round reviews the items the critic finds most suspicious. Before each
later round the downstream model is trained on the data known so far (the
human label where reviewed, the machine label elsewhere) and its probability
that the machine label is wrong, ``1 - p_model(y_m | x)``, becomes a second
critic. The annotator's and the critic's mistakes are shared (on Fashion-MNIST
the critic agrees with 99.8% of the wrong labels thresholding leaves), the
downstream model's are not, as in confident learning, which ranks labels by
out-of-sample model probabilities (Northcutt, Jiang and Chuang, "Confident
learning", JAIR 70, 2021) and active label cleaning, which spends the relabel
budget on the ranking of such a model (Bernhardt et al., Nature
Communications 13, 2022). The two critics are fused by logistic stacking fit
on the items reviewed so far (:func:`services.core.fusion.fit_eps_fusion`).

Cross-fitting keeps the second critic out of sample: the items are split
into folds and each fold is scored by a model trained on the other folds
only, so no item is scored by a model that trained on its own label
(Chernozhukov et al., "Double/debiased machine learning", Econometrics
Journal 21, 2018, section 3). Each round reviews the top items of a
deterministic ranking of what was known when it was decided, so ``pi_i`` is
1 for every reviewed item and 0 otherwise, as under thresholding: the ACT
loss stays the thresholding loss.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from services.core.fusion import fit_eps_fusion
from services.experiments.methods import CriticSource, SecondCritic

#: Trains a model on ``labels[train_index]`` and returns its class probabilities
#: for ``score_index`` (shape ``(len(score_index), K)``).
FitProba = Callable[[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]], Any]


def critic_eps(
    source: CriticSource,
    eps: npt.ArrayLike,
    machine: npt.ArrayLike,
    human: npt.ArrayLike,
    seed: int,
) -> npt.NDArray[np.float64]:
    """The eps a row samples with: the critic's, or a baseline's stand-in.

    ``random``: iid uniform (a uniformly random ranking); ``blind``: 0.5 for
    every item; ``oracle``: in (0.5, 1) where the machine label is wrong and
    in [0, 0.5) elsewhere (random within each group, so ties break at random).
    The random parts are seeded by ``seed`` alone, so a table's rows share them.
    """
    e = np.asarray(eps, dtype=np.float64)
    if source == "critic":
        return e
    rng = np.random.default_rng([seed, 0xC21C])
    if source == "random":
        return rng.uniform(0.0, 1.0, e.size)
    if source == "blind":
        return np.full(e.size, 0.5)
    if source == "oracle":
        wrong = (np.asarray(machine) != np.asarray(human)).astype(np.float64)
        out: npt.NDArray[np.float64] = 0.5 * wrong + 0.5 * rng.uniform(0.0, 1.0, e.size) * (
            1.0 - 1e-9
        )
        return out
    raise ValueError(f"unknown critic source {source!r}")


def round_sizes(total: int, rounds: int) -> list[int]:
    """Reviews per round: ``total`` split as evenly as possible, earlier rounds first."""
    if rounds < 1:
        raise ValueError("rounds must be >= 1")
    if total < 0:
        raise ValueError("total must be >= 0")
    base, extra = divmod(total, rounds)
    return [base + (1 if r < extra else 0) for r in range(rounds)]


def top_unreviewed(
    score: npt.NDArray[np.float64], reviewed: npt.NDArray[np.bool_], k: int, tiebreak: Any
) -> npt.NDArray[np.int64]:
    """Indices of the ``k`` unreviewed items with the highest score (ties: ``tiebreak`` order)."""
    candidates = np.flatnonzero(~reviewed)
    k = min(k, candidates.size)
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    # lexsort: the last key is the primary one; -score sorts descending.
    order = np.lexsort((tiebreak[candidates], -score[candidates]))
    return candidates[order[:k]].astype(np.int64)


def fold_assignment(n: int, folds: int, seed: int) -> npt.NDArray[np.int64]:
    """A seeded, balanced assignment of ``n`` items to ``folds`` folds."""
    if folds < 2:
        raise ValueError("cross-fitting needs at least 2 folds")
    rng = np.random.default_rng([seed, 0xF01D])
    return (rng.permutation(n) % folds).astype(np.int64)


def cross_fitted_proba(
    labels: npt.NDArray[np.int64], folds: npt.NDArray[np.int64], fit_proba: FitProba
) -> npt.NDArray[np.float64]:
    """Class probabilities of every item from a model trained without the item's fold."""
    out: npt.NDArray[np.float64] | None = None
    for f in np.unique(folds):
        score_index = np.flatnonzero(folds == f).astype(np.int64)
        train_index = np.flatnonzero(folds != f).astype(np.int64)
        proba = np.asarray(fit_proba(train_index, labels, score_index), dtype=np.float64)
        if proba.ndim != 2 or proba.shape[0] != score_index.size:
            raise ValueError("fit_proba must return one row of class probabilities per item")
        if out is None:
            out = np.zeros((labels.size, proba.shape[1]))
        out[score_index] = proba
    if out is None:
        raise ValueError("no folds")
    return out


def _wrong_prob(proba: Any, machine: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """``1 - p(machine label)`` per row of class probabilities."""
    p = np.asarray(proba, dtype=np.float64)
    return 1.0 - p[np.arange(machine.size), machine]


def reviewed_model_wrong_prob(
    human: npt.NDArray[np.int64],
    machine: npt.NDArray[np.int64],
    reviewed: npt.NDArray[np.bool_],
    folds: npt.NDArray[np.int64],
    fit_proba: FitProba,
) -> npt.NDArray[np.float64]:
    """``1 - p(machine label)`` from models trained on the reviewed items' human labels only.

    A model of the human labels does not learn the annotator's systematic
    confusions, which a model of the machine labels does. Unreviewed items are
    scored by one model trained on every reviewed item (it never saw them);
    reviewed items, which the fusion is fit on, by cross-fitting within the
    reviewed set, so every score is out of sample.
    """
    labels = np.where(reviewed, human, machine).astype(np.int64)
    out = np.empty(labels.size, dtype=np.float64)
    rows = np.flatnonzero(reviewed).astype(np.int64)
    others = np.flatnonzero(~reviewed).astype(np.int64)
    if others.size:
        out[others] = _wrong_prob(fit_proba(rows, labels, others), machine[others])
    for f in np.unique(folds[rows]):
        score_index = rows[folds[rows] == f]
        train_index = rows[folds[rows] != f]
        out[score_index] = _wrong_prob(
            fit_proba(train_index, labels, score_index), machine[score_index]
        )
    return np.clip(out, 0.0, 1.0)


def cross_fitted_wrong_prob(
    labels: npt.NDArray[np.int64],
    machine: npt.NDArray[np.int64],
    folds: npt.NDArray[np.int64],
    fit_proba: FitProba,
) -> npt.NDArray[np.float64]:
    """``1 - p(machine label)`` of every item from a model trained without the item's fold."""
    return np.clip(_wrong_prob(cross_fitted_proba(labels, folds, fit_proba), machine), 0.0, 1.0)


@dataclass(frozen=True, slots=True)
class ReviewRound:
    """What one round of the feedback loop did (for reports and tests)."""

    round: int
    reviewed: int  # reviews spent in this round
    errors_found: int  # of them, machine labels the human corrected
    fusion: dict[str, Any] | None  # the fitted fusion (None in the first round)


@dataclass(frozen=True, slots=True)
class FeedbackReviews:
    """The reviews of a feedback-loop row: ``delta``, ``pi`` and the rounds behind them."""

    delta: npt.NDArray[np.bool_]
    pi: npt.NDArray[np.float64]
    rounds: tuple[ReviewRound, ...]
    #: The last round's ranking score of every item: eps fused with the second
    #: critic (eps itself with one round), an estimate of P(machine label wrong).
    score: npt.NDArray[np.float64]

    @property
    def reviewed(self) -> int:
        """``sum delta``."""
        return int(self.delta.sum())


def feedback_reviews(
    eps: npt.ArrayLike,
    machine: npt.ArrayLike,
    human: npt.ArrayLike,
    budget: int,
    *,
    rounds: int,
    folds: int,
    seed: int,
    fit_proba: FitProba,
    second: SecondCritic = "reviewed",
) -> FeedbackReviews:
    """Spend ``budget`` reviews in ``rounds``, re-ranking by eps fused with a cross-fitted model.

    ``human`` is read only for items once they are reviewed (the simulated
    reviewer's answer), never to rank. Round 1 takes the top of ``eps``;
    round r > 1 scores every item with a second critic, fuses it with eps on
    the items reviewed so far, and takes the top unreviewed items of the
    fused score. The second critic (``second``) is ``1 - p(y_m)`` of a model
    trained on the human labels of the reviewed items
    (:func:`reviewed_model_wrong_prob`, ``"reviewed"``) or of models
    cross-fitted on all the labels known so far (:func:`cross_fitted_wrong_prob`,
    ``"act_data"``).
    """
    e = np.asarray(eps, dtype=np.float64)
    m = np.asarray(machine, dtype=np.int64)
    h = np.asarray(human, dtype=np.int64)
    if not (e.shape == m.shape == h.shape) or e.ndim != 1:
        raise ValueError("eps, machine and human must be 1-d of the same length")
    if not 0 <= budget <= e.size:
        raise ValueError(f"budget must be in [0, {e.size}], got {budget}")
    tiebreak = np.random.default_rng([seed, 0x71E]).permutation(e.size)
    fold_of = fold_assignment(e.size, folds, seed)
    reviewed = np.zeros(e.size, dtype=bool)
    trace: list[ReviewRound] = []
    score = e
    for r, size in enumerate(round_sizes(budget, rounds), start=1):
        fusion_info: dict[str, Any] | None = None
        score = e
        if r > 1 and size > 0:
            if second == "reviewed":
                opinion = reviewed_model_wrong_prob(h, m, reviewed, fold_of, fit_proba)
            else:
                opinion = cross_fitted_wrong_prob(np.where(reviewed, h, m), m, fold_of, fit_proba)
            scores = np.column_stack((e, opinion))
            fusion = fit_eps_fusion(scores[reviewed], (m != h)[reviewed])
            score = np.asarray(fusion(scores), dtype=np.float64)
            fusion_info = fusion.to_dict()
        chosen = top_unreviewed(score, reviewed, size, tiebreak)
        reviewed[chosen] = True
        trace.append(
            ReviewRound(r, int(chosen.size), int((m[chosen] != h[chosen]).sum()), fusion_info)
        )
    return FeedbackReviews(
        delta=reviewed, pi=reviewed.astype(np.float64), rounds=tuple(trace), score=score
    )
