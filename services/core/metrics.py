"""The paper's annotation-stage measures: accuracy, AQG, ABS and the budgets.

Lin et al., "ACT: Annotation with Critical Thinking" (NeurIPS 2025), section 2.
Notation: ``machine`` = machine labels y_m, ``human`` = human labels y_h (taken
as ground truth, so Q_max = 1 with Q = accuracy), ``eps`` = the criticizer's
estimated error probabilities, ``budget`` = B, the number of items a human
reviews (0 <= B <= N).

The correction operator is the paper's thresholding rule applied at budget B:
the B items with the largest eps are replaced by their human labels (eq. 3
with pi_B(eps) = 1(eps >= tau), tau the B-th largest eps). The functions are
pure and vectorised with numpy: labels are integer arrays of the same length.

Ties in eps: :func:`corrected_labels_at_budget` breaks them by position
(stable, deterministic), whereas :func:`budget_curve` and :func:`abs_score`
use the *expected* quality over uniformly random tie-breaking, so that a
critic which says nothing (constant eps) scores like a random one (ABS = 1/2)
instead of being lucky or unlucky with the data order. Without ties both agree.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
Labels = Sequence[int] | npt.NDArray[np.integer]
Scores = Sequence[float] | npt.NDArray[np.floating]

#: Paper, appendix F.2: "adding a reasonable buffer to the ideal budget"; the
#: experiments of Figure 12 use 10 points.
DEFAULT_BUDGET_BUFFER = 0.10


def _labels(values: Labels, name: str) -> IntArray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must hold integer label indices, got {array.dtype}")
    return array.astype(np.int64, copy=False)


def _pair(machine: Labels, human: Labels) -> tuple[IntArray, IntArray]:
    m, h = _labels(machine, "machine"), _labels(human, "human")
    if m.shape != h.shape:
        raise ValueError(f"machine and human labels differ in length: {m.size} != {h.size}")
    return m, h


def _eps(eps: Scores, n: int) -> FloatArray:
    array = np.asarray(eps, dtype=np.float64)
    if array.shape != (n,):
        raise ValueError(f"eps must have one score per item ({n}), got shape {array.shape}")
    if np.isnan(array).any():
        raise ValueError("eps contains NaN")
    return array


def accuracy(labels: Labels, human: Labels) -> float:
    """Q(f_h, f) of eq. 1 with the 0-1 similarity: the share of labels equal to human ones.

    An empty set has accuracy 1.0 by convention (nothing is wrong).
    """
    f, h = _pair(labels, human)
    return float(np.mean(f == h)) if f.size else 1.0


def aqg(machine: Labels, corrected: Labels, human: Labels) -> float:
    """Annotation Quality Gain, eq. 4 (Definition 2.1), with Q = accuracy and Q_max = 1.

    AQG = (Q(corrected) - Q(machine)) / (Q_max - Q(machine)): the share of the
    machine's room for improvement that the human corrections recovered. It is
    in [0, 1] for labels produced by the correction operator (each item keeps
    its machine label or takes its human one). When the machine labels are
    already perfect there is no room: AQG is then 1.0 by convention (the
    pipeline's output has the maximal quality).
    """
    m, h = _pair(machine, human)
    c = _labels(corrected, "corrected")
    if c.shape != h.shape:
        raise ValueError(f"corrected and human labels differ in length: {c.size} != {h.size}")
    room = 1.0 - accuracy(m, h)
    if room <= 0.0:
        return 1.0
    return (accuracy(c, h) - accuracy(m, h)) / room


def review_order(eps: Scores) -> IntArray:
    """Item indices by decreasing eps, ties by position: who a human reviews first."""
    array = np.asarray(eps, dtype=np.float64)
    return np.argsort(-array, kind="stable").astype(np.int64)


def corrected_labels_at_budget(
    machine: Labels, human: Labels, eps: Scores, budget: int
) -> IntArray:
    """The budget-constrained correction kappa of eq. 3 with the thresholding rule.

    The ``budget`` items with the largest eps take their human label; the rest
    keep the machine label. Ties are broken by position (see the module doc).
    """
    m, h = _pair(machine, human)
    e = _eps(eps, m.size)
    if not 0 <= budget <= m.size:
        raise ValueError(f"budget must be in [0, {m.size}], got {budget}")
    corrected = m.copy()
    chosen = review_order(e)[:budget]
    corrected[chosen] = h[chosen]
    return corrected


def expected_corrections(machine: Labels, human: Labels, eps: Scores) -> FloatArray:
    """C[B] for B = 0..N: expected machine errors fixed by reviewing the top-B by eps.

    Sorting once and taking a cumulative sum makes every budget O(1) after an
    O(N log N) sort. Within a group of tied eps the reviewed items are a
    uniformly random subset, so each tied item counts with its group's error
    rate (the expectation over tie-breaking orders).
    """
    m, h = _pair(machine, human)
    e = _eps(eps, m.size)
    order = review_order(e)
    wrong = (m != h)[order].astype(np.float64)
    sorted_eps = e[order]
    if wrong.size:
        # Group boundaries of runs of equal eps; replace each run by its mean.
        starts = np.flatnonzero(np.r_[True, sorted_eps[1:] != sorted_eps[:-1]])
        sizes = np.diff(np.r_[starts, wrong.size])
        group_means = np.add.reduceat(wrong, starts) / sizes
        wrong = np.repeat(group_means, sizes)
    return np.concatenate(([0.0], np.cumsum(wrong)))


def budget_curve(machine: Labels, human: Labels, eps: Scores) -> FloatArray:
    """AQG(f_m, g, B) for every budget B = 0..N (array of N + 1 values).

    The curve of appendix F.1 (Figure 11): with Q = accuracy, AQG(B) is the
    share of machine errors fixed within the first B reviews. It starts at 0,
    ends at 1 and never decreases. No machine errors: all ones (see :func:`aqg`).
    """
    m, h = _pair(machine, human)
    corrections = expected_corrections(m, h, eps)
    errors = corrections[-1]
    if errors <= 0:
        return np.ones(m.size + 1, dtype=np.float64)
    return np.asarray(corrections / errors, dtype=np.float64)


def abs_score(machine: Labels, human: Labels, eps: Scores) -> float:
    """Area under Budget Sensitivity, eq. 5 (Definition 2.2): the mean AQG over budgets.

    ABS = (1 / (N + 1)) * sum_{B=0..N} AQG(f_m, g, B). The paper writes the
    Riemann sum of the integral over b in [0, 1] with a 1/N factor; averaging
    the N + 1 budgets instead keeps ABS in [0, 1] and makes a random critic's
    expected ABS exactly 1/2 (see :func:`random_abs_moments`). The two differ
    by less than 1/N.
    """
    return float(np.mean(budget_curve(machine, human, eps)))


def oracle_abs(n_items: int, n_errors: int) -> float:
    """The largest ABS possible: the oracle critic reviews the errors first.

    AQG(B) = min(B, E) / E, so the mean over B = 0..N is
    (N - E/2 + 1/2) / (N + 1), or 1.0 when there are no errors (E = 0).
    """
    if not 0 <= n_errors <= n_items:
        raise ValueError("need 0 <= n_errors <= n_items")
    if n_errors == 0:
        return 1.0
    return (n_items - n_errors / 2 + 0.5) / (n_items + 1)


def random_abs_moments(n_items: int, n_errors: int) -> tuple[float, float]:
    """Mean and variance of the ABS of a critic whose review order is uniformly random.

    Derivation: with E errors at review positions p_1..p_E (a random E-subset
    of 1..N), sum_B C_B = sum_j (N + 1 - p_j), so ABS = sum_j (N + 1 - p_j) /
    ((N + 1) E). Sampling without replacement from 1..N (variance
    (N^2 - 1) / 12, finite-population factor (N - E) / (N - 1)) gives
    E[ABS] = 1/2 and Var[ABS] = (N - E) / (12 E (N + 1)).
    """
    if not 0 < n_errors <= n_items:
        raise ValueError("need 0 < n_errors <= n_items")
    return 0.5, (n_items - n_errors) / (12.0 * n_errors * (n_items + 1))


def ideal_budget(machine: Labels, human: Labels) -> float:
    """The paper's "ideal" human budget (section 5.2): the annotator's error rate.

    It is the least share of items that could fix every machine error (with a
    perfect critic), e.g. 21.81% for GPT-4o on Fashion-MNIST.
    """
    return 1.0 - accuracy(machine, human)


def recommended_budget(ideal: float, buffer: float = DEFAULT_BUDGET_BUFFER) -> float:
    """The ideal budget plus a buffer (appendix F.2, Figure 12: 10 points), capped at 1.

    Real critics are imperfect, so reviewing exactly the error rate leaves some
    errors unfixed; in the paper a 10-point buffer nearly closes the
    downstream gap on 4 of 6 data sets.
    """
    if not 0.0 <= ideal <= 1.0:
        raise ValueError(f"ideal budget must be in [0, 1], got {ideal}")
    if buffer < 0.0:
        raise ValueError(f"buffer must be >= 0, got {buffer}")
    return min(1.0, ideal + buffer)


def budget_items(fraction: float, n_items: int) -> int:
    """B = floor(b N), the number of reviews for a budget share b (Definition 2.2)."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"budget fraction must be in [0, 1], got {fraction}")
    return int(np.floor(fraction * n_items + 1e-9))


def aqg_at_budget(machine: Labels, human: Labels, eps: Scores, budget: int) -> float:
    """AQG(f_m, g, B) for one budget, from the review order (expected over eps ties)."""
    curve = budget_curve(machine, human, eps)
    if not 0 <= budget < curve.size:
        raise ValueError(f"budget must be in [0, {curve.size - 1}], got {budget}")
    return float(curve[budget])
