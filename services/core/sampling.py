"""Budget-aware sampling rules of ACT (Lin et al., NeurIPS 2025), as pure functions.

Paper, section 2 ("ACT data pipeline"): every item gets a human-review
indicator ``delta_i ~ Bernoulli(pi_B(eps_i))`` where ``eps_i`` is the
criticizer's estimated error probability and ``pi_B`` maps it to a sampling
probability under the human budget ``B`` so that ``sum_i delta_i <= B``:

* normalization        ``pi_i = B * eps_i / sum_n eps_n``              (capped at 1)
* exponential weighting ``pi_i = 1 / (1 + exp(-beta * (eps_i - alpha)))``
* thresholding          ``pi_i = 1(eps_i >= tau)``

Appendix A.3: ``tau`` is the eps value at the rank that matches the budget
proportion (errors sorted in descending order), ``alpha`` is set the same way
and ``beta`` is 10 (or 100). ``B = floor(b * N)`` (definition 2.2).

This module holds the formulas and the reproducible Bernoulli draws. It does
no I/O and keeps no state.

The exact batch procedure built on these formulas is :mod:`services.core.batch`;
the online variant is :mod:`services.core.streaming`.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import math
import struct
from collections.abc import Sequence
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]

#: Default steepness of exponential weighting (paper, appendix A.3).
DEFAULT_BETA = 10.0

AlphaMethod = Literal["quantile", "solve"]


class Rule(enum.StrEnum):
    """The paper's three sampling rules ``pi_B(eps)``."""

    NORMALIZATION = "normalization"
    EXPONENTIAL = "exponential"
    THRESHOLD = "threshold"


# --------------------------------------------------------------------- rules


def _as_eps(eps: ArrayLike) -> FloatArray:
    arr = np.asarray(eps, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError("eps must be one-dimensional")
    if arr.size and (not np.all(np.isfinite(arr)) or arr.min() < 0.0 or arr.max() > 1.0):
        raise ValueError("eps must be finite and in [0, 1]")
    return arr


def budget_count(budget_fraction: float, n: int) -> int:
    """``B = floor(b * N)`` (paper, definition 2.2).

    A tiny tolerance keeps ``0.1 * 10`` at 1 rather than 0.999... -> 0.
    """
    if not 0.0 <= budget_fraction <= 1.0:
        raise ValueError("budget_fraction must be in [0, 1]")
    return min(n, math.floor(budget_fraction * n + 1e-9))


def normalization_pi(eps: ArrayLike, budget: float) -> FloatArray:
    """Normalization: ``pi_i = min(1, B * eps_i / sum_n eps_n)`` (paper, section 2).

    ``budget`` is the absolute budget ``B`` (items). The cap at 1 makes
    ``sum pi`` fall below ``B`` when a few items carry most of the error mass.
    All-zero eps carry no information: every item then gets ``B / N``.
    """
    e = _as_eps(eps)
    if e.size == 0:
        return e.copy()
    total = float(e.sum())
    if total <= 0.0:
        return np.full(e.size, min(1.0, budget / e.size))
    return np.minimum(1.0, budget * e / total)


def exponential_pi(eps: ArrayLike, alpha: float, beta: float) -> FloatArray:
    """Exponential weighting: ``pi_i = 1 / (1 + exp(-beta * (eps_i - alpha)))`` (section 2).

    ``alpha`` is the centre and ``beta`` the steepness of the logistic;
    thresholding is its limit ``beta -> inf`` with ``alpha = tau``. Computed as
    ``(1 + tanh(x / 2)) / 2``, which never overflows.
    """
    if beta <= 0:
        raise ValueError("beta must be > 0")
    e = _as_eps(eps)
    if math.isinf(alpha):
        return np.zeros(e.size) if alpha > 0 else np.ones(e.size)
    return 0.5 * (1.0 + np.tanh(0.5 * beta * (e - alpha)))


def threshold_pi(eps: ArrayLike, tau: float) -> FloatArray:
    """Thresholding: ``pi_i = 1(eps_i >= tau)`` (section 2)."""
    return (_as_eps(eps) >= tau).astype(np.float64)


def budget_quantile(eps: ArrayLike, budget_fraction: float) -> float:
    """The eps value that matches the budget proportion (paper, appendix A.3).

    Errors are ranked in descending order and the value at rank
    ``B = floor(b * N)`` is returned, so ``#{eps_i >= tau} >= B`` with equality
    unless eps has ties at that rank. ``inf`` when ``B = 0`` (nothing is
    selected); this is the choice of ``tau`` and of the quantile ``alpha``.
    """
    e = _as_eps(eps)
    b = budget_count(budget_fraction, e.size)
    if b == 0:
        return math.inf
    # The b-th largest value without a full sort.
    return float(np.partition(e, e.size - b)[e.size - b])


def solve_alpha(eps: ArrayLike, budget: float, beta: float, *, iterations: int = 100) -> float:
    """The centre ``alpha`` with ``sum_i 1/(1+exp(-beta(eps_i - alpha))) = B``.

    The paper only asks that alpha keeps ``sum delta <= B``; with alpha at the
    budget quantile and ``beta = 10`` a skewed eps distribution gives
    ``sum pi`` well above ``B`` and the batch has to trim. Solving for alpha
    makes ``E[sum delta] = B`` so the recorded pi are (nearly) the true
    inclusion probabilities. ``sum pi`` falls monotonically in alpha, so a
    bisection converges; the result is deterministic.
    """
    e = _as_eps(eps)
    if e.size == 0 or budget <= 0:
        return math.inf
    if budget >= e.size:
        return -math.inf
    lo, hi = -1.0, 2.0
    # Widen until the bracket holds the root (sum pi is in (0, N) for finite alpha).
    while float(exponential_pi(e, lo, beta).sum()) < budget:
        lo -= 1.0 + (hi - lo)
    while float(exponential_pi(e, hi, beta).sum()) > budget:
        hi += 1.0 + (hi - lo)
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        if float(exponential_pi(e, mid, beta).sum()) > budget:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12:
            break
    return hi  # the side with sum pi <= B


def apply_pi_floor(pi: ArrayLike, pi_min: float) -> FloatArray:
    """Exploration floor: ``pi_i <- min(1, max(pi_i, pi_min))``.

    The ACT loss ``delta_i / pi_i`` is unbiased only where ``pi_i > 0``: an item
    that can never be reviewed contributes its machine loss with no
    correction. A small floor keeps every item reviewable and gives random
    audits that calibrate the criticizer on items it considers safe.
    """
    if not 0.0 <= pi_min <= 1.0:
        raise ValueError("pi_min must be in [0, 1]")
    p = np.asarray(pi, dtype=np.float64)
    return np.clip(np.maximum(p, pi_min), 0.0, 1.0)


_DRAW_PERSON = b"act-sampler-v1"  # domain separation: never collides with other hashes


@functools.lru_cache(maxsize=1024)
def _draw_prefix(seed: int, task_id: str) -> bytes:
    t = task_id.encode()
    return struct.pack("<QI", seed & 0xFFFFFFFFFFFFFFFF, len(t)) + t


def bernoulli_draw(seed: int, task_id: str, item_id: str) -> float:
    """The uniform draw ``u`` in ``[0, 1)`` of an item; ``delta = u < pi``.

    BLAKE2b of (seed, task id, item id), length-prefixed so no two inputs
    encode alike, truncated to 53 bits (a double's mantissa). Independent of
    processing order, process and platform: a replay draws the same ``u``.
    """
    i = item_id.encode()
    msg = _draw_prefix(seed, task_id) + len(i).to_bytes(4, "little") + i
    digest = hashlib.blake2b(msg, digest_size=8, person=_DRAW_PERSON).digest()
    return (int.from_bytes(digest, "little") >> 11) * (1.0 / (1 << 53))


def bernoulli_draws(seed: int, task_id: str, item_ids: Sequence[str]) -> FloatArray:
    """:func:`bernoulli_draw` for many items."""
    return np.fromiter(
        (bernoulli_draw(seed, task_id, i) for i in item_ids), dtype=np.float64, count=len(item_ids)
    )


def check_sampling_values(
    budget_fraction: float, pi_min: float, beta: float, window_items: int
) -> None:
    """ValueError unless the sampling values every rule shares are in range."""
    if not 0.0 <= budget_fraction <= 1.0:
        raise ValueError(f"budget_fraction {budget_fraction} outside [0, 1]")
    if not 0.0 <= pi_min <= 1.0:
        raise ValueError(f"pi_min {pi_min} outside [0, 1]")
    if beta <= 0:
        raise ValueError("beta must be > 0")
    if window_items < 1:
        raise ValueError("window_items must be >= 1")
