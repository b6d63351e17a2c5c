"""Seed selection: k per class, deterministic, and blind to every label it did not ask for."""

from __future__ import annotations

import numpy as np
import pytest

from services.fewshot.seed import SeedError, hash_order, select_seed


def _pool(n: int = 500, classes: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    ids = [f"item-{i}" for i in range(n)]
    return ids, rng.integers(0, classes, n)


def test_k_per_class_and_deterministic():
    ids, labels = _pool()
    a = select_seed(ids, lambda i: int(labels[i]), n_classes=5, per_class=7, seed=3)
    b = select_seed(ids, lambda i: int(labels[i]), n_classes=5, per_class=7, seed=3)
    assert a.class_counts().tolist() == [7] * 5 and len(a) == 35
    assert a.ids == b.ids and np.array_equal(a.labels, labels[a.indices])
    c = select_seed(ids, lambda i: int(labels[i]), n_classes=5, per_class=7, seed=4)
    assert set(c.ids) != set(a.ids)
    assert a.queried >= 35 and a.queried < len(ids)


def test_selection_depends_on_ids_not_pool_order():
    ids, labels = _pool()
    perm = np.random.default_rng(1).permutation(len(ids))
    shuffled_ids = [ids[i] for i in perm]
    a = select_seed(ids, lambda i: int(labels[i]), n_classes=5, per_class=4, seed=0)
    b = select_seed(shuffled_ids, lambda i: int(labels[perm[i]]), n_classes=5, per_class=4, seed=0)
    assert a.ids == b.ids


def test_labels_are_only_read_for_visited_items_and_the_rest_do_not_matter():
    ids, labels = _pool()
    asked: list[int] = []

    def label_of(i: int) -> int:
        asked.append(i)
        return int(labels[i])

    sel = select_seed(ids, label_of, n_classes=5, per_class=3, seed=0)
    assert len(asked) == sel.queried == len(set(asked))
    # Scramble every label the selection never asked for: same seed.
    scrambled = labels.copy()
    others = np.setdiff1d(np.arange(len(ids)), asked)
    scrambled[others] = np.random.default_rng(9).integers(0, 5, others.size)
    again = select_seed(ids, lambda i: int(scrambled[i]), n_classes=5, per_class=3, seed=0)
    assert again.ids == sel.ids and np.array_equal(again.labels, sel.labels)
    # Larger seeds extend smaller ones (same walk through the pool).
    bigger = select_seed(ids, lambda i: int(labels[i]), n_classes=5, per_class=6, seed=0)
    assert set(sel.ids) <= set(bigger.ids)


def test_errors():
    ids = ["a", "b", "c", "d"]
    with pytest.raises(SeedError, match="fewer than 2 examples"):
        select_seed(ids, lambda i: [0, 0, 0, 1][i], n_classes=2, per_class=2)
    with pytest.raises(SeedError, match="not in"):
        select_seed(ids, lambda i: 5, n_classes=2, per_class=1)
    with pytest.raises(ValueError, match="unique"):
        select_seed(["a", "a"], lambda i: 0, n_classes=2, per_class=1)
    assert sorted(hash_order(ids, 0).tolist()) == [0, 1, 2, 3]
