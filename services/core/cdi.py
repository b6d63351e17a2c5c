"""Confidence-driven review sampling with a burn-in error model (CDI).

Gligoric, Zrnic, Lee, Candès and Jurafsky, "Can Unconfident LLM Annotations
Be Used for Confident Conclusions?" (NAACL 2025): spend part of the human
budget on a uniform random *burn-in*, learn from it how the LLM's confidence
relates to its errors, and spend the rest with review probabilities
proportional to the learned error probability, mixed with a uniform share so
every item keeps a chance of review; the estimate then combines the human and
the LLM labels with a power-tuned weight (PPI++, Angelopoulos, Duchi and
Zrnic, arXiv 2311.01453), which for training is the ACT loss with its lambda.

Here the confidence is the critic's eps and the error model is a logistic
regression of the burn-in's review outcomes on ``logit(eps)``
(:func:`services.core.recalibration.fit_eps_calibration`'s Platt map, which
needs no weights: the burn-in is uniform). Both phases are Poisson designs
(independent Bernoulli draws), so each item's inclusion probability is
``pi_i = q + (1 - q) p_i`` with ``q`` the burn-in rate and ``p_i`` its
second-phase probability: the ``1/pi`` weights of the ACT loss are exact
given the error model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from services.core.recalibration import FloatArray, check_probabilities, fit_eps_calibration


@dataclass(frozen=True)
class CdiDesign:
    """Who is reviewed (``delta``), with which inclusion probability (``pi``)."""

    delta: npt.NDArray[np.bool_]
    pi: FloatArray
    #: Reviewed in the burn-in (a subset of ``delta``).
    burn_in: npt.NDArray[np.bool_]
    #: The error model's probability that each machine label is wrong.
    predicted_error: FloatArray


def proportional_pi(weights: npt.ArrayLike, budget: float) -> FloatArray:
    """``pi_i = min(1, c w_i)`` with ``c`` such that ``sum pi = budget`` (water-filling).

    Unlike the paper's normalization rule, whose cap at 1 lets ``sum pi`` fall
    below B, the mass the cap removes is spread over the other items. Zero
    weights get 0 unless the budget exceeds the positive ones' count. Raises
    ValueError for negative or non-finite weights.
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or not np.isfinite(w).all() or (w < 0).any():
        raise ValueError("weights must be a 1-d array of finite values >= 0")
    n = w.size
    budget = float(min(max(budget, 0.0), n))
    pi = np.zeros(n)
    if n == 0 or budget == 0.0:
        return pi
    positive = w > 0
    if budget >= positive.sum():  # every positive item at 1, the rest share what is left
        pi[positive] = 1.0
        rest = ~positive
        if rest.any():
            pi[rest] = (budget - positive.sum()) / rest.sum()
        return pi
    capped = np.zeros(n, dtype=bool)
    for _ in range(n):
        free = positive & ~capped
        c = (budget - capped.sum()) / w[free].sum()
        over = free & (c * w >= 1.0)
        if not over.any():
            pi[free] = c * w[free]
            break
        capped |= over
    pi[capped] = 1.0
    return pi


def cdi_design(
    eps: npt.ArrayLike,
    error: npt.ArrayLike,
    budget: float,
    rng: np.random.Generator,
    *,
    burn_in_fraction: float = 0.2,
    uniform_share: float = 0.1,
) -> CdiDesign:
    """Draw reviews for ``budget`` items (expected) in a burn-in and a targeted phase.

    ``eps`` is the critic's error probability of each item; ``error`` whether
    its machine label is wrong, read **only** at the burn-in's reviews (what
    the people reviewing them find out). The burn-in reviews each item with
    probability ``q = burn_in_fraction * budget / N``; the second phase spends
    the rest of the budget on the others, in proportion to the error model's
    prediction mixed with ``uniform_share`` of a uniform design.
    """
    e = check_probabilities(eps, "eps")
    err = np.asarray(error, dtype=bool)
    n = e.size
    if err.shape != (n,):
        raise ValueError("error must have one entry per item")
    if not 0.0 <= burn_in_fraction <= 1.0 or not 0.0 <= uniform_share <= 1.0:
        raise ValueError("burn_in_fraction and uniform_share must be in [0, 1]")
    if n == 0:
        empty = np.zeros(0, dtype=bool)
        return CdiDesign(empty, np.zeros(0), empty, np.zeros(0))
    budget = float(min(max(budget, 0.0), n))
    q = burn_in_fraction * budget / n
    burn = rng.random(n) < q
    model = fit_eps_calibration(e[burn], err[burn], method="platt")  # identity below 20
    predicted = np.asarray(model(e), dtype=np.float64)
    # The second phase draws among the items the burn-in did not review, each
    # of which it reaches with probability 1 - q: its budget per such item.
    rest = budget - q * n
    targeted = proportional_pi(predicted, rest / max(1.0 - q, 1e-12))
    second = (1.0 - uniform_share) * targeted + uniform_share * min(1.0, rest / n / (1 - q))
    second = np.clip(second, 0.0, 1.0)
    drawn = (~burn) & (rng.random(n) < second)
    pi = q + (1.0 - q) * second
    return CdiDesign(delta=burn | drawn, pi=pi, burn_in=burn, predicted_error=predicted)
