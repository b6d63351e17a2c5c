"""Drawing ``delta ~ Bernoulli(pi_B(eps))`` for offline fits and experiments.

The formulas and the exact batch procedure live in :mod:`services.core.sampling`
and :mod:`services.core.batch`
(the sampler service's own code), so an offline experiment samples exactly as
the production sampler does in batch mode: same rules, same quantiles, same
hash-derived draws, same ``sum delta <= B`` trim. The parameters are the
sampler's own :class:`~services.core.params.SamplingParams`. This module only
adapts that API to arrays (paper, section 2 and appendix A.3).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from services.core.batch import batch_summary_and_decisions
from services.core.params import SamplingParams
from services.core.sampling import (
    DEFAULT_BETA,
    Rule,
    bernoulli_draws,
    budget_count,
    budget_quantile,
    exponential_pi,
    normalization_pi,
    threshold_pi,
)

__all__ = [
    "DEFAULT_BETA",
    "Rule",
    "SampledReviews",
    "SamplingParams",
    "budget_quantile",
    "exponential_pi",
    "normalization_pi",
    "sample_reviews",
    "threshold_pi",
]


@dataclass(frozen=True, slots=True)
class SampledReviews:
    """The sampler's decisions for a bounded data set, as arrays."""

    delta: npt.NDArray[np.bool_]
    pi: npt.NDArray[np.float64]
    #: What the draws were made with.
    params: SamplingParams
    #: Drawn items dropped to keep ``sum delta <= B`` (their recorded pi overstates
    #: the true inclusion probability slightly; see services.core.batch).
    trimmed: int
    alpha: float | None = None
    beta: float | None = None
    tau: float | None = None

    @property
    def rule(self) -> Rule:
        """The sampling rule."""
        return self.params.rule

    @property
    def budget_fraction(self) -> float:
        """The budget fraction b."""
        return self.params.budget_fraction

    @property
    def reviewed(self) -> int:
        """``sum delta``: human reviews spent."""
        return int(self.delta.sum())

    @property
    def min_pi_reviewed(self) -> float:
        """``q`` of Theorem 5.2: the smallest pi among reviewed items (1.0 if none)."""
        return float(self.pi[self.delta].min()) if self.delta.any() else 1.0


def sample_reviews(
    eps: npt.ArrayLike,
    params: SamplingParams,
    *,
    ids: Sequence[str] | None = None,
    task_id: str = "experiment",
    trim: bool = True,
) -> SampledReviews:
    """Decide which items a human reviews, exactly as the sampler's batch mode does.

    ``params`` as the sampler gets them (its ``mode`` and streaming fields are
    not used: this is batch sampling). ``params.alpha_method='quantile'`` is
    the paper's choice (appendix A.3: alpha at the budget quantile, beta = 10
    or 100); ``'solve'`` makes ``sum pi = B``.

    ``trim=False`` draws ``delta_i = u_i < pi_i`` independently and keeps every
    draw, as active M-estimation does (Zrnic and Candes 2024; the paper's
    normalization rule): ``sum delta <= B`` then holds only in expectation
    (normalization has ``E[sum delta] = B``). The sampler service always trims,
    which drops the *lowest*-eps draws, i.e. exactly the items with the largest
    weights ``1/pi``; that changes how the normalization rule behaves, so the
    paper's Table 3 is reproduced without the trim. Thresholding is exact
    either way.
    """
    e = np.asarray(eps, dtype=np.float64)
    item_ids = list(ids) if ids is not None else [f"i{i}" for i in range(e.size)]
    p = params
    rule, budget_fraction, beta, pi_min = p.rule, p.budget_fraction, p.beta, p.pi_min
    if not trim and rule is not Rule.THRESHOLD:
        u = bernoulli_draws(p.seed, task_id, item_ids)
        b = budget_count(budget_fraction, e.size)
        alpha: float | None = None
        if rule is Rule.NORMALIZATION:
            pi = normalization_pi(e, b)
        else:
            from services.core.sampling import solve_alpha

            if p.alpha is not None:
                alpha = p.alpha
            elif p.alpha_method == "solve":
                alpha = solve_alpha(e, b, beta)
            else:
                alpha = budget_quantile(e, budget_fraction)
            pi = exponential_pi(e, alpha, beta)
        pi = np.clip(np.maximum(pi, pi_min), 0.0, 1.0)
        return SampledReviews(
            delta=u < pi,
            pi=pi,
            params=p,
            trimmed=0,
            alpha=alpha,
            beta=beta if rule is Rule.EXPONENTIAL else None,
        )
    summary, decisions = batch_summary_and_decisions(
        e,
        item_ids,
        rule,
        budget_fraction,
        beta,
        pi_min,
        p.seed,
        task_id,
        alpha_method=p.alpha_method,
        alpha=p.alpha,
        tau=p.tau,
    )
    return SampledReviews(
        delta=np.fromiter((d.delta for d in decisions), dtype=np.bool_, count=e.size),
        pi=np.fromiter((d.pi for d in decisions), dtype=np.float64, count=e.size),
        params=p,
        trimmed=summary.trimmed,
        alpha=summary.alpha,
        beta=summary.beta,
        tau=summary.tau,
    )
