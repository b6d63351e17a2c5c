"""The data of a downstream experiment: train / validation / test splits and a seed pool.

Human labels come from the data sets themselves (Fashion-MNIST's labels, the
SpamAssassin message groups). Splits are drawn once from ``split_seed`` and
are the same for every training seed, as in the paper's Table 3 (five runs
over one annotated data set).

* ``train``: the items the pipeline annotates; downstream models train on
  them with human labels (human-only), machine labels or ACT data.
* ``validation``: a small uniformly drawn human-labelled set, never trained
  on, on which hyper-parameters are selected (:mod:`services.trainer.hpo`).
* ``test``: where accuracy is reported (Fashion-MNIST's official test split).
* ``seed_pool``: human-labelled items outside ``train`` and ``test`` from which
  the few-shot annotator and critic draw their seed examples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

DatasetName = Literal["fashion", "spam"]
Modality = Literal["image", "text"]
IntArray = npt.NDArray[np.int64]

#: The downstream model of each data set (services.trainer.networks).
DEFAULT_MODELS: dict[str, str] = {"fashion": "cnn-28x28", "spam": "minilm-head"}
#: Fashion-MNIST training images kept out of the full-size training set for the
#: few-shot seed (it needs dozens of examples per class).
FASHION_SEED_POOL = 2_000


@dataclass(frozen=True)
class Split:
    """Items of one split: ids, raw content and human labels."""

    ids: tuple[str, ...]
    raw: npt.NDArray[np.uint8] | tuple[str, ...]  # (N, 28, 28) images or texts
    labels: IntArray

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, index: npt.NDArray[np.int64] | Sequence[int]) -> Split:
        """The items at ``index``."""
        idx = np.asarray(index, dtype=np.int64)
        raw = (
            tuple(self.raw[i] for i in idx.tolist())
            if isinstance(self.raw, tuple)
            else self.raw[idx]
        )
        return Split(ids=tuple(self.ids[i] for i in idx.tolist()), raw=raw, labels=self.labels[idx])


@dataclass(frozen=True)
class ExperimentData:
    """Everything a Table-3 run needs except the machine annotations."""

    name: str
    modality: Modality
    class_names: tuple[str, ...]
    train: Split
    validation: Split
    test: Split
    seed_pool: Split

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.class_names)


def _concat(a: Split, b: Split) -> Split:
    raw: npt.NDArray[np.uint8] | tuple[str, ...]
    if isinstance(a.raw, tuple) and isinstance(b.raw, tuple):
        raw = a.raw + b.raw
    else:
        raw = np.concatenate([np.asarray(a.raw), np.asarray(b.raw)])
    return Split(ids=a.ids + b.ids, raw=raw, labels=np.concatenate([a.labels, b.labels]))


def load_fashion(
    n_train: int, n_val: int = 500, n_test: int | None = None, split_seed: int = 0
) -> ExperimentData:
    """Fashion-MNIST: train/validation/seed pool from the 60k training split, official test."""
    from services.datasets.fashion import FASHION_LABELS, load_fashion_mnist

    full = load_fashion_mnist("train")
    test = load_fashion_mnist("test")
    n = len(full)
    if n_train < 1 or n_val < 1 or n_train + n_val > n:
        raise ValueError(f"need 1 <= n_train, 1 <= n_val and n_train + n_val <= {n}")
    perm = np.random.default_rng(split_seed).permutation(n)
    pool = Split(ids=tuple(full.item_id(i) for i in range(n)), raw=full.images, labels=full.labels)
    train = pool.take(perm[:n_train])
    val = pool.take(perm[n_train : n_train + n_val])
    rest = perm[n_train + n_val :]
    seed_pool = pool.take(rest) if rest.size else val
    test_split = Split(
        ids=tuple(test.item_id(i) for i in range(len(test))), raw=test.images, labels=test.labels
    )
    if n_test is not None and n_test < len(test_split):
        test_split = test_split.take(
            np.sort(np.random.default_rng(split_seed + 1).permutation(len(test_split))[:n_test])
        )
    return ExperimentData(
        name="fashion",
        modality="image",
        class_names=FASHION_LABELS,
        train=train,
        validation=val,
        test=test_split,
        seed_pool=seed_pool,
    )


def load_spam(
    n_train: int | None = None, n_val: int = 400, n_test: int = 1500, split_seed: int = 0
) -> ExperimentData:
    """SpamAssassin: one permutation of the 6,046 messages cut into test, validation, train.

    ``n_train=None`` (or too large) takes every message left after test and
    validation. The seed pool is the unused messages plus the validation set
    (both human-labelled and never trained on).
    """
    from services.datasets.spam import SPAM_LABELS, load_spam_assassin

    records = load_spam_assassin()
    n = len(records)
    if n_val < 1 or n_test < 1 or n_val + n_test >= n:
        raise ValueError("validation and test sets must leave room for training")
    perm = np.random.default_rng(split_seed).permutation(n)
    pool = Split(
        ids=tuple(r.id for r in records),
        raw=tuple(r.text for r in records),
        labels=np.array([r.label for r in records], dtype=np.int64),
    )
    test = pool.take(perm[:n_test])
    val = pool.take(perm[n_test : n_test + n_val])
    available = n - n_test - n_val
    take = available if n_train is None else min(n_train, available)
    train = pool.take(perm[n_test + n_val : n_test + n_val + take])
    rest = perm[n_test + n_val + take :]
    seed_pool = _concat(pool.take(rest), val) if rest.size else val
    return ExperimentData(
        name="spam",
        modality="text",
        class_names=SPAM_LABELS,
        train=train,
        validation=val,
        test=test,
        seed_pool=seed_pool,
    )


def load_experiment_data(
    dataset: DatasetName | str,
    n_train: int | None,
    *,
    n_val: int | None = None,
    n_test: int | None = None,
    split_seed: int = 0,
) -> ExperimentData:
    """The splits of ``fashion`` or ``spam`` (defaults per data set where ``None``)."""
    if dataset == "fashion":
        return load_fashion(
            n_train if n_train is not None else 60_000 - (n_val or 500) - FASHION_SEED_POOL,
            n_val=n_val or 500,
            n_test=n_test,
            split_seed=split_seed,
        )
    if dataset == "spam":
        return load_spam(n_train, n_val=n_val or 400, n_test=n_test or 1500, split_seed=split_seed)
    raise ValueError(f"unknown data set {dataset!r}; expected 'fashion' or 'spam'")
