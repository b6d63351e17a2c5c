"""Stacking the critic with a second opinion ranks errors better than either alone."""

from __future__ import annotations

import json

import numpy as np
import pytest

from services.core.fusion import (
    EpsFusion,
    fit_eps_fusion,
    fusion_gain,
    geometric_fusion,
    mean_fusion,
)
from services.core.metrics import abs_score
from services.core.recalibration import sigmoid

N = 20_000
NOISE = 1.2


def _abs(eps: np.ndarray, error: np.ndarray) -> float:
    """The paper's ABS of a critic (metrics.abs_score) with the review outcome as the error."""
    return abs_score(error.astype(np.int64), np.zeros(error.size, dtype=np.int64), eps)


def _draw(
    rng: np.random.Generator, n: int, second_signal: float = 1.5
) -> tuple[np.ndarray, np.ndarray]:
    """Errors at rate 0.2; each source's logit is signal * error + its own noise."""
    error = rng.random(n) < 0.2
    critic = sigmoid(2.0 * error - 2.5 + rng.normal(0.0, NOISE, n))
    model = sigmoid(second_signal * error - 2.0 + rng.normal(0.0, NOISE, n))
    return np.column_stack([critic, model]), error


def _fit_on_reviews(rng: np.random.Generator, second_signal: float = 1.5) -> EpsFusion:
    scores, error = _draw(rng, N, second_signal)
    pi = np.clip(scores[:, 0], 0.05, 1.0)  # the sampler follows the critic
    reviewed = rng.random(N) < pi
    return fit_eps_fusion(scores[reviewed], error[reviewed], pi[reviewed])


def test_stacking_two_independent_sources_beats_both() -> None:
    rng = np.random.default_rng(21)
    fusion = _fit_on_reviews(rng)
    assert fusion.method == "stacking"
    assert 1_000 < fusion.n_reviews < 10_000
    # With Gaussian noise of equal variance the Bayes logit is linear in the
    # sources' logits with slopes signal / noise^2: 2 / 1.44 and 1.5 / 1.44.
    assert fusion.coef[0] == pytest.approx(2.0 / NOISE**2, abs=0.25)
    assert fusion.coef[1] == pytest.approx(1.5 / NOISE**2, abs=0.25)
    scores, error = _draw(rng, N)  # a fresh held-out draw
    critic, model, fused = (
        _abs(scores[:, 0], error),
        _abs(scores[:, 1], error),
        _abs(fusion(scores), error),
    )
    assert fused >= max(critic, model) - 0.005
    assert fused > (critic + model) / 2
    assert fused > max(critic, model) + 0.01  # independent errors: a real gain
    # 1/pi weights: the fused eps is calibrated in the large on the stream.
    assert abs(fusion(scores).mean() - error.mean()) < 0.02


def test_a_useless_second_source_does_not_hurt() -> None:
    rng = np.random.default_rng(22)
    fusion = _fit_on_reviews(rng, second_signal=0.0)
    assert abs(fusion.coef[1]) < 0.2
    scores, error = _draw(rng, N, second_signal=0.0)
    assert _abs(scores[:, 1], error) == pytest.approx(0.5, abs=0.02)
    assert _abs(fusion(scores), error) >= _abs(scores[:, 0], error) - 0.01


def test_too_few_reviews_or_one_class_fall_back_to_the_mean() -> None:
    rng = np.random.default_rng(23)
    scores = rng.random((40, 3))
    expected = scores.mean(axis=1)
    for fusion in (
        fit_eps_fusion(scores[:19], rng.random(19) < 0.5),  # 19 < min_reviews = 20
        fit_eps_fusion(scores, np.zeros(40, dtype=bool)),
        fit_eps_fusion(scores, np.ones(40), np.full(40, 0.5)),
        fit_eps_fusion(np.empty((0, 3)), []),
    ):
        assert fusion.method == "mean"
        assert fusion.coef == pytest.approx((1 / 3,) * 3)
        np.testing.assert_allclose(fusion(scores), np.clip(expected, 1e-6, 1 - 1e-6))
    assert fit_eps_fusion(scores[:19], [0, 1] * 9 + [1], min_reviews=10).method == "stacking"
    assert mean_fusion(2, n_reviews=7) == EpsFusion((0.5, 0.5), 0.0, 7, "mean")


def test_geometric_fusion_is_a_logarithmic_opinion_pool() -> None:
    rng = np.random.default_rng(24)
    p, q = rng.uniform(0.001, 0.999, (2, 1_000))
    pair = np.column_stack([p, q])
    np.testing.assert_allclose(geometric_fusion(pair, [1.0, 0.0]), p, rtol=1e-9)
    np.testing.assert_allclose(geometric_fusion(pair, [0.0, 1.0]), q, rtol=1e-9)
    a, b = 0.7, 1.8
    fused = geometric_fusion(pair, [a, b])
    direct = p**a * q**b / (p**a * q**b + (1 - p) ** a * (1 - q) ** b)
    np.testing.assert_allclose(fused, np.clip(direct, 1e-6, 1 - 1e-6), rtol=1e-9)
    # Symmetric in the sources (with their exponents) and in error/no error.
    np.testing.assert_allclose(geometric_fusion(pair[:, ::-1], [b, a]), fused, rtol=1e-12)
    np.testing.assert_allclose(geometric_fusion(1 - pair, [a, b]), 1 - fused, rtol=1e-9, atol=1e-15)
    # Two agreeing sources with exponents summing to one give their opinion.
    np.testing.assert_allclose(geometric_fusion(np.column_stack([p, p]), [0.3, 0.7]), p)
    assert np.all(geometric_fusion(pair, [0.0, 0.0]) == 0.5)
    extreme = geometric_fusion(np.array([[0.0, 0.0], [1.0, 1.0], [1.0, 0.0]]), [50.0, 50.0])
    assert np.all((extreme > 0) & (extreme < 1))
    assert extreme[2] == pytest.approx(0.5)
    # A stacking map with intercept 0 is the pool with its coefficients as exponents.
    stacked = EpsFusion(coef=(a, b), intercept=0.0, n_reviews=0, method="stacking")
    np.testing.assert_allclose(stacked(pair), fused, rtol=1e-12)


def test_bad_input_is_refused() -> None:
    scores, error = np.full((3, 2), 0.5), [0, 1, 0]
    with pytest.raises(ValueError, match="2-d"):
        fit_eps_fusion([0.1, 0.2, 0.3], error)
    with pytest.raises(ValueError, match="one outcome per item"):
        fit_eps_fusion(scores, [0, 1])
    with pytest.raises(ValueError, match="scores contains NaN"):
        fit_eps_fusion([[0.1, np.nan]] * 3, error)
    with pytest.raises(ValueError, match=r"scores must be in \[0, 1\]"):
        fit_eps_fusion([[0.1, 1.5]] * 3, error)
    with pytest.raises(ValueError, match="pi must be > 0"):
        fit_eps_fusion(scores, error, [0.5, 0.0, 1.0])
    with pytest.raises(ValueError, match="C must be > 0"):
        fit_eps_fusion(scores, error, C=0.0)
    with pytest.raises(ValueError, match="min_reviews"):
        fit_eps_fusion(scores, error, min_reviews=-1)
    fusion = mean_fusion(2)
    with pytest.raises(ValueError, match="2 columns"):
        fusion(np.full((3, 3), 0.5))
    with pytest.raises(ValueError, match="unknown fusion method"):
        EpsFusion((1.0,), 0.0, 0, "vote")
    with pytest.raises(ValueError, match="at least one source"):
        EpsFusion((), 0.0, 0, "mean")
    with pytest.raises(ValueError, match="exponents"):
        geometric_fusion(scores, [1.0, -0.5])
    with pytest.raises(ValueError, match="exponents"):
        geometric_fusion(scores, [1.0, np.inf])
    with pytest.raises(ValueError, match="3 columns"):
        geometric_fusion(scores, [1.0, 1.0, 1.0])


def test_to_dict_is_json_and_round_trips() -> None:
    rng = np.random.default_rng(25)
    scores, error = _draw(rng, 2_000)
    fusion = fit_eps_fusion(scores, error, rng.uniform(0.2, 1.0, 2_000))
    data = json.loads(json.dumps(fusion.to_dict()))
    assert data["method"] == "stacking" and data["n_reviews"] == 2_000
    again = EpsFusion.from_dict(data)
    assert again == fusion
    np.testing.assert_array_equal(again(scores), fusion(scores))


def _reviews(
    rng: np.random.Generator, n: int, second_signal: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A stream of n items sampled like the sampler does: the reviews and their pi."""
    scores, error = _draw(rng, n, second_signal)
    pi = np.clip(scores[:, 0], 0.05, 1.0)
    reviewed = rng.random(n) < pi
    return scores[reviewed], error[reviewed], pi[reviewed]


def test_fusion_gain_finds_an_informative_second_source() -> None:
    # About 600 reviews, as a fit of a few thousand streamed items has.
    helped = 0
    for seed in range(10):
        rng = np.random.default_rng(100 + seed)
        gain = fusion_gain(*_reviews(rng, 2_000, second_signal=1.5), seed=seed)
        assert gain is not None and gain.folds == 5
        helped += gain.helps
    assert helped == 10


def test_fusion_gain_rejects_a_useless_second_source_most_of_the_time() -> None:
    # Out of fold, a pure-noise column only adds variance: fusing rarely wins,
    # and never by much.
    helped = 0
    for seed in range(20):
        rng = np.random.default_rng(200 + seed)
        gain = fusion_gain(*_reviews(rng, 2_000, second_signal=0.0), seed=seed)
        assert gain is not None
        helped += gain.helps
        assert gain.fused_loss > gain.first_loss - 0.01  # an informative one gains > 0.02
    assert helped <= 8


def test_fusion_gain_needs_enough_reviews_of_both_outcomes() -> None:
    rng = np.random.default_rng(24)
    scores = rng.random((100, 2))
    assert fusion_gain(scores[:10], np.arange(10) % 2 == 0) is None  # too few reviews
    few_errors = np.zeros(100, dtype=bool)
    few_errors[:3] = True
    assert fusion_gain(scores, few_errors, folds=5) is None  # 3 errors for 5 folds
    with pytest.raises(ValueError, match="k >= 2"):
        fusion_gain(scores[:, :1], np.arange(100) % 2 == 0)
    with pytest.raises(ValueError, match="folds"):
        fusion_gain(scores, np.arange(100) % 2 == 0, folds=1)


def test_fusion_gain_says_when_recalibrating_the_critic_alone_helps() -> None:
    # _draw's critic is not calibrated (its logit is 2 error - 2.5 plus noise): a
    # Platt map fitted out of fold beats its raw eps; once calibrated, nothing is left.
    rng = np.random.default_rng(300)
    scores, error, pi = _reviews(rng, 4_000, second_signal=1.5)
    gain = fusion_gain(scores, error, pi)
    assert gain is not None and gain.recalibrating_helps
    calibrated = np.column_stack(
        [fit_eps_fusion(scores[:, :1], error, pi)(scores[:, :1]), scores[:, 1]]
    )
    again = fusion_gain(calibrated, error, pi)
    assert again is not None and again.raw_loss < gain.raw_loss
    assert again.first_loss >= again.raw_loss - 0.005  # nothing left to fix
