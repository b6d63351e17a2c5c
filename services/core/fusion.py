"""Fusing the critic's eps with a second opinion on the same machine label.

Two sources say how likely the machine label of item i is wrong: the critic's
``eps_i`` and, once a downstream model has been trained, that model's
out-of-sample probability that the label is wrong, ``1 - p_model(machine
label)``. Ranking samples for relabelling by a classifier's disagreement with
the current label is the idea of active label cleaning (Bernhardt et al.,
"Active label cleaning for improved dataset quality under resource
constraints", Nature Communications 13, 1161, 2022). The columns of
``scores`` (shape (n, k)) are such probabilities, one column per source.

:func:`fit_eps_fusion` learns how much to trust each source from the human
reviews: a logistic regression of the review outcome on the logits of the
sources, i.e. stacked generalisation (Wolpert, "Stacked generalization",
Neural Networks 5, 1992) with a logistic combiner. Stacking needs
out-of-sample first-level predictions, which is why the model's probability
must come from cross-fitting, never from items it was trained on. Each
reviewed item is weighted by ``1 / pi_i`` (Horvitz & Thompson, JASA 47, 1952;
see :mod:`recalibration`), so that the fit targets all items, not the ones
the sampler found suspicious.

:func:`geometric_fusion` is the fixed-weight alternative: the normalised
weighted geometric mean of the sources, the logarithmic opinion pool (Genest &
Zidek, "Combining probability distributions: a critique and an annotated
bibliography", Statistical Science 1, 1986). A fitted stacking map with
intercept 0 is exactly such a pool with the coefficients as exponents.

The ABS of a critic (Lin et al., ACT, eq. 5) is :func:`services.core.metrics.abs_score`,
with the review outcome as the machine/human disagreement: for a fixed set
of items it is an increasing affine function of the ROC AUC of eps for the
error, so either ranks fusions alike.

:func:`fusion_gain` says whether a second source is worth using at all: the
1/pi-weighted log loss of each map, fitted on k - 1 folds of the reviews and
scored on the fold left out (cross-validated stacking: Wolpert 1992; Breiman,
"Stacked regressions", Machine Learning 24, 1996), compared for the map of
every source and the map of the first source alone (which is the Platt
recalibration of the critic). Log loss is a strictly proper scoring rule
(Gneiting & Raftery, "Strictly proper scoring rules, prediction, and
estimation", JASA 102, 2007), so the comparison rewards calibration and
ranking alike and cannot be gamed by a confident but wrong source.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]
from sklearn.model_selection import StratifiedKFold  # type: ignore[import-untyped]

from services.core.recalibration import (
    DEFAULT_MIN_REVIEWS,
    FloatArray,
    check_errors,
    check_probabilities,
    clip_probability,
    logit,
    review_weights,
    sigmoid,
)

METHODS = ("stacking", "mean")


def _scores(scores: npt.ArrayLike, k: int | None = None) -> FloatArray:
    """Scores as a float64 (n, k) array of probabilities."""
    array = check_probabilities(scores, "scores")
    if array.ndim != 2 or array.shape[1] < 1:
        raise ValueError(f"scores must be 2-d (items, sources), got shape {array.shape}")
    if k is not None and array.shape[1] != k:
        raise ValueError(f"scores must have {k} columns (sources), got {array.shape[1]}")
    return array


@dataclass(frozen=True)
class EpsFusion:
    """A fitted map from k sources' probabilities to one fused eps.

    ``method`` "stacking": eps = sigmoid(sum_j coef_j logit(s_j) + intercept);
    ``method`` "mean": eps = sum_j coef_j s_j + intercept, with coef_j = 1/k and
    intercept 0, the plain mean of the sources. ``n_reviews`` is the number of
    reviewed rows the map was fitted on.
    """

    coef: tuple[float, ...]
    intercept: float
    n_reviews: int
    method: str

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown fusion method {self.method!r}")
        if not self.coef:
            raise ValueError("a fusion needs at least one source")

    def __call__(self, scores: npt.ArrayLike) -> FloatArray:
        """Fused eps, shape (n,), in [1e-6, 1 - 1e-6], for scores of shape (n, k)."""
        s = _scores(scores, len(self.coef))
        coef = np.asarray(self.coef, dtype=np.float64)
        if self.method == "stacking":
            return clip_probability(sigmoid(logit(s) @ coef + self.intercept))
        return clip_probability(s @ coef + self.intercept)

    def to_dict(self) -> dict[str, Any]:
        """The map as JSON-able builtins."""
        return {
            "method": self.method,
            "coef": [float(c) for c in self.coef],
            "intercept": float(self.intercept),
            "n_reviews": int(self.n_reviews),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EpsFusion:
        """The inverse of :meth:`to_dict`."""
        return cls(
            coef=tuple(float(c) for c in data["coef"]),
            intercept=float(data["intercept"]),
            n_reviews=int(data["n_reviews"]),
            method=str(data["method"]),
        )


def mean_fusion(k: int, n_reviews: int = 0) -> EpsFusion:
    """The fallback map: the plain mean of k sources."""
    if k < 1:
        raise ValueError("k must be >= 1")
    return EpsFusion(coef=(1.0 / k,) * k, intercept=0.0, n_reviews=n_reviews, method="mean")


def fit_eps_fusion(
    scores: npt.ArrayLike,
    error: npt.ArrayLike,
    pi: npt.ArrayLike | None = None,
    *,
    min_reviews: int = DEFAULT_MIN_REVIEWS,
    C: float = 1.0,
) -> EpsFusion:
    """Fit logistic stacking of the sources on reviewed items, weighted by 1 / pi.

    ``scores`` is (n, k) probabilities (one column per source, e.g. the critic's
    eps and 1 - p_model(machine label)), ``error`` the n review outcomes (0/1
    or bool) and ``pi`` their review probabilities in (0, 1] (None: a census).
    The features are the logits of the columns clipped to [1e-6, 1 - 1e-6].
    ``C`` is sklearn's inverse L2 strength; the penalty ||coef||^2 / (2 C) is
    weighed against the *sum* of the weighted log losses, so C = 1 barely
    shrinks once there are a few hundred reviews (``np.inf``: no penalty).

    Fallback: with fewer than ``min_reviews`` rows, or when all the errors are
    equal (only 0s or only 1s), the plain mean of the columns is returned
    (method "mean") instead of failing.

    Raises ValueError on bad shapes, NaN, values out of range or C <= 0.
    """
    if not C > 0:
        raise ValueError("C must be > 0")
    if min_reviews < 0:
        raise ValueError("min_reviews must be >= 0")
    s = _scores(scores)
    n, k = s.shape
    y = check_errors(error, n)
    w = review_weights(pi, n)
    if n < max(min_reviews, 1) or y.min() == y.max():
        return mean_fusion(k, n_reviews=n)
    model = LogisticRegression(C=C, max_iter=1000)
    model.fit(logit(s), y.astype(np.int64), sample_weight=w)
    return EpsFusion(
        coef=tuple(float(c) for c in model.coef_[0]),
        intercept=float(model.intercept_[0]),
        n_reviews=n,
        method="stacking",
    )


def geometric_fusion(scores: npt.ArrayLike, exponents: Sequence[float]) -> FloatArray:
    """Logarithmic opinion pool of k sources with the given exponents.

    For two sources p, q with exponents a, b: p^a q^b / (p^a q^b + (1-p)^a
    (1-q)^b), i.e. sigmoid(a logit(p) + b logit(q)); likewise for k. The
    exponents must be finite and >= 0 (all 0 gives 1/2). Scores (n, k) are
    clipped to [1e-6, 1 - 1e-6] before, and the result after, so it lies in
    (0, 1); with exponents (1, 0, ...) it returns the first column.
    """
    a = np.asarray(exponents, dtype=np.float64)
    s = _scores(scores, a.size if a.ndim == 1 else None)
    if a.ndim != 1 or not np.isfinite(a).all() or (a < 0).any():
        raise ValueError("exponents must be a 1-d sequence of finite values >= 0")
    return clip_probability(sigmoid(logit(s) @ a))


@dataclass(frozen=True)
class FusionGain:
    """Out-of-fold log losses of the fused map and of the first source's map alone."""

    #: 1/pi-weighted mean log loss, out of fold, of stacking every source.
    fused_loss: float
    #: The same for stacking the first source alone (its Platt recalibration).
    first_loss: float
    #: The first source as it is (no map fitted), on the same reviews.
    raw_loss: float
    n_reviews: int
    folds: int

    @property
    def helps(self) -> bool:
        """Whether fusing beat the first source alone out of fold."""
        return self.fused_loss < self.first_loss

    @property
    def recalibrating_helps(self) -> bool:
        """Whether the first source's Platt map beat the source as it is, out of fold."""
        return self.first_loss < self.raw_loss


def _weighted_log_loss(eps: FloatArray, y: FloatArray, w: FloatArray) -> float:
    p = clip_probability(eps)
    losses = -(y * np.log(p) + (1.0 - y) * np.log1p(-p))
    return float((w * losses).sum() / w.sum())


def fusion_gain(
    scores: npt.ArrayLike,
    error: npt.ArrayLike,
    pi: npt.ArrayLike | None = None,
    *,
    folds: int = 5,
    seed: int = 0,
    min_reviews: int = DEFAULT_MIN_REVIEWS,
    C: float = 1.0,
) -> FusionGain | None:
    """Whether stacking all sources beats the first one alone, by cross-validation
    (and whether recalibrating the first one beats it as it is).

    ``scores`` (n, k >= 2), ``error`` and ``pi`` as for :func:`fit_eps_fusion`.
    The reviews are split into ``folds`` stratified folds (seeded); each fold
    is scored by maps fitted on the others, and the out-of-fold log losses
    are averaged with weights 1/pi, so they estimate the loss over all items,
    not over the ones the sampler found suspicious. None when there are fewer
    than ``min_reviews`` reviews or fewer than ``folds`` of either outcome
    (no fold could be scored fairly).
    """
    if folds < 2:
        raise ValueError("folds must be >= 2")
    s = _scores(scores)
    n, k = s.shape
    if k < 2:
        raise ValueError("fusion_gain compares k >= 2 sources with the first alone")
    y = check_errors(error, n)
    w = review_weights(pi, n)
    positives = int(y.sum())
    if n < max(min_reviews, folds) or min(positives, n - positives) < folds:
        return None
    fused = np.empty(n)
    first = np.empty(n)
    splits = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train, test in splits.split(s, y.astype(np.int64)):
        fit = fit_eps_fusion(s[train], y[train], 1.0 / w[train], min_reviews=0, C=C)
        fused[test] = fit(s[test])
        alone = fit_eps_fusion(s[train, :1], y[train], 1.0 / w[train], min_reviews=0, C=C)
        first[test] = alone(s[test, :1])
    return FusionGain(
        fused_loss=_weighted_log_loss(fused, y, w),
        first_loss=_weighted_log_loss(first, y, w),
        raw_loss=_weighted_log_loss(s[:, 0], y, w),
        n_reviews=n,
        folds=folds,
    )
