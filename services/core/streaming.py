"""Streaming budget-aware sampling: an online eps distribution and a budget pacer.

In a stream the sampler cannot wait for all eps to compute the paper's exact
quantiles (section 2, appendix A.3), so each ``(task, partition)`` keeps

* a **quantile sketch** of recent eps (:class:`DecayedHistogram`), from which
  the rules get their parameters: ``tau`` and the quantile ``alpha`` as upper
  quantiles, the solved ``alpha`` as the root of ``E[pi] = b``, and the mean
  eps that normalization divides by (``B * eps_i / sum eps = b * eps_i /
  mean eps``);
* a **pacer** that spends the budget fraction ``b`` over windows of
  ``window_items`` items: it never exceeds ``ceil(b * W)`` selections in a
  window nor the hard cap, forces selections only when the window would end
  below ``(b - tolerance) * W``, and in between steers the rule with the
  *control fraction* ``b' = (b * W - spent) / items left``, so early
  over- or under-spending is corrected smoothly within the window.

Every decision records the pi it was drawn with. With pacing, pi_i is the
probability of ``delta_i = 1`` *given the decisions before it*; the ACT loss
term ``delta_i / pi_i`` stays unbiased because ``E[delta_i | past] = pi_i``
(the martingale argument of active M-estimation). Forced decisions record
``pi = 1`` (pacing floor) or ``pi = 0`` (window or hard cap exhausted; this
overrides the exploration floor ``pi_min``).

Thresholding in a stream takes the items above the sketch's boundary bin
with pi = 1 and the items *in* that bin with the bin's share ``p_tie`` (a
randomized threshold; with atoms in eps nothing else can hit the budget), so
its q is 1 except for boundary-bin items, unlike batch mode's exact top B.

The state is small, exact and deterministic: decisions are a pure function of
(state, eps, draw), the state round-trips bit for bit through
:class:`act.v1.sampling_pb2.SamplerState`, and re-deciding the records after
a snapshot rebuilds the later state exactly, which is how the service
restores without a snapshot per decision.
"""

from __future__ import annotations

import bisect
import itertools
import math
import struct
from dataclasses import dataclass
from typing import Literal

import numpy as np
from act.v1 import sampling_pb2
from google.protobuf.timestamp_pb2 import Timestamp
from numpy.typing import NDArray

from services.core.sampling import (
    DEFAULT_BETA,
    AlphaMethod,
    Rule,
    bernoulli_draw,
    check_sampling_values,
)

Forced = Literal["", "hard_cap", "window_cap", "pacing_floor"]

_SKETCH_MAGIC = b"ACTS1"
_SKETCH_HEAD = struct.Struct("<5sHdddd")  # magic, bins, half_life, weight, total, sum_eps


class DecayedHistogram:
    """Fixed-bin histogram of eps over ``[0, 1]`` with exponential forgetting.

    Why this sketch and not P-square or a t-digest:

    * eps is bounded in ``[0, 1]``, so fixed bins lose nothing to range
      estimation, and criticizer outputs are often coarse ("0.8"): atoms are
      represented exactly as the mass of one bin.
    * The pacer needs the whole upper tail (the control fraction changes with
      every item), not one fixed quantile as P-square tracks.
    * Exponential forgetting (half-life in items) follows a drifting eps
      distribution; P-square never forgets.
    * O(1) update, O(bins) query, fixed-size exact serialisation, and the
      arithmetic is deterministic, so a restored state equals the lost one.

    Forgetting is lazy: the ``n``-th item is added with weight
    ``2 ** (n / half_life)`` instead of multiplying every bin by the decay
    factor; ratios are unchanged and the weights are rescaled before they
    overflow.
    """

    __slots__ = ("_inv_decay", "bins", "counts", "half_life", "sum_eps", "total", "weight")

    def __init__(self, bins: int = 100, half_life: float = 1000.0) -> None:
        if not 2 <= bins <= 65535:
            raise ValueError("bins must be in [2, 65535]")
        if half_life <= 0:
            raise ValueError("half_life must be > 0")
        self.bins = bins
        self.half_life = float(half_life)
        # A plain list: one-element updates and short scans beat numpy's call overhead.
        self.counts: list[float] = [0.0] * bins
        self.weight = 1.0
        self.total = 0.0
        self.sum_eps = 0.0
        self._inv_decay = 2.0 ** (1.0 / self.half_life)

    # ------------------------------------------------------------- updating

    def set_half_life(self, half_life: float) -> None:
        """Forget at a new rate from now on (the mass counted so far is kept)."""
        if half_life <= 0:
            raise ValueError("half_life must be > 0")
        self.half_life = float(half_life)
        self._inv_decay = 2.0 ** (1.0 / self.half_life)

    def bin_of(self, eps: float) -> int:
        """The bin holding ``eps`` (1.0 falls in the last bin)."""
        return min(self.bins - 1, int(eps * self.bins))

    def add(self, eps: float) -> None:
        """Count one eps; older items fade with the half-life."""
        w = self.weight
        self.counts[self.bin_of(eps)] += w
        self.total += w
        self.sum_eps += w * eps
        w *= self._inv_decay
        if w > 1e100:  # rescale long before float64 overflows
            self.counts = [c / w for c in self.counts]
            self.total /= w
            self.sum_eps /= w
            w = 1.0
        self.weight = w

    # -------------------------------------------------------------- queries

    @property
    def empty(self) -> bool:
        """True before the first :meth:`add`."""
        return self.total <= 0.0

    def mean(self) -> float:
        """Decayed mean eps (0 when empty)."""
        return self.sum_eps / self.total if self.total > 0 else 0.0

    def shares(self) -> NDArray[np.float64]:
        """Share of the (decayed) mass in each bin."""
        arr = np.asarray(self.counts, dtype=np.float64)
        return arr / self.total if self.total > 0 else arr

    def upper_cut(self, fraction: float) -> tuple[int, float, float]:
        """Where the top ``fraction`` of the mass starts: ``(bin k, p_tie, tau)``.

        Bins above ``k`` lie wholly in the top fraction, bin ``k`` with share
        ``p_tie``; ``tau`` interpolates linearly inside bin ``k``. Thresholding
        takes items above bin ``k`` with pi = 1 and items in bin ``k`` with
        pi = ``p_tie`` (a randomized threshold: the only way to hit the budget
        when eps has atoms).
        """
        if fraction <= 0.0 or self.empty:
            return self.bins, 0.0, math.inf
        want = fraction * self.total
        # Mass from the top bin down (C-speed accumulate + bisect: this runs per item).
        suffix = list(itertools.accumulate(reversed(self.counts)))
        j = bisect.bisect_right(suffix, want)  # suffix[j] is the first partial sum > want
        if j >= self.bins:
            return 0, 1.0, 0.0  # fraction >= 1 (up to rounding): everything
        k = self.bins - 1 - j
        above = suffix[j - 1] if j > 0 else 0.0
        p_tie = min(1.0, max(0.0, (want - above) / self.counts[k]))
        return k, p_tie, (k + 1.0 - p_tie) / self.bins

    def upper_quantile(self, fraction: float) -> float:
        """The eps value with about ``fraction`` of the mass at or above it."""
        return self.upper_cut(fraction)[2]

    def expected_logistic(self, alpha: float, beta: float) -> float:
        """``E[1 / (1 + exp(-beta (eps - alpha)))]`` under the sketch (bin centres)."""
        if self.empty:
            return 0.0
        centres = (np.arange(self.bins) + 0.5) / self.bins
        s = 0.5 * (1.0 + np.tanh(0.5 * beta * (centres - alpha)))
        return float(np.dot(self.shares(), s))

    def solve_alpha(self, fraction: float, beta: float) -> float:
        """``alpha`` with ``E[pi] = fraction`` under exponential weighting.

        Safeguarded Newton from the quantile ``alpha`` (a deterministic start,
        so the answer depends on the sketch alone), bisection when a Newton
        step leaves the bracket.
        """
        if fraction <= 0.0 or self.empty:
            return math.inf
        if fraction >= 1.0:
            return -math.inf
        centres = (np.arange(self.bins) + 0.5) / self.bins
        mass = self.shares()
        lo, hi = -1.0 - 40.0 / beta, 2.0 + 40.0 / beta  # E[pi](lo) ~ 1, E[pi](hi) ~ 0
        alpha = min(hi, max(lo, self.upper_quantile(fraction)))
        for _ in range(60):
            s = 0.5 * (1.0 + np.tanh(0.5 * beta * (centres - alpha)))
            g = float(np.dot(mass, s)) - fraction
            if abs(g) < 1e-8:
                break
            if g > 0:  # E[pi] too high: alpha must grow
                lo = alpha
            else:
                hi = alpha
            slope = beta * float(np.dot(mass, s * (1.0 - s)))
            step = alpha + g / slope if slope > 0 else math.nan
            alpha = step if lo < step < hi else 0.5 * (lo + hi)
            if hi - lo < 1e-12:
                break
        return alpha

    # -------------------------------------------------------- serialisation

    def to_bytes(self) -> bytes:
        """Exact, versioned encoding (float64 throughout)."""
        head = _SKETCH_HEAD.pack(
            _SKETCH_MAGIC, self.bins, self.half_life, self.weight, self.total, self.sum_eps
        )
        return head + struct.pack(f"<{self.bins}d", *self.counts)

    @classmethod
    def from_bytes(cls, data: bytes) -> DecayedHistogram:
        """Inverse of :meth:`to_bytes`; ``ValueError`` for anything else."""
        if len(data) < _SKETCH_HEAD.size:
            raise ValueError("sketch too short")
        magic, bins, half_life, weight, total, sum_eps = _SKETCH_HEAD.unpack_from(data)
        if magic != _SKETCH_MAGIC:
            raise ValueError("not an eps sketch")
        body = data[_SKETCH_HEAD.size :]
        if bins < 2 or len(body) != 8 * bins or half_life <= 0:
            raise ValueError("malformed eps sketch")
        sketch = cls(bins, half_life)
        sketch.counts = list(struct.unpack(f"<{bins}d", body))
        sketch.weight, sketch.total, sketch.sum_eps = weight, total, sum_eps
        return sketch


@dataclass(frozen=True, slots=True)
class StreamingParams:
    """Sampling parameters of one task in streaming mode."""

    rule: Rule
    budget_fraction: float
    beta: float = DEFAULT_BETA
    alpha_method: AlphaMethod = "solve"
    #: Fixed alpha / tau from the task; None = derived from the sketch.
    alpha: float | None = None
    tau: float | None = None
    pi_min: float = 0.0
    seed: int = 0
    window_items: int = 1000
    #: Maximum selections of this (task, partition) ever; None = no cap.
    hard_cap: int | None = None
    #: The pacer forces selections only below (budget_fraction - tolerance) * W.
    tolerance: float = 0.005
    sketch_bins: int = 100
    sketch_half_life: float = 1000.0

    def __post_init__(self) -> None:
        check_sampling_values(self.budget_fraction, self.pi_min, self.beta, self.window_items)
        if (self.hard_cap is not None and self.hard_cap < 0) or self.tolerance < 0:
            raise ValueError("hard_cap and tolerance must be >= 0")

    @property
    def window_max(self) -> int:
        """Most selections per window: ``ceil(b * W)``."""
        return math.ceil(self.budget_fraction * self.window_items - 1e-9)

    @property
    def window_min(self) -> int:
        """Fewest selections per full window the pacer allows (if the cap permits)."""
        floor = (self.budget_fraction - self.tolerance) * self.window_items
        return max(0, min(self.window_max, math.ceil(floor - 1e-9)))


@dataclass(slots=True)  # not frozen: built per item, and frozen __init__ is slow
class StreamDecision:
    """One streaming decision and the parameters it was made with."""

    item_id: str
    eps: float
    pi: float
    draw: float
    delta: bool
    window_id: str
    #: The budget share steering the rule for this item (see module docstring).
    control_fraction: float
    alpha: float | None = None
    beta: float | None = None
    tau: float | None = None
    #: Why the pacer overrode the rule, or "".
    forced: Forced = ""


class StreamingSampler:
    """Sampler state of one task on one input partition (see module docstring)."""

    def __init__(
        self,
        params: StreamingParams,
        task_id: str,
        partition: int,
        *,
        sketch: DecayedHistogram | None = None,
    ) -> None:
        self.params = params
        self.task_id = task_id
        self.partition = partition
        self.sketch = sketch or DecayedHistogram(params.sketch_bins, params.sketch_half_life)
        self.seen = 0
        self.selected = 0
        self.window_index = 0
        self.window_seen = 0
        self.window_selected = 0
        #: Next input offset this state has not accounted for.
        self.committed_offset = 0

    @property
    def window_id(self) -> str:
        """Id of the current pacing window: ``<task>:<partition>:<index>``."""
        return f"{self.task_id}:{self.partition}:{self.window_index}"

    def decide(self, item_id: str, eps: float, *, offset: int | None = None) -> StreamDecision:
        """Decide one item and update the state (sketch, pacer, counters).

        ``offset`` is the input offset of the item's record; the state then
        accounts for records up to it (``committed_offset = offset + 1``).
        """
        if not (0.0 <= eps <= 1.0):  # also rejects NaN
            raise ValueError("eps must be in [0, 1]")
        p = self.params
        if self.window_seen >= p.window_items:
            self.window_index += 1
            self.window_seen = 0
            self.window_selected = 0
        self.sketch.add(eps)
        draw = bernoulli_draw(p.seed, self.task_id, item_id)
        left = p.window_items - self.window_seen  # items left in the window, this one included
        spent = self.window_selected
        control = min(1.0, max(0.0, (p.budget_fraction * p.window_items - spent) / left))
        alpha = tau = beta = None
        forced: Forced = ""
        if p.hard_cap is not None and self.selected >= p.hard_cap:
            pi, forced = 0.0, "hard_cap"
        elif spent >= p.window_max:
            pi, forced = 0.0, "window_cap"
        elif p.window_min - spent >= left:
            pi, forced = 1.0, "pacing_floor"
        else:
            pi, alpha, beta, tau = self._rule_pi(eps, control)
            pi = min(1.0, max(pi, p.pi_min))
        delta = draw < pi
        self.seen += 1
        self.window_seen += 1
        if delta:
            self.selected += 1
            self.window_selected += 1
        if offset is not None:
            self.committed_offset = offset + 1
        return StreamDecision(
            item_id=item_id,
            eps=eps,
            pi=pi,
            draw=draw,
            delta=delta,
            window_id=self.window_id,
            control_fraction=control,
            alpha=alpha,
            beta=beta,
            tau=tau,
            forced=forced,
        )

    def _rule_pi(
        self, eps: float, control: float
    ) -> tuple[float, float | None, float | None, float | None]:
        """(pi, alpha, beta, tau) of the rule at the control fraction."""
        p = self.params
        sk = self.sketch
        if p.rule is Rule.THRESHOLD:
            if p.tau is not None:
                return (1.0 if eps >= p.tau else 0.0), None, None, p.tau
            k, p_tie, tau = sk.upper_cut(control)
            b = sk.bin_of(eps)
            pi = 1.0 if b > k else (p_tie if b == k else 0.0)
            return pi, None, None, tau
        if p.rule is Rule.EXPONENTIAL:
            if p.alpha is not None:
                alpha = p.alpha
            elif p.alpha_method == "solve":
                alpha = sk.solve_alpha(control, p.beta)
            else:
                alpha = sk.upper_quantile(control)
            if math.isinf(alpha):
                pi = 0.0 if alpha > 0 else 1.0
            else:
                pi = 0.5 * (1.0 + math.tanh(0.5 * p.beta * (eps - alpha)))
            return pi, alpha, p.beta, None
        mean = sk.mean()
        pi = control if mean <= 0.0 else min(1.0, control * eps / mean)
        return pi, None, None, None

    # -------------------------------------------------------------- state

    def to_proto(self, now: Timestamp | None = None) -> sampling_pb2.SamplerState:
        """The state as the ``sampler_state`` changelog record (``now``: updated_at)."""
        state = sampling_pb2.SamplerState(
            task_id=self.task_id,
            partition=self.partition,
            quantile_sketch=self.sketch.to_bytes(),
            seen=self.seen,
            selected=self.selected,
            window_seen=self.window_seen,
            window_selected=self.window_selected,
            window_id=self.window_id,
            committed_offset=self.committed_offset,
        )
        if now is None:
            state.updated_at.GetCurrentTime()
        else:
            state.updated_at.CopyFrom(now)
        return state

    @classmethod
    def from_proto(
        cls, state: sampling_pb2.SamplerState, params: StreamingParams
    ) -> StreamingSampler:
        """Restore from a changelog record.

        A sketch whose bin count differs from the current configuration is
        dropped (it is rebuilt from new items); the budget counters are kept,
        so a configuration change never resets the spend.
        """
        try:
            sketch: DecayedHistogram | None = DecayedHistogram.from_bytes(state.quantile_sketch)
        except ValueError:
            sketch = None
        if sketch is not None and sketch.bins != params.sketch_bins:
            sketch = None
        if sketch is not None and sketch.half_life != params.sketch_half_life:
            sketch.set_half_life(params.sketch_half_life)
        sampler = cls(params, state.task_id, state.partition, sketch=sketch)
        sampler.seen = state.seen
        sampler.selected = state.selected
        sampler.window_seen = state.window_seen
        sampler.window_selected = state.window_selected
        sampler.committed_offset = state.committed_offset
        head, _, index = state.window_id.rpartition(":")
        sampler.window_index = int(index) if head and index.isdigit() else 0
        return sampler
