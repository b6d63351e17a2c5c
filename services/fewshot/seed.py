"""Choosing the few-shot seed: k human-labelled examples per class, deterministically.

The seed plays the part of the labelled examples of an in-context prompt. It
is chosen the way a person would label a seed set: walk through the pool in a
fixed pseudo-random order, ask for each item's label, keep it if its class
still needs examples, and stop as soon as every class has k. Labels are asked
for lazily through a callable, so the selection provably looks at no label
beyond the ones it asked for (``SeedSelection.queried``), and the few-shot
models are fit on the kept ones only.

The order is a hash of ``(seed, item id)``: the same seed picks the same
items whatever the order or size of the pool (a new item can displace an old
one only if it hashes before it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

IntVector = npt.NDArray[np.int64]
DEFAULT_SEED = 0


class SeedError(ValueError):
    """The pool cannot provide k examples of every class."""


@dataclass(frozen=True, slots=True)
class SeedSelection:
    """The chosen seed: positions in the pool, their ids and their labels."""

    indices: IntVector  # positions in the pool, in selection order
    ids: tuple[str, ...]
    labels: IntVector
    per_class: int
    n_classes: int
    seed: int
    queried: int  # labels looked at, including ones of classes already full

    def __len__(self) -> int:
        return int(self.indices.size)

    def class_counts(self) -> IntVector:
        """Examples per class (all equal to ``per_class``)."""
        return np.bincount(self.labels, minlength=self.n_classes).astype(np.int64)


def hash_order(ids: Sequence[str], seed: int) -> IntVector:
    """Pool positions sorted by SHA-256 of ``seed`` and the item id (ties by position)."""
    keys = [hashlib.sha256(f"{seed}\x00{item_id}".encode()).digest() for item_id in ids]
    return np.array(sorted(range(len(ids)), key=lambda i: (keys[i], i)), dtype=np.int64)


def select_seed(
    ids: Sequence[str],
    label_of: Callable[[int], int],
    *,
    n_classes: int,
    per_class: int,
    seed: int = DEFAULT_SEED,
) -> SeedSelection:
    """Pick ``per_class`` examples of each of ``n_classes`` classes from the pool ``ids``.

    ``label_of(position)`` returns the human label of the pool item at that
    position; it is called only for items visited before the seed is full.
    """
    if per_class < 1:
        raise ValueError("per_class must be >= 1")
    if n_classes < 2:
        raise ValueError("a classification task needs at least 2 classes")
    if len(set(ids)) != len(ids):
        raise ValueError("item ids in the pool must be unique")
    counts = [0] * n_classes
    chosen: list[int] = []
    chosen_labels: list[int] = []
    queried = 0
    for position in hash_order(ids, seed):
        if len(chosen) == per_class * n_classes:
            break
        label = int(label_of(int(position)))
        queried += 1
        if not 0 <= label < n_classes:
            raise SeedError(f"label {label} of item {ids[position]!r} is not in [0, {n_classes})")
        if counts[label] < per_class:
            counts[label] += 1
            chosen.append(int(position))
            chosen_labels.append(label)
    short = [c for c in range(n_classes) if counts[c] < per_class]
    if short:
        raise SeedError(
            f"the pool of {len(ids)} items has fewer than {per_class} examples of class(es) {short}"
        )
    indices = np.array(chosen, dtype=np.int64)
    return SeedSelection(
        indices=indices,
        ids=tuple(ids[i] for i in chosen),
        labels=np.array(chosen_labels, dtype=np.int64),
        per_class=per_class,
        n_classes=n_classes,
        seed=seed,
        queried=queried,
    )
