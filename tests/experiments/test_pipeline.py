"""Table-3 inputs from the trainer's store after a (simulated) streaming run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from act.v1 import item_pb2, review_pb2

from services.datasets.spam import load_spam_assassin
from services.experiments.pipeline import experiment_from_store
from services.trainer.store import TrainerStore


def test_experiment_from_the_trainer_store(tmp_path: Path) -> None:
    records = load_spam_assassin()[:300]
    store = TrainerStore(tmp_path / "store.sqlite")
    rng = np.random.default_rng(0)
    for r in records:
        machine = r.label if rng.random() < 0.8 else 1 - r.label
        item = item_pb2.Item(item_id=r.id, task_id="spam", text=r.text)
        label = review_pb2.FinalLabel(
            item_id=r.id, task_id="spam", machine_label=machine, eps=0.9 if machine != r.label
            else 0.1, label_index=machine,
        )  # fmt: skip
        label.item.CopyFrom(item)
        store.upsert_label(label)
        store.upsert_label(label)  # a duplicate counts once
    store.close()
    data, ann = experiment_from_store("spam", tmp_path / "store.sqlite", "spam", n_val=50,
                                      n_test=100)  # fmt: skip
    assert len(data.train) == 300 and ann.labels.size == 300
    assert data.train.labels.tolist() == [r.label for r in records]  # human labels by id
    assert set(data.train.ids).isdisjoint(data.validation.ids)
    assert set(data.train.ids).isdisjoint(data.test.ids)
    assert set(data.validation.ids).isdisjoint(data.test.ids)
    assert len(data.validation) == 50 and len(data.test) == 100
    assert ((ann.labels != data.train.labels) == (ann.eps > 0.5)).all()
