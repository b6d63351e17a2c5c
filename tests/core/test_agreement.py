"""Fleiss' kappa is zero for independent raters and recovers the share of real agreement."""

from __future__ import annotations

import numpy as np
import pytest

from services.core.agreement import fleiss_kappa_pairs, per_reviewer_agreement

_SHARES = np.array([0.5, 0.3, 0.15, 0.05])


def _pairs(seed: int, copy_share: float, n: int = 40_000) -> list[tuple[int, int]]:
    """Rater B copies rater A with probability ``copy_share``, else draws on its own
    from the same label shares: the chance-corrected agreement is ``copy_share``."""
    rng = np.random.default_rng(seed)
    a = rng.choice(len(_SHARES), size=n, p=_SHARES)
    own = rng.choice(len(_SHARES), size=n, p=_SHARES)
    b = np.where(rng.random(n) < copy_share, a, own)
    return list(zip(a.tolist(), b.tolist(), strict=True))


def test_independent_raters_have_kappa_near_zero_but_nonzero_percent_agreement() -> None:
    result = fleiss_kappa_pairs(_pairs(1, 0.0))
    assert result.kappa is not None and abs(result.kappa) < 0.02
    # Chance agreement alone: the sum of squared shares.
    assert result.percent == pytest.approx(float((_SHARES**2).sum()), abs=0.01)


@pytest.mark.parametrize("copy_share", [0.3, 0.7])
def test_kappa_recovers_the_share_of_real_agreement(copy_share: float) -> None:
    result = fleiss_kappa_pairs(_pairs(2, copy_share))
    assert result.kappa == pytest.approx(copy_share, abs=0.02)


def test_edge_cases() -> None:
    assert fleiss_kappa_pairs([]).percent is None
    perfect = fleiss_kappa_pairs([(0, 0), (1, 1), (2, 2)])
    assert perfect.kappa == pytest.approx(1.0) and perfect.agreed == 3
    # One label only: chance agreement is 1, kappa undefined.
    assert fleiss_kappa_pairs([(1, 1), (1, 1)]).kappa is None
    opposite = fleiss_kappa_pairs([(0, 1), (1, 0)])
    assert opposite.percent == 0.0 and opposite.kappa is not None and opposite.kappa < 0


def test_per_reviewer_agreement_counts_each_reviewer_of_a_pair() -> None:
    found = per_reviewer_agreement([("a", 1, "b", 1), ("a", 0, "c", 2), ("b", 3, "c", 3)])
    assert found == {"a": (1, 2), "b": (2, 2), "c": (1, 2)}
