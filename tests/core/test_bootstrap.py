"""The percentile bootstrap interval covers a known mean about 95% of the time."""

from __future__ import annotations

import numpy as np
import pytest

from services.core.bootstrap import Interval, bootstrap_values, percentile_interval


def test_coverage_of_a_known_mean_is_close_to_95_percent() -> None:
    # 400 simulated samples of 60 exponential draws (true mean 1.0): a skewed
    # distribution, where the percentile interval is known to under-cover
    # slightly at small n (Efron & Tibshirani 1993, ch. 13-14). Its coverage
    # must still be near 0.95; a wrong quantile (e.g. 90%) or a broken
    # resampling (no replacement: width 0) would fall far outside.
    rng = np.random.default_rng(20261207)
    trials, n, covered = 400, 60, 0
    for _ in range(trials):
        sample = rng.exponential(1.0, size=n)
        ci = percentile_interval(
            lambda idx, s=sample: float(s[idx].mean()), n, resamples=400, rng=rng
        )
        covered += ci.low <= 1.0 <= ci.high
    coverage = covered / trials
    # Binomial standard error at 0.95 over 400 trials is ~0.011.
    assert 0.90 <= coverage <= 0.98, coverage


def test_the_interval_contains_the_estimate_and_narrows_with_more_items() -> None:
    rng = np.random.default_rng(1)
    small = rng.normal(size=30)
    big = rng.normal(size=3000)
    ci_small = percentile_interval(lambda idx: float(small[idx].mean()), small.size, seed=2)
    ci_big = percentile_interval(lambda idx: float(big[idx].mean()), big.size, seed=2)
    assert ci_small.low <= ci_small.estimate <= ci_small.high
    assert (ci_big.high - ci_big.low) < (ci_small.high - ci_small.low) / 5
    # Width of a mean's interval is about 2 * 1.96 / sqrt(n) for unit variance.
    assert (ci_big.high - ci_big.low) == pytest.approx(2 * 1.96 / np.sqrt(3000), rel=0.15)


def test_seeded_resampling_is_reproducible_and_paired_over_one_index_draw() -> None:
    a = np.arange(50, dtype=np.float64)
    first = bootstrap_values(lambda idx: float(a[idx].mean()), 50, resamples=20, seed=7)
    again = bootstrap_values(lambda idx: float(a[idx].mean()), 50, resamples=20, seed=7)
    assert np.array_equal(first, again)
    # A paired difference of identical scores is exactly 0 in every resample.
    diff = percentile_interval(lambda idx: float(a[idx].mean() - a[idx].mean()), 50, seed=3)
    assert (diff.low, diff.high) == (0.0, 0.0)
    assert not diff.excludes(0.0) and diff.sign() == 0


def test_nan_resamples_are_dropped_and_sign_reads_the_interval() -> None:
    flags = np.array([1.0] + [0.0] * 9)
    # NaN whenever the resample misses the one flagged item.
    ci = percentile_interval(
        lambda idx: float(flags[idx].mean()) if flags[idx].any() else float("nan"), 10, seed=0
    )
    assert ci.low > 0.0 and ci.sign() == 1
    assert Interval(0.0, -2.0, -1.0).sign() == -1
    with pytest.raises(ValueError):
        percentile_interval(lambda idx: 0.0, 0)
