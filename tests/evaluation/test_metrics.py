"""AQG, ABS and the budgets (paper, section 2; appendix F): exact and statistical checks."""

from __future__ import annotations

import numpy as np
import pytest

from services.core.baselines import oracle_critic_eps, random_critic_eps
from services.core.metrics import (
    abs_score,
    accuracy,
    aqg,
    aqg_at_budget,
    budget_curve,
    budget_items,
    corrected_labels_at_budget,
    expected_corrections,
    ideal_budget,
    oracle_abs,
    random_abs_moments,
    recommended_budget,
    review_order,
)

# A hand-checked example: errors at positions 1 and 3 (machine accuracy 3/5).
MACHINE = [0, 1, 1, 0, 2]
HUMAN = [0, 0, 1, 1, 2]
GOOD_EPS = [0.1, 0.9, 0.2, 0.5, 0.3]  # reviews 1, 3, 4, 2, 0: both errors first
BAD_EPS = [0.9, 0.1, 0.8, 0.2, 0.7]  # reviews 0, 2, 4, 3, 1: both errors last


def test_accuracy_and_ideal_budget():
    assert accuracy(MACHINE, HUMAN) == pytest.approx(0.6)
    assert ideal_budget(MACHINE, HUMAN) == pytest.approx(0.4)
    assert accuracy([], []) == 1.0
    with pytest.raises(ValueError, match="differ in length"):
        accuracy([0, 1], [0])
    with pytest.raises(ValueError, match="integer"):
        accuracy([0.5], [0])


def test_aqg_by_hand():
    # One of the two errors fixed: (0.8 - 0.6) / (1 - 0.6) = 0.5.
    assert aqg(MACHINE, [0, 0, 1, 0, 2], HUMAN) == pytest.approx(0.5)
    assert aqg(MACHINE, HUMAN, HUMAN) == pytest.approx(1.0)
    assert aqg(MACHINE, MACHINE, HUMAN) == pytest.approx(0.0)
    # No room for improvement: 1.0 by convention.
    assert aqg(HUMAN, HUMAN, HUMAN) == 1.0


def test_corrected_labels_at_budget_replaces_the_top_b():
    assert corrected_labels_at_budget(MACHINE, HUMAN, GOOD_EPS, 0).tolist() == MACHINE
    assert corrected_labels_at_budget(MACHINE, HUMAN, GOOD_EPS, 1).tolist() == [0, 0, 1, 0, 2]
    assert corrected_labels_at_budget(MACHINE, HUMAN, GOOD_EPS, 2).tolist() == HUMAN
    assert corrected_labels_at_budget(MACHINE, HUMAN, BAD_EPS, 3).tolist() == MACHINE
    assert corrected_labels_at_budget(MACHINE, HUMAN, GOOD_EPS, 5).tolist() == HUMAN
    with pytest.raises(ValueError, match="budget"):
        corrected_labels_at_budget(MACHINE, HUMAN, GOOD_EPS, 6)
    # Ties keep the data order (stable).
    assert review_order([0.5, 0.7, 0.5, 0.7]).tolist() == [1, 3, 0, 2]


def test_budget_curve_and_abs_by_hand():
    assert budget_curve(MACHINE, HUMAN, GOOD_EPS).tolist() == [0, 0.5, 1, 1, 1, 1]
    assert abs_score(MACHINE, HUMAN, GOOD_EPS) == pytest.approx(4.5 / 6)
    assert budget_curve(MACHINE, HUMAN, BAD_EPS).tolist() == [0, 0, 0, 0, 0.5, 1]
    assert abs_score(MACHINE, HUMAN, BAD_EPS) == pytest.approx(1.5 / 6)
    assert aqg_at_budget(MACHINE, HUMAN, GOOD_EPS, 1) == pytest.approx(0.5)
    # The oracle reviews errors first: here it equals GOOD_EPS's order.
    assert abs_score(MACHINE, HUMAN, oracle_critic_eps(MACHINE, HUMAN)) == pytest.approx(0.75)
    assert oracle_abs(5, 2) == pytest.approx(0.75)
    assert oracle_abs(5, 0) == 1.0
    assert budget_curve(HUMAN, HUMAN, GOOD_EPS).tolist() == [1.0] * 6


def test_ties_count_as_random_tie_breaking():
    # A constant critic says nothing: every budget fixes its share of errors in expectation.
    curve = budget_curve(MACHINE, HUMAN, [0.3] * 5)
    assert curve == pytest.approx(np.arange(6) / 5)
    assert abs_score(MACHINE, HUMAN, [0.3] * 5) == pytest.approx(0.5)
    # Partial ties: the two top items tie, one of them wrong -> 1/2 error expected at B=1.
    c = expected_corrections(MACHINE, HUMAN, [0.9, 0.9, 0.1, 0.2, 0.0])
    assert c.tolist() == pytest.approx([0, 0.5, 1, 2, 2, 2])


def _random_case(rng: np.random.Generator, n: int = 60, classes: int = 4):
    human = rng.integers(0, classes, n)
    machine = np.where(rng.random(n) < 0.3, rng.integers(0, classes, n), human)
    return machine, human


def test_properties_on_random_cases():
    rng = np.random.default_rng(7)
    for _ in range(50):
        machine, human = _random_case(rng)
        eps = rng.random(machine.size)  # distinct almost surely
        curve = budget_curve(machine, human, eps)
        assert curve.shape == (machine.size + 1,)
        assert np.all(np.diff(curve) >= -1e-12), "the budget curve never decreases"
        assert curve[0] == pytest.approx(0.0 if (machine != human).any() else 1.0)
        assert curve[-1] == pytest.approx(1.0)
        for budget in (0, 1, 7, machine.size // 2, machine.size):
            corrected = corrected_labels_at_budget(machine, human, eps, budget)
            value = aqg(machine, corrected, human)
            assert 0.0 <= value <= 1.0
            assert value == pytest.approx(curve[budget])  # no ties: both definitions agree
        score = abs_score(machine, human, eps)
        oracle = abs_score(machine, human, oracle_critic_eps(machine, human))
        assert 0.0 <= score <= oracle <= 1.0
        assert oracle == pytest.approx(oracle_abs(machine.size, int((machine != human).sum())))


def test_oracle_curve_rises_linearly_then_stays_at_one():
    machine, human = _random_case(np.random.default_rng(3), n=100)
    errors = int((machine != human).sum())
    curve = budget_curve(machine, human, oracle_critic_eps(machine, human))
    assert np.all(np.diff(curve) >= 0)
    assert curve[: errors + 1] == pytest.approx(np.arange(errors + 1) / errors)
    assert np.all(curve[errors:] == 1.0)


def test_random_critic_abs_is_one_half_in_expectation():
    """E[ABS] = 1/2 and Var[ABS] = (N - E) / (12 E (N + 1)) (random_abs_moments)."""
    rng = np.random.default_rng(11)
    n, n_errors, draws = 200, 40, 400
    human = rng.integers(0, 3, n)
    machine = human.copy()
    wrong = rng.choice(n, n_errors, replace=False)
    machine[wrong] = (human[wrong] + 1) % 3
    scores = np.array([abs_score(machine, human, random_critic_eps(n, s)) for s in range(draws)])
    mean, var = random_abs_moments(n, n_errors)
    assert mean == 0.5
    standard_error = np.sqrt(var / draws)
    assert abs(scores.mean() - mean) < 4 * standard_error
    # Sample variance within ~3 of its standard errors (relative sd sqrt(2 / (draws - 1))).
    assert scores.var(ddof=1) == pytest.approx(var, rel=3 * np.sqrt(2 / (draws - 1)))


def test_random_critic_is_reproducible_and_in_range():
    a, b = random_critic_eps(50, 5), random_critic_eps(50, 5)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, random_critic_eps(50, 6))
    assert a.min() >= 0.0 and a.max() < 1.0


def test_budgets():
    assert recommended_budget(0.2181) == pytest.approx(0.3181)  # Fashion, GPT-4o in the paper
    assert recommended_budget(0.95) == 1.0
    assert recommended_budget(0.1, buffer=0.0) == pytest.approx(0.1)
    with pytest.raises(ValueError):
        recommended_budget(1.5)
    assert budget_items(0.25, 10) == 2  # floor(bN)
    assert budget_items(0.3, 10) == 3  # no floating-point surprise
    assert budget_items(1.0, 7) == 7


def test_input_validation():
    with pytest.raises(ValueError, match="one score per item"):
        abs_score(MACHINE, HUMAN, [0.1, 0.2])
    with pytest.raises(ValueError, match="NaN"):
        abs_score(MACHINE, HUMAN, [0.1, np.nan, 0.2, 0.3, 0.4])
    with pytest.raises(ValueError):
        random_abs_moments(10, 0)
