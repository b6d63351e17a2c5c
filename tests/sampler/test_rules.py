"""The paper's sampling rules and exact batch sampling (pure, seeded)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from services.core import batch as rb
from services.core import sampling as r
from services.core.sampling import Rule

SIGMA = 4.0  # binomial tolerance: a correct sampler fails a 4-sigma check ~1e-4 of the time


def binomial_p_value(k: int, n: int, p: float) -> float:
    """Exact two-sided p-value of ``k`` successes in ``n`` Bernoulli(p) trials."""
    if p <= 0.0:
        return 1.0 if k == 0 else 0.0
    if p >= 1.0:
        return 1.0 if k == n else 0.0

    def pmf(i: int) -> float:
        return math.exp(
            math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1)
            + i * math.log(p) + (n - i) * math.log1p(-p)
        )  # fmt: skip

    lower = sum(pmf(i) for i in range(k + 1))
    upper = sum(pmf(i) for i in range(k, n + 1))
    return min(1.0, 2.0 * min(lower, upper))


def _ids(n: int, prefix: str = "item") -> list[str]:
    return [f"{prefix}-{i:05d}" for i in range(n)]


def _skewed(n: int, seed: int = 1) -> np.ndarray:
    """Most items look right, a few look wrong: Beta(0.5, 5), mean ~0.09."""
    return np.random.default_rng(seed).beta(0.5, 5.0, n)


# ------------------------------------------------------------------ formulas


def test_normalization_is_budget_times_eps_over_sum_capped_at_one() -> None:
    eps = np.array([0.1, 0.2, 0.3, 0.4])
    assert r.normalization_pi(eps, 2.0).tolist() == pytest.approx([0.2, 0.4, 0.6, 0.8])
    # Capped: 3 * 0.4 / 1.0 = 1.2 -> 1.
    assert r.normalization_pi(eps, 3.0)[-1] == 1.0
    assert r.normalization_pi(np.zeros(4), 2.0).tolist() == [0.5] * 4


def test_exponential_is_the_logistic_centred_at_alpha() -> None:
    eps = np.array([0.0, 0.3, 0.6, 1.0])
    got = r.exponential_pi(eps, alpha=0.3, beta=10.0)
    want = 1.0 / (1.0 + np.exp(-10.0 * (eps - 0.3)))
    assert got == pytest.approx(want, abs=1e-12)
    assert got[1] == pytest.approx(0.5)
    # Huge beta approaches thresholding (paper: thresholding is the beta -> inf limit).
    steep = r.exponential_pi(eps, alpha=0.45, beta=1e6)
    assert steep.tolist() == r.threshold_pi(eps, 0.45).tolist() == [0.0, 0.0, 1.0, 1.0]


def test_budget_quantile_takes_the_value_at_rank_b() -> None:
    eps = np.arange(1, 11) / 10.0  # 0.1 .. 1.0
    assert r.budget_quantile(eps, 0.3) == pytest.approx(0.8)  # top 3: 1.0, 0.9, 0.8
    assert r.threshold_pi(eps, r.budget_quantile(eps, 0.3)).sum() == 3
    assert r.budget_quantile(eps, 0.05) == math.inf  # B = floor(0.5) = 0
    assert r.budget_count(0.1, 10) == 1  # 0.1 * 10 is not rounded down to 0


def test_solve_alpha_makes_expected_spend_equal_budget() -> None:
    eps = _skewed(2000)
    for budget in (20, 200, 1000):
        alpha = r.solve_alpha(eps, budget, 10.0)
        assert r.exponential_pi(eps, alpha, 10.0).sum() == pytest.approx(budget, rel=1e-6)
    # The paper's quantile alpha overspends on skewed eps (why "solve" is the default).
    quantile_alpha = r.budget_quantile(eps, 0.1)
    assert r.exponential_pi(eps, quantile_alpha, 10.0).sum() > 1.5 * 200


def test_pi_floor() -> None:
    got = r.apply_pi_floor(np.array([0.0, 0.01, 0.5, 1.0]), 0.05)
    assert got.tolist() == [0.05, 0.05, 0.5, 1.0]
    with pytest.raises(ValueError):
        r.apply_pi_floor(np.array([0.1]), 1.5)


def test_draw_is_reproducible_uniform_and_keyed_by_seed_task_item() -> None:
    u = r.bernoulli_draw(7, "task", "item-1")
    assert u == r.bernoulli_draw(7, "task", "item-1")
    assert 0.0 <= u < 1.0
    assert len({u, r.bernoulli_draw(8, "task", "item-1"), r.bernoulli_draw(7, "task2", "item-1"),
                r.bernoulli_draw(7, "task", "item-2")}) == 4  # fmt: skip
    # Length prefixes: ("ab", "c") and ("a", "bc") must not collide.
    assert r.bernoulli_draw(0, "ab", "c") != r.bernoulli_draw(0, "a", "bc")
    draws = r.bernoulli_draws(3, "task", _ids(20_000))
    # Uniform: mean 1/2 (sd 0.002), each decile holds ~10%.
    assert abs(draws.mean() - 0.5) < SIGMA * math.sqrt(1 / 12 / 20_000)
    counts = np.histogram(draws, bins=10, range=(0.0, 1.0))[0]
    assert np.all(np.abs(counts - 2000) < SIGMA * math.sqrt(2000 * 0.9))


@pytest.mark.parametrize("bad", [[-0.1], [1.1], [math.nan]])
def test_eps_outside_unit_interval_is_rejected(bad: list[float]) -> None:
    with pytest.raises(ValueError):
        r.normalization_pi(bad, 1.0)


# ---------------------------------------------------------------- batch mode


@pytest.mark.parametrize(
    ("rule", "alpha_method"),
    [
        (Rule.NORMALIZATION, "quantile"),
        (Rule.EXPONENTIAL, "solve"),
        (Rule.EXPONENTIAL, "quantile"),
        (Rule.THRESHOLD, "quantile"),
    ],
)
def test_selection_frequency_matches_pi_over_seeds(rule: Rule, alpha_method: str) -> None:
    """delta ~ Bernoulli(pi): over many seeds each item is drawn with frequency pi."""
    n, seeds = 300, 600
    eps = _skewed(n, seed=11)
    ids = _ids(n)
    drawn = np.zeros(n)
    kept = np.zeros(n)
    pi = None
    for seed in range(seeds):
        _summary, decisions = rb.batch_summary_and_decisions(
            eps,
            ids,
            rule,
            0.1,
            seed=seed,
            alpha_method=alpha_method,  # type: ignore[arg-type]
        )
        pi_s = np.array([d.pi for d in decisions])
        if pi is None:
            pi = pi_s
        assert np.array_equal(pi, pi_s)  # pi does not depend on the seed
        drawn += [d.delta or d.trimmed for d in decisions]
        kept += [d.delta for d in decisions]
    assert pi is not None
    # The Bernoulli draws (before the budget trim) match pi for every item
    # (exact binomial test, Bonferroni over the items: a correct sampler fails ~1e-5) ...
    p_values = [binomial_p_value(int(k), seeds, float(p)) for k, p in zip(drawn, pi, strict=True)]
    assert min(p_values) > 1e-5 / n
    # ... and the trim only ever lowers the frequency (documented bias).
    assert np.all(kept <= drawn)
    soft = (pi > 0) & (pi < 1)
    if not soft.any():  # thresholding: pi in {0, 1}, exactly the top B, never trimmed
        assert np.array_equal(kept, pi * seeds)
    elif rule is not Rule.EXPONENTIAL or alpha_method == "solve":
        # With sum(pi) = B the trim is rare: over all items the kept count is
        # within a few percent of sum(pi) (the trim's small downward bias).
        assert kept[soft].sum() >= 0.9 * pi[soft].sum() * seeds
    else:
        # Quantile alpha with beta = 10 overspends about 2x: most draws are trimmed.
        assert kept.sum() < 0.7 * drawn.sum()


@pytest.mark.parametrize("rule", list(Rule))
@pytest.mark.parametrize("pi_min", [0.0, 0.05, 0.5])
def test_budget_is_never_exceeded(rule: Rule, pi_min: float) -> None:
    rng = np.random.default_rng(5)
    for trial in range(40):
        n = int(rng.integers(1, 400))
        fraction = float(rng.choice([0.0, 0.01, 0.1, 0.33, 0.9, 1.0]))
        eps = rng.choice(
            [_skewed(n, trial), rng.uniform(0, 1, n), np.round(rng.uniform(0, 1, n), 1)]
        )
        decisions = rb.sample_batch(
            eps, _ids(n), rule, fraction, pi_min=pi_min, seed=trial, task_id="t"
        )
        assert sum(d.delta for d in decisions) <= math.floor(fraction * n + 1e-9)


def test_threshold_selects_exactly_the_top_b_by_eps() -> None:
    eps = _skewed(1000, seed=3)
    ids = _ids(1000)
    for fraction in (0.01, 0.1, 0.25):
        decisions = rb.sample_batch(eps, ids, Rule.THRESHOLD, fraction, seed=9, task_id="t")
        b = r.budget_count(fraction, 1000)
        chosen = {d.item_id for d in decisions if d.delta}
        top = {ids[i] for i in np.argsort(-eps)[:b]}
        assert chosen == top
        assert all(d.pi == 1.0 for d in decisions if d.delta)
        assert all(d.pi == 0.0 for d in decisions if not d.delta)


def test_threshold_ties_at_tau_are_broken_by_the_draw_with_the_tie_share_as_pi() -> None:
    eps = [0.9, 0.9, 0.5, 0.5, 0.5, 0.5, 0.1, 0.1, 0.1, 0.1]  # B = 4 for b = 0.4
    ids = _ids(10)
    taken = np.zeros(10)
    for seed in range(400):
        decisions = rb.sample_batch(eps, ids, Rule.THRESHOLD, 0.4, seed=seed, task_id="t")
        assert sum(d.delta for d in decisions) == 4  # exactly B, not all six items >= tau
        assert [d.pi for d in decisions] == [1.0, 1.0] + [0.5] * 4 + [0.0] * 4
        taken += [d.delta for d in decisions]
    # Each tied item is taken half of the time (2 slots for 4 tied items).
    share = taken[2:6] / 400
    assert np.all(np.abs(share - 0.5) < SIGMA * math.sqrt(0.25 / 400))


def test_small_budget_normalization_gives_q_near_zero_thresholding_q_one() -> None:
    """Paper, section 5.1 / Theorem 5.2: q = min pi over reviewed items.

    At a 10% budget on a skewed eps distribution normalization reviews items
    it gave a tiny pi (q -> 0, large parameter gap), thresholding only items
    with pi = 1 (q = 1).
    """
    eps = _skewed(5000, seed=21)
    ids = _ids(5000)
    norm = rb.sample_batch(eps, ids, Rule.NORMALIZATION, 0.1, seed=1, task_id="t")
    thre = rb.sample_batch(eps, ids, Rule.THRESHOLD, 0.1, seed=1, task_id="t")
    norm_pi = np.array([d.pi for d in norm if d.delta])
    thre_pi = np.array([d.pi for d in thre if d.delta])
    assert norm_pi.min() < 0.01  # q -> 0
    assert np.median(norm_pi) < 0.5  # pi near 0 for most selected items
    assert thre_pi.min() == 1.0  # q = 1
    assert len(thre_pi) == 500


@pytest.mark.parametrize("rule", list(Rule))
def test_pi_floor_reaches_items_the_rule_would_never_review(rule: Rule) -> None:
    n, seeds, floor = 2000, 40, 0.02
    eps = np.zeros(n)  # the critic sees no error in most items ...
    eps[:300] = _skewed(300, seed=2) * 0.5 + 0.5  # ... and likely errors in a few
    ids = _ids(n)
    zero = eps == 0.0
    for pi_min, expect_rate in ((0.0, 0.0), (floor, floor)):
        drawn = 0
        for seed in range(seeds):
            decisions = rb.sample_batch(eps, ids, rule, 0.1, pi_min=pi_min, seed=seed, task_id="t")
            assert sum(d.delta for d in decisions) <= 200
            assert all(d.pi >= pi_min for d in decisions)
            drawn += sum(d.delta or d.trimmed for d, z in zip(decisions, zero, strict=True) if z)
        trials = seeds * int(zero.sum())
        if rule is Rule.NORMALIZATION and pi_min == 0.0:
            assert drawn == 0  # B * 0 / sum(eps) = 0: never reviewable
        elif rule is Rule.THRESHOLD and pi_min == 0.0:
            assert drawn == 0  # below tau: never reviewable
        elif pi_min > 0.0:
            # Every zero-eps item is drawn with probability (at least) the floor.
            sd = math.sqrt(expect_rate * (1 - expect_rate) / trials)
            assert drawn / trials >= expect_rate - SIGMA * sd


def test_single_item_decisions_equal_the_batch_and_the_summary_round_trips() -> None:
    eps = np.round(_skewed(500, seed=8), 2)  # coarse values: ties everywhere
    ids = _ids(500)
    for rule in Rule:
        summary, decisions = rb.batch_summary_and_decisions(
            eps, ids, rule, 0.1, pi_min=0.01, seed=4, task_id="t"
        )
        restored = rb.BatchSummary.from_bytes(summary.to_bytes())
        assert restored == summary
        for d in decisions:
            again = rb.decide_in_batch(
                restored, d.eps, r.bernoulli_draw(4, "t", d.item_id), d.item_id
            )
            assert again == d
        assert summary.selected == sum(d.delta for d in decisions)
        assert summary.trimmed == sum(d.trimmed for d in decisions)


def test_batch_is_reproducible() -> None:
    eps = _skewed(300)
    first = rb.sample_batch(eps, _ids(300), Rule.NORMALIZATION, 0.1, seed=42, task_id="t")
    again = rb.sample_batch(eps, _ids(300), Rule.NORMALIZATION, 0.1, seed=42, task_id="t")
    other = rb.sample_batch(eps, _ids(300), Rule.NORMALIZATION, 0.1, seed=43, task_id="t")
    assert first == again
    assert [d.delta for d in first] != [d.delta for d in other]
