"""The pseudo-labelling baselines of the paper's Table 7 (appendix G.3.2).

Neither uses the LLM's labels: the human budget buys labels, a model trained
on them labels the rest where it is confident, and the final model trains on
both (cross-entropy).

* Pseudo-labelling (Lee, "Pseudo-label: the simple and efficient
  semi-supervised learning method", ICML 2013 workshop): humans label a
  uniform random subset of size B; then, ``iterations`` times, a model trained
  on the human labels and the current pseudo-labels labels every other item
  whose top class probability is at least ``threshold`` (the paper: 0.9).
* Active pseudo-labelling: the budget is spent in rounds, the first on a
  uniform random subset (the paper starts from 100 items per class, which
  needs the labels to stratify), each later one on the unlabelled items whose
  predicted class distribution has the highest entropy (uncertainty sampling,
  Settles, "Active learning literature survey", 2009, section 3.1); then the
  same pseudo-labelling iterations.

Every choice is a deterministic function of what was known when it was made
(seeded draws, fits of the labels so far), like the feedback loop; the model
is injected (:data:`services.experiments.feedback.FitProba`), so the
procedure is tested with cheap stand-in models.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from services.experiments.feedback import FitProba, round_sizes, top_unreviewed

#: No label (not reviewed, not pseudo-labelled).
NONE = -1


@dataclass(frozen=True, slots=True)
class PseudoLabels:
    """A pseudo-labelling run: which items humans labelled and every label trained on."""

    reviewed: npt.NDArray[np.bool_]
    #: The human label where reviewed, the pseudo-label where confident, NONE elsewhere.
    labels: npt.NDArray[np.int64]

    @property
    def used(self) -> npt.NDArray[np.bool_]:
        """Items the final model trains on."""
        return np.asarray(self.labels != NONE, dtype=bool)

    @property
    def pseudo(self) -> int:
        """How many items carry a pseudo-label."""
        return int((self.used & ~self.reviewed).sum())


def entropy(proba: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Shannon entropy (nats) of each row of class probabilities (0 log 0 = 0)."""
    p = np.asarray(proba, dtype=np.float64)
    logs = np.log(np.where(p > 0, p, 1.0))
    return np.asarray(-(p * logs).sum(axis=1), dtype=np.float64)


def confident_labels(proba: npt.ArrayLike, threshold: float) -> npt.NDArray[np.int64]:
    """The argmax class where its probability is at least ``threshold``, NONE elsewhere."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError("threshold must be in (0, 1]")
    p = np.asarray(proba, dtype=np.float64)
    top = p.argmax(axis=1).astype(np.int64)
    return np.where(p.max(axis=1) >= threshold, top, NONE).astype(np.int64)


def pseudo_labels(
    human: npt.ArrayLike,
    budget: int,
    *,
    seed: int,
    fit_proba: FitProba,
    active: bool = False,
    rounds: int = 3,
    iterations: int = 2,
    threshold: float = 0.9,
) -> PseudoLabels:
    """Spend ``budget`` human labels (randomly, or actively in ``rounds``), then pseudo-label.

    ``human`` is read only where an item is reviewed.
    """
    h = np.asarray(human, dtype=np.int64)
    n = h.size
    if h.ndim != 1:
        raise ValueError("human must be 1-d")
    if not 0 <= budget <= n:
        raise ValueError(f"budget must be in [0, {n}], got {budget}")
    if iterations < 1:
        raise ValueError("iterations must be >= 1")
    rng = np.random.default_rng([seed, 0x95E])
    tiebreak = rng.permutation(n)
    reviewed = np.zeros(n, dtype=bool)
    labels = np.full(n, NONE, dtype=np.int64)
    sizes = round_sizes(budget, rounds) if active else [budget]
    for r, size in enumerate(sizes):
        if r == 0:
            chosen = rng.choice(n, size=size, replace=False)
        else:
            rest = np.flatnonzero(~reviewed).astype(np.int64)
            uncertainty = np.zeros(n)
            uncertainty[rest] = entropy(fit_proba(np.flatnonzero(reviewed), labels, rest))
            chosen = top_unreviewed(uncertainty, reviewed, size, tiebreak)
        reviewed[chosen] = True
        labels[chosen] = h[chosen]
    rest = np.flatnonzero(~reviewed).astype(np.int64)
    if reviewed.any() and rest.size:
        for _ in range(iterations):
            proba = fit_proba(np.flatnonzero(labels != NONE).astype(np.int64), labels, rest)
            labels[rest] = confident_labels(proba, threshold)
    return PseudoLabels(reviewed=reviewed, labels=labels)
