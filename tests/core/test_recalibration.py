"""Recalibrating eps from 1/pi-weighted reviews recovers the true error probability."""

from __future__ import annotations

import json

import numpy as np
import pytest

from services.core.recalibration import (
    EpsCalibration,
    fit_eps_calibration,
    logit,
    sigmoid,
)

N = 20_000


def _review(rng: np.random.Generator, eps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The sampler: suspicious items are reviewed more (pi = eps, floor 0.05)."""
    pi = np.clip(eps, 0.05, 1.0)
    return pi, rng.random(eps.size) < pi


def _log_loss(p: np.ndarray, error: np.ndarray) -> float:
    return float(-np.mean(error * np.log(p) + (1 - error) * np.log1p(-p)))


def test_isotonic_recovers_the_error_probability_of_a_squashed_critic() -> None:
    rng = np.random.default_rng(11)
    q = rng.random(N)  # the true P(error)
    eps = q**2  # an under-confident critic: says 0.25 when the truth is 0.5
    error = rng.random(N) < q
    pi, reviewed = _review(rng, eps)
    cal = fit_eps_calibration(eps[reviewed], error[reviewed], pi[reviewed])
    assert cal.method == "isotonic"
    assert cal.n_reviews == reviewed.sum()
    # The Horvitz-Thompson weight sum estimates the stream's size (within 4
    # standard deviations: Var = sum (1 - pi) / pi).
    assert abs(cal.weight_sum - N) < 4 * np.sqrt(np.sum((1 - pi) / pi))
    assert np.abs(eps - q).mean() > 0.15  # the raw critic is far off
    assert np.abs(cal(eps) - q).mean() < 0.05
    # The calibrated eps of the whole stream estimate its error rate; the
    # reviewed items' raw error rate does not (they are the suspicious ones).
    assert abs(cal(eps).mean() - error.mean()) < 0.02
    assert abs(error[reviewed].mean() - error.mean()) > 0.1


def test_weights_make_a_misspecified_platt_map_fit_the_stream_not_the_reviews() -> None:
    rng = np.random.default_rng(12)
    n = 50_000  # the naive fit is off by about 0.03 +- 0.003: room for both bounds
    q = rng.random(n)
    z = logit(q)
    eps = sigmoid(np.where(z < 0, 3.0 * z, 0.3 * z))  # a kinked, non-logistic distortion
    error = rng.random(n) < q
    pi, reviewed = _review(rng, eps)
    weighted = fit_eps_calibration(eps[reviewed], error[reviewed], pi[reviewed], method="platt")
    naive = fit_eps_calibration(eps[reviewed], error[reviewed], method="platt")
    assert weighted.method == naive.method == "platt"
    # Weighted, the intercept's score equation makes the map calibrated in
    # the large over the (estimated) stream; unweighted, over the reviews.
    assert abs(weighted(eps).mean() - error.mean()) < 0.012
    assert abs(naive(eps).mean() - error.mean()) > 0.02
    assert _log_loss(weighted(eps), error) < _log_loss(naive(eps), error) - 0.01
    # Isotonic needs no logistic form: it follows the kink.
    iso = fit_eps_calibration(eps[reviewed], error[reviewed], pi[reviewed])
    assert np.abs(iso(eps) - q).mean() < 0.05 < np.abs(weighted(eps) - q).mean()


def test_platt_recovers_a_logistic_distortion() -> None:
    rng = np.random.default_rng(13)
    z = rng.normal(-1.0, 1.5, N)
    eps = sigmoid(z)
    q = sigmoid(0.5 * z - 0.7)  # P(error) = sigmoid(a logit(eps) + b), a = 0.5, b = -0.7
    error = rng.random(N) < q
    pi, reviewed = _review(rng, eps)
    cal = fit_eps_calibration(eps[reviewed], error[reviewed], pi[reviewed], method="platt")
    assert abs(cal.a - 0.5) < 0.1
    assert abs(cal.b + 0.7) < 0.1
    assert np.abs(eps - q).mean() > 0.08
    assert np.abs(cal(eps) - q).mean() < 0.02


def test_a_census_fit_is_the_unweighted_fit() -> None:
    rng = np.random.default_rng(14)
    eps = rng.random(500)
    error = rng.random(500) < eps
    census = fit_eps_calibration(eps, error)
    ones = fit_eps_calibration(eps, error, np.ones(500))
    assert census == ones
    assert census.weight_sum == 500.0


def test_the_isotonic_map_never_decreases_and_stays_inside_zero_one() -> None:
    rng = np.random.default_rng(15)
    eps = rng.random(2_000)
    error = rng.random(2_000) < 0.3 + 0.4 * np.sin(6 * eps) ** 2  # far from monotone
    cal = fit_eps_calibration(eps, error, rng.uniform(0.1, 1.0, 2_000))
    assert np.all(np.diff(cal.x) >= 0) and np.all(np.diff(cal.y) >= 0)
    grid = np.linspace(0.0, 1.0, 1_001)
    out = cal(grid)
    assert np.all(np.diff(out) >= 0)
    assert out.min() >= 1e-6 and out.max() <= 1 - 1e-6
    assert cal(np.array([[0.2, 0.9]])).shape == (1, 2)  # any shape goes through


def test_too_few_reviews_or_one_class_fall_back_to_the_identity() -> None:
    rng = np.random.default_rng(16)
    eps = rng.random(30)
    for cal in (
        fit_eps_calibration(eps[:19], rng.random(19) < 0.5),  # 19 < min_reviews = 20
        fit_eps_calibration(eps, np.zeros(30, dtype=bool), method="platt"),
        fit_eps_calibration(eps, np.ones(30), np.full(30, 0.5)),
        fit_eps_calibration([], []),
    ):
        assert cal.method == "identity"
        np.testing.assert_allclose(cal(eps), np.clip(eps, 1e-6, 1 - 1e-6))
    few = fit_eps_calibration(eps[:5], [0, 1, 0, 1, 1], min_reviews=5)
    assert few.method == "isotonic"
    assert fit_eps_calibration(eps[:5], [0, 1, 0, 1, 1], np.full(5, 0.25)).weight_sum == 20.0
    assert EpsCalibration("identity", 0, 0.0)(np.array([0.0, 1.0])).tolist() == [1e-6, 1 - 1e-6]


def test_bad_input_is_refused() -> None:
    eps, error = [0.1, 0.2, 0.3], [0, 1, 0]
    with pytest.raises(ValueError, match="one outcome per item"):
        fit_eps_calibration(eps, [0, 1])
    with pytest.raises(ValueError, match="1-d"):
        fit_eps_calibration([[0.1, 0.2]], [[0, 1]])
    with pytest.raises(ValueError, match="eps contains NaN"):
        fit_eps_calibration([0.1, np.nan, 0.3], error)
    with pytest.raises(ValueError, match=r"eps must be in \[0, 1\]"):
        fit_eps_calibration([0.1, 1.2, 0.3], error)
    with pytest.raises(ValueError, match="0/1"):
        fit_eps_calibration(eps, [0, 2, 1])
    with pytest.raises(ValueError, match="error contains NaN"):
        fit_eps_calibration(eps, [0, np.nan, 1])
    with pytest.raises(ValueError, match="pi must be > 0"):
        fit_eps_calibration(eps, error, [0.5, 0.0, 1.0])
    with pytest.raises(ValueError, match=r"pi must be in \[0, 1\]"):
        fit_eps_calibration(eps, error, [0.5, 1.5, 1.0])
    with pytest.raises(ValueError, match="pi contains NaN"):
        fit_eps_calibration(eps, error, [0.5, np.nan, 1.0])
    with pytest.raises(ValueError, match="one probability per item"):
        fit_eps_calibration(eps, error, [0.5, 1.0])
    with pytest.raises(ValueError, match="method"):
        fit_eps_calibration(eps, error, method="beta")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="min_reviews"):
        fit_eps_calibration(eps, error, min_reviews=-1)
    cal = EpsCalibration("identity", 0, 0.0)
    with pytest.raises(ValueError, match="eps contains NaN"):
        cal([np.nan])
    with pytest.raises(ValueError, match="unknown calibration method"):
        EpsCalibration("beta", 0, 0.0)
    with pytest.raises(ValueError, match="same length"):
        EpsCalibration("isotonic", 1, 1.0, x=(0.1,), y=())


@pytest.mark.parametrize("method", ["isotonic", "platt"])
def test_to_dict_is_json_and_round_trips(method: str) -> None:
    rng = np.random.default_rng(17)
    eps = rng.random(300)
    error = rng.random(300) < eps**0.5
    cal = fit_eps_calibration(eps, error, rng.uniform(0.2, 1.0, 300), method=method)  # type: ignore[arg-type]
    data = json.loads(json.dumps(cal.to_dict()))
    assert data["method"] == method and data["n_reviews"] == 300
    again = EpsCalibration.from_dict(data)
    assert again == cal
    np.testing.assert_array_equal(again(eps), cal(eps))
