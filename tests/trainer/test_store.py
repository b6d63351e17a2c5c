"""The trainer's SQLite store: dedupe by item id, snapshots, fits."""

from __future__ import annotations

from pathlib import Path

from act.v1 import training_pb2

from services.trainer.store import TrainerStore
from tests.trainer.support import TASK, make_label


def test_a_label_seen_twice_counts_once(tmp_path: Path) -> None:
    store = TrainerStore(tmp_path / "s.sqlite")
    first = [store.upsert_label(make_label(n)) for n in range(20)]
    again = [store.upsert_label(make_label(n)) for n in range(0, 20, 2)]
    assert all(r.inserted for r in first)
    assert not any(r.inserted for r in again)
    assert [r.seq for r in again] == [first[n].seq for n in range(0, 20, 2)]  # seq is stable
    assert store.count_labels(TASK) == 20
    assert store.total_updates() == 10
    assert store.max_seq() == 20
    # Reopening sees the same rows (durable).
    store.close()
    reopened = TrainerStore(tmp_path / "s.sqlite")
    assert reopened.count_labels() == 20


def test_a_human_label_is_never_downgraded_to_a_machine_label(tmp_path: Path) -> None:
    store = TrainerStore(tmp_path / "s.sqlite")
    human = make_label(3)  # review_every=3: delta = 1
    assert human.delta
    store.upsert_label(human)
    machine = make_label(3)
    machine.delta = False
    machine.ClearField("human_label")
    store.upsert_label(machine)
    (row,) = list(store.iter_labels(TASK, store.max_seq()))
    assert row.delta and row.human_label == 3 % 4


def test_snapshot_pins_the_training_set(tmp_path: Path) -> None:
    store = TrainerStore(tmp_path / "s.sqlite")
    for n in range(10):
        store.upsert_label(make_label(n))
    snap = store.max_seq()
    for n in range(10, 15):
        store.upsert_label(make_label(n))
    store.upsert_label(make_label(4))  # an update of an old row keeps it in the snapshot
    rows = list(store.iter_labels(TASK, snap))
    assert [r.item_id for r in rows] == [f"item-{n:05d}" for n in range(10)]
    assert store.count_human(TASK, snap) == sum(1 for n in range(10) if n % 3 == 0)


def test_fits_are_idempotent_by_key_and_count_new_labels(tmp_path: Path) -> None:
    store = TrainerStore(tmp_path / "s.sqlite")
    for n in range(8):
        store.upsert_label(make_label(n))
    assert store.labels_since_last_fit(TASK) == 8
    status = training_pb2.FitStatus(fit_id="f1", task_id=TASK, state=training_pb2.FIT_STATE_QUEUED)
    got, created = store.create_fit(status, "key-1")
    assert created and got.fit_id == "f1"
    dup, created = store.create_fit(
        training_pb2.FitStatus(fit_id="f2", task_id=TASK, state=training_pb2.FIT_STATE_QUEUED),
        "key-1",
    )
    assert not created and dup.fit_id == "f1"
    assert store.fit_snapshot("f1") == 8
    assert store.labels_since_last_fit(TASK) == 0
    store.upsert_label(make_label(8))
    assert store.labels_since_last_fit(TASK) == 1
    got.state = training_pb2.FIT_STATE_RUNNING
    got.epoch = 3
    store.save_fit(got)
    assert store.get_fit("f1").epoch == 3  # type: ignore[union-attr]
    assert [f.fit_id for f in store.list_fits(states=(training_pb2.FIT_STATE_RUNNING,))] == ["f1"]
    assert store.get_fit("nope") is None
