"""CDI's review design: the budget is kept, the 1/pi weights are unbiased, errors are found."""

from __future__ import annotations

import numpy as np
import pytest

from services.core.cdi import cdi_design, proportional_pi
from services.core.recalibration import sigmoid

N = 5_000


def _stream(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Machine errors at rate ~0.2; the critic's eps is an informative, miscalibrated signal."""
    error = rng.random(N) < 0.2
    eps = sigmoid(2.0 * error - 0.5 + rng.normal(0.0, 1.0, N))
    return eps, error


def test_proportional_pi_spends_the_budget_exactly_with_the_cap() -> None:
    w = np.array([10.0, 1.0, 1.0, 2.0, 0.0])
    pi = proportional_pi(w, 2.0)
    assert pi.sum() == pytest.approx(2.0)
    assert pi[0] == 1.0 and pi[4] == 0.0  # capped; no weight, no chance
    assert pi[3] == pytest.approx(2 * pi[1]) and pi[1] == pytest.approx(pi[2])
    assert proportional_pi(w, 4.5).tolist() == [1.0, 1.0, 1.0, 1.0, 0.5]
    assert proportional_pi(w, 0.0).sum() == 0.0
    with pytest.raises(ValueError):
        proportional_pi([1.0, -1.0], 1.0)


def test_cdi_keeps_the_budget_and_its_weights_are_unbiased() -> None:
    budget = 0.2 * N
    reviewed, estimates, truths = [], [], []
    for seed in range(30):
        rng = np.random.default_rng(seed)
        eps, error = _stream(rng)
        d = cdi_design(eps, error, budget, rng)
        assert d.burn_in.sum() < d.delta.sum() and not (d.burn_in & ~d.delta).any()
        assert ((d.pi > 0) & (d.pi <= 1)).all()
        reviewed.append(d.delta.sum())
        # Horvitz-Thompson estimate of the error rate from the reviews only.
        estimates.append(float((d.delta * error / d.pi).sum() / N))
        truths.append(float(error.mean()))
    assert np.mean(reviewed) == pytest.approx(budget, rel=0.03)
    bias = np.mean(np.array(estimates) - np.array(truths))
    spread = np.std(np.array(estimates) - np.array(truths)) / np.sqrt(len(estimates))
    assert abs(bias) < 3 * spread + 1e-3


def test_cdi_reviews_more_errors_than_a_uniform_sample() -> None:
    rng = np.random.default_rng(7)
    eps, error = _stream(rng)
    d = cdi_design(eps, error, 0.2 * N, rng)
    assert error[d.delta].mean() > 1.5 * error.mean()
    assert d.predicted_error[error].mean() > d.predicted_error[~error].mean()


def test_cdi_reads_errors_only_where_the_burn_in_reviewed() -> None:
    eps, error = _stream(np.random.default_rng(8))
    first = cdi_design(eps, error, 0.2 * N, np.random.default_rng(9))
    unseen = ~first.burn_in
    changed = error.copy()
    changed[unseen] = ~changed[unseen]  # what nobody has reviewed yet cannot matter
    second = cdi_design(eps, changed, 0.2 * N, np.random.default_rng(9))
    assert np.array_equal(first.delta, second.delta) and np.array_equal(first.pi, second.pi)
