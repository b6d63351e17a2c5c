"""Agreement of two human reviews of one item: the quality of the human labels.

The ACT loss treats human labels as ground truth, so the gateway measures
them: a share of reviewed items (the task's overlap) goes to a second
reviewer, and the pairs of labels give

* **percent agreement**, the share of items whose two labels are equal;
* **Fleiss' kappa** (Fleiss, "Measuring nominal scale agreement among many
  raters", Psychological Bulletin 76(5), 1971), agreement beyond what the
  label frequencies give by chance: ``(P - P_e) / (1 - P_e)`` with ``P`` the
  observed agreement and ``P_e`` the sum of squared label shares over all
  ratings. Fleiss' form (rather than Cohen's) because the two raters of an
  item are whichever two reviewers took it, not two fixed people; with two
  ratings per item it equals Scott's pi (1955);
* per reviewer, the share of that reviewer's double-reviewed items where the
  other reviewer gave the same label.

Pure functions over ``(label_a, label_b)`` pairs; no I/O.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Agreement:
    """Agreement over a set of double-reviewed items."""

    #: Items with two reviews.
    items: int
    #: Items whose two labels are equal.
    agreed: int
    #: ``agreed / items`` (None without items).
    percent: float | None
    #: Fleiss' kappa (None without items, or when every label is the same one).
    kappa: float | None


def fleiss_kappa_pairs(pairs: Sequence[tuple[int, int]]) -> Agreement:
    """Percent agreement and Fleiss' kappa of items rated twice (see the module doc)."""
    n = len(pairs)
    if n == 0:
        return Agreement(items=0, agreed=0, percent=None, kappa=None)
    agreed = sum(1 for a, b in pairs if a == b)
    observed = agreed / n
    shares = Counter(label for pair in pairs for label in pair)
    chance = sum((count / (2 * n)) ** 2 for count in shares.values())
    kappa = None if chance >= 1.0 else (observed - chance) / (1.0 - chance)
    return Agreement(items=n, agreed=agreed, percent=observed, kappa=kappa)


def per_reviewer_agreement(
    pairs: Iterable[tuple[str, int, str, int]],
) -> dict[str, tuple[int, int]]:
    """``reviewer -> (agreed, items)`` over pairs ``(reviewer_a, label_a, reviewer_b, label_b)``."""
    found: dict[str, list[int]] = {}
    for reviewer_a, label_a, reviewer_b, label_b in pairs:
        same = int(label_a == label_b)
        for reviewer in (reviewer_a, reviewer_b):
            counts = found.setdefault(reviewer, [0, 0])
            counts[0] += same
            counts[1] += 1
    return {reviewer: (agreed, items) for reviewer, (agreed, items) in found.items()}
