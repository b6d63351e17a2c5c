"""Calibration of the critic against human reviews: a weighted reliability diagram.

The critic says ``eps_i``, the probability that the machine label of item i is
wrong; a human review tells whether it was (``error_i``). A reliability
diagram (DeGroot & Fienberg, "The comparison and evaluation of forecasters",
The Statistician 32, 1983; Guo et al., "On calibration of modern neural
networks", ICML 2017) bins the items by eps and compares each bin's mean eps
with its observed error rate.

Reviewed items are not a random sample: the sampler reviews item i with
probability ``pi_i``, more often when eps is large. Weighting each reviewed
item by ``1 / pi_i`` (Horvitz & Thompson, "A generalization of sampling
without replacement from a finite universe", JASA 47, 1952) makes each bin's
weighted error rate an estimate of the error rate of *all* items of that eps,
which is what calibration means for the whole stream (the ratio form, as in
Hajek's estimator, 1971).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from services.core.recalibration import EpsCalibration, fit_eps_calibration


@dataclass(frozen=True, slots=True)
class CalibrationBin:
    """One bin of the diagram: eps in [lo, hi)."""

    lo: float
    hi: float
    count: int
    mean_eps: float
    error_rate: float


def calibration_bins(
    eps: Sequence[float],
    error: Sequence[bool],
    pi: Sequence[float] | None = None,
    n_bins: int = 10,
) -> list[CalibrationBin]:
    """Equal-width eps bins with their (1/pi-weighted) mean eps and error rate.

    Empty bins are left out. ``pi`` defaults to 1 (a census); values are
    clipped below at 1e-6 so that one tiny probability cannot divide by zero.
    """
    if n_bins < 1:
        raise ValueError("n_bins must be >= 1")
    e = np.asarray(eps, dtype=np.float64)
    y = np.asarray(error, dtype=np.float64)
    if e.shape != y.shape or e.ndim != 1:
        raise ValueError("eps and error must be 1-d of the same length")
    w = np.ones_like(e) if pi is None else 1.0 / np.clip(np.asarray(pi, np.float64), 1e-6, 1.0)
    if w.shape != e.shape:
        raise ValueError("pi must have the length of eps")
    index = np.minimum((np.clip(e, 0.0, 1.0) * n_bins).astype(np.int64), n_bins - 1)
    bins = []
    for b in range(n_bins):
        mask = index == b
        if not mask.any():
            continue
        weights = w[mask]
        total = float(weights.sum())
        bins.append(
            CalibrationBin(
                lo=b / n_bins,
                hi=(b + 1) / n_bins,
                count=int(mask.sum()),
                mean_eps=float((weights * e[mask]).sum() / total),
                error_rate=float((weights * y[mask]).sum() / total),
            )
        )
    return bins


def expected_calibration_error(bins: Sequence[CalibrationBin]) -> float:
    """Count-weighted mean |mean eps - error rate| over the bins (Guo et al., 2017, ECE)."""
    n = sum(b.count for b in bins)
    if n == 0:
        return 0.0
    return sum(b.count * abs(b.mean_eps - b.error_rate) for b in bins) / n


@dataclass(frozen=True)
class ReviewCalibration:
    """What a task's reviews say about its critic, for every item (1/pi-weighted)."""

    reviews: int
    #: Share of the reviewed items whose machine label was wrong (unweighted).
    disagreement: float
    #: Hajek estimate of the machine error rate over all items.
    machine_error_rate: float
    #: The critic's mean eps, weighted like the error rate (compare the two).
    eps_mean: float
    expected_calibration_error: float
    bins: list[CalibrationBin]
    #: eps recalibrated on the reviews (isotonic; the identity below the minimum).
    recalibration: EpsCalibration


def review_calibration(
    eps: Sequence[float], error: Sequence[bool], pi: Sequence[float]
) -> ReviewCalibration | None:
    """The reliability diagram, its ECE and the recalibration map of reviewed items.

    ``pi`` are the items' review probabilities (clipped below at 1e-6). None
    without reviews.
    """
    if len(eps) == 0:
        return None
    p = np.clip(np.asarray(pi, dtype=np.float64), 1e-6, 1.0)
    e = np.clip(np.asarray(eps, dtype=np.float64), 0.0, 1.0)
    y = np.asarray(error, dtype=bool)
    w = 1.0 / p
    bins = calibration_bins(e.tolist(), y.tolist(), p.tolist())
    return ReviewCalibration(
        reviews=int(e.size),
        disagreement=float(y.mean()),
        machine_error_rate=float((w * y).sum() / w.sum()),
        eps_mean=float((w * e).sum() / w.sum()),
        expected_calibration_error=expected_calibration_error(bins),
        bins=bins,
        recalibration=fit_eps_calibration(e, y, p),
    )
