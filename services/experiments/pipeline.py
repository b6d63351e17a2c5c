"""Table 3 from what flowed through the pipeline (the main job's last step).

After a data set has streamed through annotator, criticizer, sampler and
review gateway, the trainer's store (:class:`~services.trainer.store.TrainerStore`)
holds every item with its machine label ``y_m`` and the criticizer's ``eps``.
:func:`experiment_from_store` turns that into the inputs of
:func:`~services.experiments.table.compute_table`: the streamed items are the
training split (human labels from the data set, as in the paper), validation
and test items are drawn from the same data set outside the streamed ones,
and the machine annotations are the pipeline's own. The table then re-samples
``delta`` offline for every rule from those eps (the stream itself was sampled
with one rule).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from act.v1 import item_pb2

from services.experiments.annotations import MachineAnnotations
from services.experiments.data import ExperimentData, Split
from services.trainer.features import decode_item_image
from services.trainer.store import TrainerStore


@dataclass(frozen=True, slots=True)
class StreamedLabel:
    """One streamed item as the trainer stored it."""

    item_id: str
    machine_label: int
    eps: float
    item: item_pb2.Item


def streamed_from_store(store_path: Path, task_id: str) -> list[StreamedLabel]:
    """Every stored item of ``task_id`` (in arrival order)."""
    store = TrainerStore(store_path)
    try:
        return [
            StreamedLabel(r.item_id, r.machine_label, r.eps, item_pb2.Item.FromString(r.item))
            for r in store.iter_labels(task_id, store.max_seq())
        ]
    finally:
        store.close()


def _pool(dataset: str) -> tuple[Split, Split, tuple[str, ...], str]:
    """(train pool, test pool, class names, modality) of a built-in data set."""
    if dataset == "fashion":
        from services.datasets.fashion import FASHION_LABELS, load_fashion_mnist

        tr, te = load_fashion_mnist("train"), load_fashion_mnist("test")
        return (
            Split(tuple(tr.item_id(i) for i in range(len(tr))), tr.images, tr.labels),
            Split(tuple(te.item_id(i) for i in range(len(te))), te.images, te.labels),
            FASHION_LABELS,
            "image",
        )
    if dataset == "spam":
        from services.datasets.spam import SPAM_LABELS, load_spam_assassin

        records = load_spam_assassin()
        pool = Split(
            tuple(r.id for r in records),
            tuple(r.text for r in records),
            np.array([r.label for r in records], dtype=np.int64),
        )
        return pool, pool, SPAM_LABELS, "text"
    raise ValueError(f"unknown data set {dataset!r}; expected 'fashion' or 'spam'")


def experiment_from_streamed(
    dataset: str,
    streamed: Iterable[StreamedLabel],
    *,
    n_val: int = 500,
    n_test: int = 1500,
    split_seed: int = 0,
    annotator: str = "pipeline annotator",
    critic: str = "pipeline criticizer",
    seed_size: int = 0,
) -> tuple[ExperimentData, MachineAnnotations]:
    """The experiment whose training items are the streamed ones.

    ``annotator``, ``critic`` and ``seed_size`` (human labels the models were
    fit on) describe the machine side in the report.

    Human labels of the streamed items come from the data set by item id
    (``Item.reference_label`` when the id is unknown). Validation and test
    items are drawn (``split_seed``) from the data set's items that were not
    streamed; Fashion-MNIST tests on its official test split (``n_test``
    caps it for speed), SpamAssassin on ``n_test`` held-out emails.
    """
    rows = list(streamed)
    if not rows:
        raise ValueError("no streamed items")
    pool, test_pool, names, modality = _pool(dataset)
    index = {item_id: i for i, item_id in enumerate(pool.ids)}
    human = []
    raw_images: list[np.ndarray] = []
    raw_texts: list[str] = []
    for row in rows:
        if row.item_id in index:
            human.append(int(pool.labels[index[row.item_id]]))
        elif row.item.HasField("reference_label"):
            human.append(int(row.item.reference_label))
        else:
            raise ValueError(f"item {row.item_id!r}: no human label in the data set or the item")
        if modality == "image":
            raw_images.append(decode_item_image(bytes(row.item.image_bytes)))
        else:
            raw_texts.append(row.item.text)
    train = Split(
        ids=tuple(r.item_id for r in rows),
        raw=np.stack(raw_images).astype(np.uint8) if modality == "image" else tuple(raw_texts),
        labels=np.array(human, dtype=np.int64),
    )
    streamed_ids = set(train.ids)
    rng = np.random.default_rng(split_seed)
    unused = np.array([i for i, x in enumerate(pool.ids) if x not in streamed_ids], dtype=np.int64)
    unused = unused[rng.permutation(unused.size)]
    if dataset == "fashion":
        validation = pool.take(unused[:n_val])
        test_idx = np.array(
            [i for i, x in enumerate(test_pool.ids) if x not in streamed_ids], dtype=np.int64
        )
        test = test_pool.take(np.sort(rng.permutation(test_idx)[:n_test]))
    else:
        test = pool.take(unused[:n_test])
        validation = pool.take(unused[n_test : n_test + n_val])
    if len(validation) == 0 or len(test) == 0:
        raise ValueError("the data set has no items left for validation and test")
    data = ExperimentData(
        name=dataset,
        modality="image" if modality == "image" else "text",
        class_names=names,
        train=train,
        validation=validation,
        test=test,
        seed_pool=validation,
    )
    annotations = MachineAnnotations(
        labels=np.array([r.machine_label for r in rows], dtype=np.int64),
        eps=np.clip(np.array([r.eps for r in rows], dtype=np.float64), 0.0, 1.0),
        annotator=annotator,
        critic=critic,
        seed_size=seed_size,
    )
    return data, annotations


def experiment_from_store(
    dataset: str,
    store_path: Path,
    task_id: str,
    *,
    n_val: int = 500,
    n_test: int = 1500,
    split_seed: int = 0,
    annotator: str = "pipeline annotator",
    critic: str = "pipeline criticizer",
    seed_size: int = 0,
) -> tuple[ExperimentData, MachineAnnotations]:
    """:func:`experiment_from_streamed` over the trainer's store of ``task_id``."""
    return experiment_from_streamed(
        dataset,
        streamed_from_store(store_path, task_id),
        n_val=n_val,
        n_test=n_test,
        split_seed=split_seed,
        annotator=annotator,
        critic=critic,
        seed_size=seed_size,
    )
