"""The weighted reliability diagram recovers calibration under eps-biased review."""

from __future__ import annotations

import numpy as np
import pytest

from services.core.calibration import (
    calibration_bins,
    expected_calibration_error,
    review_calibration,
)


def _stream(seed: int, n: int = 200_000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    eps = rng.beta(0.7, 2.0, size=n)
    error = rng.random(n) < eps  # a calibrated critic: P(error | eps) = eps
    return eps, error


def test_a_calibrated_critic_has_error_rate_equal_to_eps_in_every_bin() -> None:
    eps, error = _stream(1)
    bins = calibration_bins(eps, error, n_bins=10)
    assert sum(b.count for b in bins) == len(eps)
    for b in bins:
        assert b.lo <= b.mean_eps < b.hi
        assert abs(b.error_rate - b.mean_eps) < 4 * np.sqrt(0.25 / b.count) + 1e-9
    assert expected_calibration_error(bins) < 0.01


def test_inverse_pi_weights_undo_the_bias_of_reviewing_suspicious_items_more() -> None:
    eps, error = _stream(2)
    rng = np.random.default_rng(3)
    # The sampler reviews items with probability rising in eps; within a wide
    # bin that over-represents the high-eps (more often wrong) items.
    pi = np.clip(0.02 + 0.9 * eps**2, 0.0, 1.0)
    reviewed = rng.random(len(eps)) < pi
    unweighted = calibration_bins(eps[reviewed], error[reviewed], n_bins=2)
    weighted = calibration_bins(eps[reviewed], error[reviewed], pi[reviewed], n_bins=2)
    census = calibration_bins(eps, error, n_bins=2)
    for w, c in zip(weighted, census, strict=True):
        assert abs(w.error_rate - c.error_rate) < 0.02
    biased = max(abs(u.error_rate - c.error_rate) for u, c in zip(unweighted, census, strict=True))
    assert biased > 0.03  # the naive diagram is visibly off: weighting is what fixes it


def test_a_critic_that_says_nothing_is_flagged_miscalibrated() -> None:
    eps, error = _stream(4)
    constant = np.full_like(eps, 0.9)
    bins = calibration_bins(constant, error)
    assert len(bins) == 1
    assert expected_calibration_error(bins) > 0.5


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="same length"):
        calibration_bins([0.1, 0.2], [True])
    with pytest.raises(ValueError, match="n_bins"):
        calibration_bins([0.1], [True], n_bins=0)
    assert calibration_bins([], []) == []


def test_review_calibration_weights_reviews_by_one_over_pi() -> None:
    rng = np.random.default_rng(31)
    n = 40_000
    eps = rng.random(n)
    error = rng.random(n) < eps * 0.5  # the critic overstates errors twice
    pi = np.clip(eps, 0.05, 1.0)  # suspicious items are reviewed more
    reviewed = rng.random(n) < pi
    summary = review_calibration(eps[reviewed], error[reviewed], pi[reviewed])
    assert summary is not None and summary.reviews == int(reviewed.sum())
    # The weighted rate is the whole stream's; the raw share is the reviewed items'.
    assert summary.machine_error_rate == pytest.approx(error.mean(), abs=0.01)
    assert summary.disagreement > summary.machine_error_rate + 0.05
    assert summary.eps_mean == pytest.approx(eps.mean(), abs=0.01)
    # Bins count reviewed items (review density ~ eps): E[eps^2] / E[eps] / 2 = 1/3.
    assert summary.expected_calibration_error == pytest.approx(1 / 3, abs=0.02)
    assert summary.recalibration.method == "isotonic"
    assert float(summary.recalibration([0.8])[0]) == pytest.approx(0.4, abs=0.05)
    assert review_calibration([], [], []) is None
