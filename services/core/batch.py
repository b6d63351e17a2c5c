"""Exact batch sampling (a bounded data set: all ``eps`` known, exact quantiles,
as in the paper), built on the rules of :mod:`services.core.sampling`.

Enforcing ``sum delta <= B`` exactly
------------------------------------
Independent Bernoulli draws can exceed ``B`` (normalization has
``E[sum delta] = B``, so about half of all batches would). When they do, the
batch keeps the ``B`` drawn items with the highest eps (ties: lower draw, then
item id) and *trims* the rest to ``delta = 0``. The trimmed items keep their
nominal ``pi`` and ``draw < pi`` in their decision, so a trim is visible in the
record; the price is that the true inclusion probability of low-eps drawn
items is slightly below the recorded ``pi`` (the ACT loss weights them a
little too lightly). :func:`summarize_batch` counts trims so they can be
monitored; thresholding without a floor never trims.

Choices beyond the paper
------------------------
* ``alpha``: ``"quantile"`` is the paper's choice (A.3). With ``beta = 10``
  the logistic is soft, and on a skewed eps distribution ``sum pi`` comes out
  near ``2 B``: half of all draws are then trimmed and the recorded pi
  overstate the inclusion probabilities about twofold. ``"solve"`` (the
  default, as ``SamplingConfig.alpha`` documents) picks alpha so that
  ``sum pi = B``.
* Thresholding ties: when items tied at ``tau`` straddle the cut, the batch
  takes a uniformly random subset of the needed size (by draw) and records
  ``pi = slots / tied`` for the tied items, their true inclusion probability;
  without ties every pi is 0 or 1 (the paper's ``q = 1``).
* Exploration floor with thresholding: the top ``B'`` items with
  ``B' + pi_min (N - B') <= B`` are taken, the rest are drawn with
  ``pi_min`` (see :func:`apply_pi_floor` for why a floor exists at all).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import ArrayLike

from services.core.sampling import (
    DEFAULT_BETA,
    AlphaMethod,
    FloatArray,
    Rule,
    _as_eps,
    bernoulli_draws,
    budget_count,
    budget_quantile,
    solve_alpha,
)

# ---------------------------------------------------------------- batch mode

_SUMMARY_MAGIC = b"ACTB1"


@dataclass(frozen=True, slots=True)
class BatchSummary:
    """Everything needed to decide any item of a batch from its own (eps, draw, id).

    Persisted (``to_bytes``) next to the batch's decisions so that a batch whose
    decisions committed on some partitions but not on others can be finished
    after a restart without the eps of the already-committed items.
    """

    rule: Rule
    n: int
    budget: int  # B = floor(budget_fraction * n)
    budget_fraction: float
    pi_min: float
    seed: int
    beta: float | None = None
    alpha: float | None = None
    alpha_method: AlphaMethod | None = None
    tau: float | None = None
    sum_eps: float | None = None  # normalization
    # Thresholding: items with eps > tau are taken (pi = 1); of the items tied at
    # tau, the ones whose (draw, id) is at most tie_cutoff are taken, which is a
    # uniformly random subset of fixed size, so their pi is tie_pi.
    tie_pi: float | None = None
    tie_cutoff_draw: float | None = None
    tie_cutoff_id: str | None = None
    # Budget trim: drawn items whose key (-eps, draw, id) sorts after this one
    # were dropped to keep sum delta <= B.
    trim_eps: float | None = None
    trim_draw: float | None = None
    trim_id: str | None = None
    drawn: int = 0
    selected: int = 0
    trimmed: int = 0

    def to_bytes(self) -> bytes:
        """Versioned encoding (JSON: floats round-trip exactly, inf as Infinity)."""
        return _SUMMARY_MAGIC + json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> BatchSummary:
        """Inverse of :meth:`to_bytes`; ``ValueError`` for anything else."""
        if not data.startswith(_SUMMARY_MAGIC):
            raise ValueError("not a batch summary")
        raw = json.loads(data[len(_SUMMARY_MAGIC) :])
        raw["rule"] = Rule(raw["rule"])
        return cls(**raw)


@dataclass(frozen=True, slots=True)
class BatchDecision:
    """The decision for one item of a batch."""

    item_id: str
    eps: float
    pi: float
    draw: float
    delta: bool
    #: Drawn (``draw < pi``, or a threshold pick) but dropped to keep sum delta <= B.
    trimmed: bool


def _pi_one(
    rule: Rule,
    eps: float,
    *,
    budget: int,
    n: int,
    sum_eps: float | None,
    alpha: float | None,
    beta: float | None,
    pi_min: float,
) -> float:
    """Scalar pi of one item under normalization or exponential weighting, floored.

    Batch summaries and single-item decisions both go through this one scalar
    function, so an item decided later from a summary gets bit-for-bit the pi
    it got when its batch was decided.
    """
    if rule is Rule.NORMALIZATION:
        total = sum_eps or 0.0
        p = min(1.0, budget / n) if total <= 0.0 else min(1.0, budget * eps / total)
    else:
        assert alpha is not None and beta is not None
        if math.isinf(alpha):
            p = 0.0 if alpha > 0 else 1.0
        else:
            p = 0.5 * (1.0 + math.tanh(0.5 * beta * (eps - alpha)))
    return min(1.0, max(p, pi_min))


def summarize_batch(
    eps: ArrayLike,
    ids: Sequence[str],
    rule: Rule | str,
    budget_fraction: float,
    beta: float = DEFAULT_BETA,
    pi_min: float = 0.0,
    seed: int = 0,
    task_id: str = "",
    *,
    alpha_method: AlphaMethod = "solve",
    alpha: float | None = None,
    tau: float | None = None,
    draws: ArrayLike | None = None,
) -> BatchSummary:
    """Exact batch parameters of a bounded data set (paper, section 2 and A.3).

    ``alpha``/``tau`` override the budget-derived values when given (a task
    with fixed parameters); ``draws`` may pass precomputed
    :func:`bernoulli_draws`.
    """
    rule = Rule(rule)
    e = _as_eps(eps)
    n = e.size
    if len(ids) != n:
        raise ValueError("eps and ids differ in length")
    if len(set(ids)) != n:
        raise ValueError("item ids of a batch must be unique")
    if not 0.0 <= pi_min <= 1.0:
        raise ValueError("pi_min must be in [0, 1]")
    u = bernoulli_draws(seed, task_id, ids) if draws is None else np.asarray(draws, np.float64)
    budget = budget_count(budget_fraction, n)
    fields: dict[str, object] = {
        "rule": rule, "n": n, "budget": budget, "budget_fraction": budget_fraction,
        "pi_min": pi_min, "seed": seed,
    }  # fmt: skip
    if rule is Rule.THRESHOLD:
        fields.update(_threshold_fields(e, ids, u, budget, pi_min, tau))
    elif rule is Rule.NORMALIZATION:
        fields["sum_eps"] = math.fsum(e.tolist())
    else:
        if beta <= 0:
            raise ValueError("beta must be > 0")
        if alpha is None:
            alpha = (
                solve_alpha(e, budget, beta)
                if alpha_method == "solve"
                else budget_quantile(e, budget_fraction)
            )
        fields.update(alpha=float(alpha), beta=float(beta), alpha_method=alpha_method)
    # Decide every item the way decide_in_batch will, then place the trim cut.
    partial = BatchSummary(**fields)  # type: ignore[arg-type]
    eps_l, u_l = e.tolist(), u.tolist()
    drawn = [_pick(partial, eps_l[i], u_l[i], ids[i])[1] for i in range(n)]
    n_drawn = sum(drawn)
    if n_drawn > budget:
        ranked = sorted(
            (i for i in range(n) if drawn[i]), key=lambda i: (-eps_l[i], u_l[i], ids[i])
        )
        if budget > 0:
            last = ranked[budget - 1]
            fields.update(trim_eps=eps_l[last], trim_draw=u_l[last], trim_id=ids[last])
        else:  # a key every item sorts after (eps <= 1 < 2)
            fields.update(trim_eps=2.0, trim_draw=0.0, trim_id="")
    selected = min(n_drawn, budget)
    return BatchSummary(
        **fields,  # type: ignore[arg-type]
        drawn=n_drawn,
        selected=selected,
        trimmed=n_drawn - selected,
    )


def _threshold_fields(
    e: FloatArray,
    ids: Sequence[str],
    u: FloatArray,
    budget: int,
    pi_min: float,
    tau: float | None,
) -> dict[str, object]:
    """tau and the tie-break of thresholding: exactly the top ``B`` items by eps."""
    n = e.size
    if tau is not None:
        return {"tau": float(tau)}
    # Leave room for the expected exploration picks: top + pi_min * (n - top) <= B.
    room = (budget - pi_min * n) / (1.0 - pi_min) if pi_min < 1.0 else 0.0
    top = min(n, max(0, math.floor(room + 1e-9)))
    if top == 0:
        return {"tau": math.inf}
    tau_v = float(np.partition(e, n - top)[n - top])  # the top-th largest eps
    above = int((e > tau_v).sum())
    tied = np.flatnonzero(e == tau_v).tolist()
    slots = top - above
    if slots == len(tied):
        return {"tau": tau_v}  # no tie straddles the cut: 1(eps >= tau) takes exactly top
    # Ties at tau: take `slots` of them in draw order, a uniformly random subset
    # of fixed size, so each tied item has inclusion probability slots / #tied.
    tied.sort(key=lambda i: (u[i], ids[i]))
    last = tied[slots - 1]
    return {
        "tau": tau_v,
        "tie_pi": slots / len(tied),
        "tie_cutoff_draw": float(u[last]),
        "tie_cutoff_id": ids[last],
    }


def _pick(s: BatchSummary, eps: float, draw: float, item_id: str) -> tuple[float, bool]:
    """(pi, drawn) of one item before the budget trim."""
    if s.rule is Rule.THRESHOLD:
        assert s.tau is not None
        if eps > s.tau or (eps == s.tau and s.tie_pi is None):
            picked, pi = True, 1.0
        elif eps == s.tau:
            assert s.tie_pi is not None
            assert s.tie_cutoff_draw is not None and s.tie_cutoff_id is not None
            picked = (draw, item_id) <= (s.tie_cutoff_draw, s.tie_cutoff_id)
            pi = s.tie_pi
        else:
            picked, pi = False, 0.0
        # Exploration floor: below the cut an item is still taken when draw < pi_min.
        return min(1.0, max(pi, s.pi_min)), picked or draw < s.pi_min
    pi = _pi_one(
        s.rule, eps, budget=s.budget, n=s.n, sum_eps=s.sum_eps, alpha=s.alpha,
        beta=s.beta, pi_min=s.pi_min,
    )  # fmt: skip
    return pi, draw < pi


def decide_in_batch(summary: BatchSummary, eps: float, draw: float, item_id: str) -> BatchDecision:
    """Decide one item of a summarized batch from its own eps, draw and id.

    Gives the same result as :func:`sample_batch` for every item of the batch;
    used for items whose batch was decided before (by this or another run).
    """
    s = summary
    pi, drawn = _pick(s, eps, draw, item_id)
    trimmed = False
    if drawn and s.trim_eps is not None:
        assert s.trim_draw is not None and s.trim_id is not None
        trimmed = (-eps, draw, item_id) > (-s.trim_eps, s.trim_draw, s.trim_id)
    return BatchDecision(
        item_id=item_id, eps=eps, pi=pi, draw=draw, delta=drawn and not trimmed, trimmed=trimmed
    )


def batch_summary_and_decisions(
    eps: ArrayLike,
    ids: Sequence[str],
    rule: Rule | str,
    budget_fraction: float,
    beta: float = DEFAULT_BETA,
    pi_min: float = 0.0,
    seed: int = 0,
    task_id: str = "",
    *,
    alpha_method: AlphaMethod = "solve",
    alpha: float | None = None,
    tau: float | None = None,
) -> tuple[BatchSummary, list[BatchDecision]]:
    """:func:`sample_batch` that also returns the summary (what the service persists)."""
    e = _as_eps(eps)
    u = bernoulli_draws(seed, task_id, ids)
    summary = summarize_batch(
        e, ids, rule, budget_fraction, beta, pi_min, seed, task_id,
        alpha_method=alpha_method, alpha=alpha, tau=tau, draws=u,
    )  # fmt: skip
    eps_l, u_l = e.tolist(), u.tolist()
    return summary, [decide_in_batch(summary, eps_l[i], u_l[i], ids[i]) for i in range(e.size)]


def sample_batch(
    eps: ArrayLike,
    ids: Sequence[str],
    rule: Rule | str,
    budget_fraction: float,
    beta: float = DEFAULT_BETA,
    pi_min: float = 0.0,
    seed: int = 0,
    task_id: str = "",
    *,
    alpha_method: AlphaMethod = "solve",
    alpha: float | None = None,
    tau: float | None = None,
) -> list[BatchDecision]:
    """Decide a whole batch with exact quantiles; ``sum delta <= floor(b * N)`` always.

    Thresholding (without a floor) selects exactly the top ``B`` items by eps,
    ties at the threshold broken by the draw (their pi is the share of tied
    items taken). The other rules draw ``delta_i = u_i < pi_i`` and trim to
    ``B`` by eps (module docstring).
    """
    return batch_summary_and_decisions(
        eps, ids, rule, budget_fraction, beta, pi_min, seed, task_id,
        alpha_method=alpha_method, alpha=alpha, tau=tau,
    )[1]  # fmt: skip
