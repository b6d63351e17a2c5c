"""Small probabilistic classifiers fit on a few labelled examples, in numpy.

They are deliberately simple (a seed has a few dozen examples per class) and
deterministic (no random initialisation), so a few-shot model is a pure
function of its seed:

- :class:`SoftmaxRegression`: multinomial logistic regression with an L2
  penalty, fit by Nesterov-accelerated gradient descent with the step 1/L
  from the Lipschitz constant of the loss (no learning rate to tune).
- :class:`KNearest`: cosine k-nearest neighbours with similarity-weighted votes.
- :class:`NearestCentroid`: cosine similarity to each class mean.

Each produces logits; probabilities are ``softmax(logits / T)`` with a
temperature T fit on the seed alone (:func:`fit_temperature` over
cross-fitted logits), so that P(label | x), and the critic's
eps = 1 - P(given label | x), are calibrated probabilities rather than scores.
"""

from __future__ import annotations

import contextlib
import importlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

FloatMatrix = npt.NDArray[np.float64]
IntVector = npt.NDArray[np.int64]


_BLAS_LOCK = threading.Lock()
_BLAS_USERS = 0
_BLAS_LIMITER: Any = None


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Run numpy's BLAS on one thread inside the block (when threadpoolctl is installed).

    The matrices of a few-shot fit are small (hundreds of rows): BLAS threads
    cost more in synchronisation than they gain, and on a busy machine they
    make a fit several times slower (measured: 30 s instead of 6 s for the
    Fashion-MNIST pair with the CPU shared by other work). The limit is
    process-wide, so it is reference-counted: the annotator's and the critic's
    worker threads may overlap, and only the last one out restores it.
    """
    global _BLAS_USERS, _BLAS_LIMITER
    with _BLAS_LOCK:
        if _BLAS_USERS == 0:
            try:
                threadpoolctl: Any = importlib.import_module("threadpoolctl")
                _BLAS_LIMITER = threadpoolctl.threadpool_limits(limits=1, user_api="blas")
            except ImportError:
                _BLAS_LIMITER = None
        _BLAS_USERS += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _BLAS_USERS -= 1
            if _BLAS_USERS == 0 and _BLAS_LIMITER is not None:
                _BLAS_LIMITER.restore_original_limits()
                _BLAS_LIMITER = None


def softmax(logits: FloatMatrix) -> FloatMatrix:
    """Row-wise softmax, numerically stable."""
    shifted: FloatMatrix = np.asarray(logits - logits.max(axis=1, keepdims=True), dtype=np.float64)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=1, keepdims=True)
    return shifted


class Classifier(Protocol):
    """A classifier that is fit once on (features, labels) and returns logits."""

    @property
    def name(self) -> str:
        """Short identifier used in model names, e.g. ``logreg``."""
        ...

    def fit(self, x: FloatMatrix, y: IntVector, n_classes: int) -> None:
        """Fit on the labelled rows (the seed)."""
        ...

    def logits(self, x: FloatMatrix) -> FloatMatrix:
        """Unnormalised log-scores, one row per input, one column per class."""
        ...

    def loo_logits(self) -> FloatMatrix | None:
        """Leave-one-out logits of the training rows, when cheap to compute exactly."""
        ...


def _check_fit_inputs(x: FloatMatrix, y: IntVector, n_classes: int) -> None:
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ValueError(f"bad shapes: x {x.shape}, y {y.shape}")
    if x.shape[0] == 0:
        raise ValueError("cannot fit on zero examples")
    if y.min() < 0 or y.max() >= n_classes:
        raise ValueError(f"labels must be in [0, {n_classes})")


@dataclass
class SoftmaxRegression:
    """Multinomial logistic regression with L2 penalty ``l2`` (features standardised).

    Features are centred and scaled by the seed's mean and standard deviation
    (plus ``scale_floor``, so near-constant pixels are not blown up). The mean
    cross-entropy plus ``l2/2 * ||W||^2`` is convex with gradient Lipschitz
    constant L <= lambda_max(X'X) / (2 n) + l2 for the softmax, so gradient
    steps of 1/L with Nesterov momentum converge without tuning.
    """

    l2: float = 0.1
    iterations: int = 400
    scale_floor: float = 0.1
    _mean: FloatMatrix = field(default_factory=lambda: np.zeros((1, 0)), init=False, repr=False)
    _scale: FloatMatrix = field(default_factory=lambda: np.ones((1, 0)), init=False, repr=False)
    _weights: FloatMatrix = field(default_factory=lambda: np.zeros((0, 0)), init=False, repr=False)
    _bias: FloatMatrix = field(default_factory=lambda: np.zeros((1, 0)), init=False, repr=False)

    @property
    def name(self) -> str:
        return "logreg"

    def _standardise(self, x: FloatMatrix) -> FloatMatrix:
        return (x - self._mean) / self._scale

    def fit(self, x: FloatMatrix, y: IntVector, n_classes: int) -> None:
        _check_fit_inputs(x, y, n_classes)
        self._mean = x.mean(axis=0, keepdims=True)
        self._scale = x.std(axis=0, keepdims=True) + self.scale_floor
        z = self._standardise(x)
        n, d = z.shape
        targets = np.zeros((n, n_classes))
        targets[np.arange(n), y] = 1.0
        # Largest eigenvalue of z'z/n from the top singular value (small n, d here).
        top = float(np.linalg.norm(z, ord=2)) ** 2 / n
        lipschitz = 0.5 * (top + 1.0) + self.l2  # +1 for the bias column
        step = 1.0 / lipschitz
        w = np.zeros((d, n_classes))
        b = np.zeros((1, n_classes))
        w_prev, b_prev = w.copy(), b.copy()
        for t in range(1, self.iterations + 1):
            momentum = (t - 1) / (t + 2)
            w_look = w + momentum * (w - w_prev)
            b_look = b + momentum * (b - b_prev)
            residual = (softmax(z @ w_look + b_look) - targets) / n
            w_prev, b_prev = w, b
            w = w_look - step * (z.T @ residual + self.l2 * w_look)
            b = b_look - step * residual.sum(axis=0, keepdims=True)
        self._weights, self._bias = w, b

    def logits(self, x: FloatMatrix) -> FloatMatrix:
        if self._weights.size == 0:
            raise RuntimeError("fit the classifier first")
        return np.asarray(self._standardise(x) @ self._weights + self._bias, dtype=np.float64)

    def loo_logits(self) -> FloatMatrix | None:
        return None  # needs n refits; calibrated by k-fold cross-fitting instead


def _unit_rows(x: FloatMatrix) -> FloatMatrix:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    out: FloatMatrix = np.zeros_like(x)
    np.divide(x, norms, out=out, where=norms > 0)
    return out


@dataclass
class KNearest:
    """Cosine k-nearest neighbours; logit of class c = log of its weighted vote.

    Votes are weighted by exp(similarity / ``width``) so closer neighbours
    count more; ``smoothing`` keeps every class's probability above zero.
    Leave-one-out logits are exact and cheap (drop each row's self-match).
    """

    k: int = 10
    width: float = 0.05
    smoothing: float = 0.02
    _x: FloatMatrix = field(default_factory=lambda: np.zeros((0, 0)), init=False, repr=False)
    _y: IntVector = field(
        default_factory=lambda: np.zeros(0, dtype=np.int64), init=False, repr=False
    )
    _n_classes: int = field(default=0, init=False, repr=False)

    @property
    def name(self) -> str:
        return "knn"

    def fit(self, x: FloatMatrix, y: IntVector, n_classes: int) -> None:
        _check_fit_inputs(x, y, n_classes)
        self._x, self._y, self._n_classes = _unit_rows(x), y.astype(np.int64), n_classes

    def _votes(self, sims: FloatMatrix) -> FloatMatrix:
        k = min(self.k, sims.shape[1])
        idx = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        top = np.take_along_axis(sims, idx, axis=1)
        weights = np.exp((top - top.max(axis=1, keepdims=True)) / self.width)
        votes = np.zeros((sims.shape[0], self._n_classes))
        rows = np.repeat(np.arange(sims.shape[0]), k)
        np.add.at(votes, (rows, self._y[idx].ravel()), weights.ravel())
        votes /= votes.sum(axis=1, keepdims=True)
        return np.log(votes + self.smoothing)

    def logits(self, x: FloatMatrix) -> FloatMatrix:
        if self._x.size == 0:
            raise RuntimeError("fit the classifier first")
        return self._votes(_unit_rows(x) @ self._x.T)

    def loo_logits(self) -> FloatMatrix | None:
        if self._x.shape[0] < 2:
            return None
        sims = self._x @ self._x.T
        np.fill_diagonal(sims, -np.inf)
        return self._votes(sims)


@dataclass
class NearestCentroid:
    """Cosine similarity to each class's mean direction (a prototype classifier)."""

    _centroids: FloatMatrix = field(
        default_factory=lambda: np.zeros((0, 0)), init=False, repr=False
    )
    _x: FloatMatrix = field(default_factory=lambda: np.zeros((0, 0)), init=False, repr=False)
    _y: IntVector = field(
        default_factory=lambda: np.zeros(0, dtype=np.int64), init=False, repr=False
    )

    @property
    def name(self) -> str:
        return "centroid"

    def fit(self, x: FloatMatrix, y: IntVector, n_classes: int) -> None:
        _check_fit_inputs(x, y, n_classes)
        unit = _unit_rows(x)
        sums = np.zeros((n_classes, x.shape[1]))
        np.add.at(sums, y, unit)
        self._centroids = _unit_rows(sums)
        self._x, self._y = unit, y.astype(np.int64)

    def logits(self, x: FloatMatrix) -> FloatMatrix:
        if self._centroids.size == 0:
            raise RuntimeError("fit the classifier first")
        return np.asarray(_unit_rows(x) @ self._centroids.T, dtype=np.float64)

    def loo_logits(self) -> FloatMatrix | None:
        # Remove each row from its own class sum, then re-normalise that centroid.
        n_classes = self._centroids.shape[0]
        sums = np.zeros((n_classes, self._x.shape[1]))
        np.add.at(sums, self._y, self._x)
        out = _unit_rows(self._x) @ _unit_rows(sums).T
        own = sums[self._y] - self._x
        own_norm = np.linalg.norm(own, axis=1)
        own_sim = np.divide(
            np.einsum("ij,ij->i", self._x, own),
            own_norm,
            out=np.zeros(len(own)),
            where=own_norm > 0,
        )
        out[np.arange(len(self._y)), self._y] = own_sim
        return out


def nll(logits: FloatMatrix, y: IntVector, temperature: float) -> float:
    """Mean negative log-likelihood of ``y`` under softmax(logits / temperature)."""
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z).sum(axis=1))
    return float(np.mean(log_norm - z[np.arange(len(y)), y]))


def fit_temperature(
    logits: FloatMatrix, y: IntVector, *, low: float = 1e-3, high: float = 1e3
) -> float:
    """The temperature T minimising the NLL of held-out logits (temperature scaling).

    Guo et al. (2017) temperature scaling: one parameter, so a few dozen
    held-out examples suffice. The NLL is unimodal in log T; a golden-section
    search on log T finds the minimum deterministically.
    """
    a, b = np.log(low), np.log(high)
    ratio = (np.sqrt(5.0) - 1.0) / 2.0
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = nll(logits, y, float(np.exp(c))), nll(logits, y, float(np.exp(d)))
    for _ in range(80):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = nll(logits, y, float(np.exp(c)))
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = nll(logits, y, float(np.exp(d)))
    return float(np.exp((a + b) / 2.0))


def cross_fitted_logits(
    make: Callable[[], Classifier],
    x: FloatMatrix,
    y: IntVector,
    n_classes: int,
    folds: int = 5,
) -> FloatMatrix:
    """Logits of each seed row from a model fit without it (stratified k-fold).

    Fold membership is the row's rank within its class modulo ``folds``: a
    deterministic, stratified split with no random numbers.
    """
    fold_of = np.zeros(len(y), dtype=np.int64)
    for c in range(n_classes):
        rows = np.flatnonzero(y == c)
        fold_of[rows] = np.arange(len(rows)) % folds
    out = np.zeros((len(y), n_classes))
    for f in range(folds):
        held = fold_of == f
        if not held.any() or held.all():
            continue
        model = make()
        model.fit(x[~held], y[~held], n_classes)
        out[held] = model.logits(x[held])
    return out
