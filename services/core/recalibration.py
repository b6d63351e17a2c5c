"""Online recalibration of the critic's eps from human reviews.

The critic says ``eps_i``, the probability that the machine label of item i is
wrong; a human review tells whether it was (``error_i``). :mod:`calibration`
*measures* how far eps is from the observed error rates; this module *fits a
map* g so that g(eps) is calibrated: P(error | eps) = g(eps).

Two maps are offered:

* isotonic regression, a monotone step function fitted by pool-adjacent-
  violators (Zadrozny & Elkan, "Transforming classifier scores into accurate
  multiclass probability estimates", KDD 2002). It assumes only that a larger
  eps never means a smaller error rate;
* Platt scaling, a logistic regression of the error on logit(eps) (Platt,
  "Probabilistic outputs for support vector machines and comparisons to
  regularized likelihood methods", Advances in Large Margin Classifiers, 1999),
  with two parameters: better when reviews are few, biased when the distortion
  of eps is not logistic. Platt's target smoothing is not applied.

Reviewed items are not a random sample: the sampler reviews item i with
probability ``pi_i`` (1 under thresholding; in (0, 1] under the exponential and
normalisation rules with an exploration floor). Each reviewed item is weighted
by ``1 / pi_i`` (Horvitz & Thompson, "A generalization of sampling without
replacement from a finite universe", JASA 47, 1952), so that the fit minimises
an estimate of the loss over *all* items. When pi depends on eps alone the
error is independent of the review given eps, and the isotonic map is
consistent with or without weights; the weights matter for the two-parameter
Platt map when its logistic form is wrong (it then fits where the stream's
items are, not where the reviews are), and whenever pi depends on something
beyond eps. ``pi`` values are clipped below at 1e-6, as in :mod:`calibration`.

Callers pass reviewed rows only. The functions are pure; the fitted map is a
frozen dataclass of plain floats that :meth:`EpsCalibration.to_dict` exposes as
JSON for the stats endpoints.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from sklearn.isotonic import IsotonicRegression  # type: ignore[import-untyped]
from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]

FloatArray = npt.NDArray[np.float64]

#: Calibrated eps are kept in [EPS_FLOOR, 1 - EPS_FLOOR]: never certain.
EPS_FLOOR = 1e-6
#: Inclusion probabilities are clipped below at this value before 1 / pi.
PI_FLOOR = 1e-6
#: Below this many reviews a fit returns the identity map.
DEFAULT_MIN_REVIEWS = 20
#: Platt scaling is unpenalised in spirit; a large finite C keeps the slope
#: finite when eps separates the errors perfectly (sklearn's penalty is
#: ||w||^2 / (2 C) against the weighted sum of the log losses).
PLATT_C = 1e6

METHODS = ("isotonic", "platt")


def clip_probability(values: npt.ArrayLike) -> FloatArray:
    """Values as float64, clipped to [EPS_FLOOR, 1 - EPS_FLOOR]."""
    return np.clip(np.asarray(values, dtype=np.float64), EPS_FLOOR, 1.0 - EPS_FLOOR)


def logit(p: npt.ArrayLike) -> FloatArray:
    """log(p / (1 - p)) of the probabilities clipped by :func:`clip_probability`."""
    q = clip_probability(p)
    return np.asarray(np.log(q) - np.log1p(-q), dtype=np.float64)


def sigmoid(z: npt.ArrayLike) -> FloatArray:
    """1 / (1 + exp(-z)), written with tanh so that no large z overflows."""
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, dtype=np.float64))))


def check_probabilities(values: npt.ArrayLike, name: str) -> FloatArray:
    """Values as a float64 array, refusing NaN and anything outside [0, 1]."""
    array = np.asarray(values, dtype=np.float64)
    if np.isnan(array).any():
        raise ValueError(f"{name} contains NaN")
    if array.size and (array.min() < 0.0 or array.max() > 1.0):
        raise ValueError(f"{name} must be in [0, 1]")
    return array


def check_errors(error: npt.ArrayLike, n: int) -> FloatArray:
    """Review outcomes (bool or 0/1) as a float64 vector of length n."""
    array = np.asarray(error, dtype=np.float64)
    if array.shape != (n,):
        raise ValueError(f"error must be 1-d with one outcome per item ({n}), got {array.shape}")
    if np.isnan(array).any():
        raise ValueError("error contains NaN")
    if not np.isin(array, (0.0, 1.0)).all():
        raise ValueError("error must hold only 0/1 (or booleans)")
    return array


def review_weights(pi: npt.ArrayLike | None, n: int) -> FloatArray:
    """Horvitz-Thompson weights 1 / pi for n reviewed items (pi None: a census, all 1).

    pi must be in (0, 1]; it is clipped below at PI_FLOOR before inverting.
    """
    if pi is None:
        return np.ones(n, dtype=np.float64)
    p = check_probabilities(pi, "pi")
    if p.shape != (n,):
        raise ValueError(f"pi must have one probability per item ({n}), got shape {p.shape}")
    if p.size and p.min() <= 0.0:
        raise ValueError("pi must be > 0 for a reviewed item")
    return np.asarray(1.0 / np.clip(p, PI_FLOOR, 1.0), dtype=np.float64)


@dataclass(frozen=True)
class EpsCalibration:
    """A fitted map eps -> calibrated eps.

    ``method`` is "isotonic" (breakpoints ``x``, ``y``, linear interpolation
    between them and flat beyond them, as sklearn's ``out_of_bounds="clip"``),
    "platt" (``sigmoid(a * logit(eps) + b)``) or "identity" (eps unchanged).
    ``n_reviews`` is the number of reviewed rows fitted and ``weight_sum``
    their sum of 1 / pi, the Horvitz-Thompson estimate of the number of items
    they stand for.
    """

    method: str
    n_reviews: int
    weight_sum: float
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()
    a: float = 1.0
    b: float = 0.0

    def __post_init__(self) -> None:
        if self.method not in (*METHODS, "identity"):
            raise ValueError(f"unknown calibration method {self.method!r}")
        if len(self.x) != len(self.y):
            raise ValueError("x and y must have the same length")
        if self.method == "isotonic" and not self.x:
            raise ValueError("an isotonic calibration needs at least one breakpoint")

    def __call__(self, eps: npt.ArrayLike) -> FloatArray:
        """Calibrated eps for eps of any shape, clipped to [1e-6, 1 - 1e-6]."""
        e = check_probabilities(eps, "eps")
        if self.method == "isotonic":
            out = np.interp(e, np.asarray(self.x), np.asarray(self.y))
        elif self.method == "platt":
            out = sigmoid(self.a * logit(e) + self.b)
        else:
            out = e
        return clip_probability(out)

    def to_dict(self) -> dict[str, Any]:
        """The map as JSON-able builtins (str, int, float, lists of float)."""
        return {
            "method": self.method,
            "n_reviews": int(self.n_reviews),
            "weight_sum": float(self.weight_sum),
            "x": [float(v) for v in self.x],
            "y": [float(v) for v in self.y],
            "a": float(self.a),
            "b": float(self.b),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EpsCalibration:
        """The inverse of :meth:`to_dict`."""
        return cls(
            method=str(data["method"]),
            n_reviews=int(data["n_reviews"]),
            weight_sum=float(data["weight_sum"]),
            x=tuple(float(v) for v in data.get("x", ())),
            y=tuple(float(v) for v in data.get("y", ())),
            a=float(data.get("a", 1.0)),
            b=float(data.get("b", 0.0)),
        )


def fit_eps_calibration(
    eps: npt.ArrayLike,
    error: npt.ArrayLike,
    pi: npt.ArrayLike | None = None,
    *,
    method: Literal["isotonic", "platt"] = "isotonic",
    min_reviews: int = DEFAULT_MIN_REVIEWS,
) -> EpsCalibration:
    """Fit a calibration map of eps on reviewed items, each weighted by 1 / pi.

    ``eps``, ``error`` and ``pi`` (None: a census) hold one value per reviewed
    item; eps and pi must be in [0, 1] with pi > 0, error 0/1 or bool.

    Fallback: with fewer than ``min_reviews`` rows, or when all the errors are
    equal (only 0s or only 1s, so nothing ties eps to the error rate), the
    identity calibration (method "identity") is returned instead of failing,
    so that a stream that has just started keeps the critic's own eps.

    Raises ValueError on bad shapes, NaN, values out of range, an unknown
    method or a negative ``min_reviews``.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if min_reviews < 0:
        raise ValueError("min_reviews must be >= 0")
    e = check_probabilities(eps, "eps")
    if e.ndim != 1:
        raise ValueError(f"eps must be 1-d, got shape {e.shape}")
    y = check_errors(error, e.size)
    w = review_weights(pi, e.size)
    n, weight_sum = int(e.size), float(w.sum())
    if n < max(min_reviews, 1) or y.min() == y.max():
        return EpsCalibration(method="identity", n_reviews=n, weight_sum=weight_sum)
    if method == "isotonic":
        iso = IsotonicRegression(increasing=True, y_min=0.0, y_max=1.0, out_of_bounds="clip")
        iso.fit(e, y, sample_weight=w)
        return EpsCalibration(
            method="isotonic",
            n_reviews=n,
            weight_sum=weight_sum,
            x=tuple(float(v) for v in iso.X_thresholds_),
            y=tuple(float(v) for v in iso.y_thresholds_),
        )
    model = LogisticRegression(C=PLATT_C, max_iter=1000)
    model.fit(logit(e)[:, None], y.astype(np.int64), sample_weight=w)
    return EpsCalibration(
        method="platt",
        n_reviews=n,
        weight_sum=weight_sum,
        a=float(model.coef_[0, 0]),
        b=float(model.intercept_[0]),
    )
