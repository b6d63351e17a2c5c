"""In-order commit bookkeeping."""

import random

import pytest

from services.runtime.ledger import PartitionLedger


def test_only_finished_prefix_is_committable():
    ledger: PartitionLedger[str] = PartitionLedger()
    for offset in (10, 11, 13, 14):
        ledger.add(offset)
    assert ledger.peek(100) is None
    ledger.complete(11, ["b"])
    ledger.complete(13, ["c1", "c2"])
    assert ledger.peek(100) is None  # 10 still running
    ledger.complete(10, ["a"])
    batch = ledger.peek(100)
    assert batch is not None
    assert batch.outputs == ["a", "b", "c1", "c2"]
    assert batch.next_offset == 14  # gap at 12 (a transaction marker) is fine
    assert batch.records == 3
    ledger.pop(batch)
    assert ledger.pending == 1 and ledger.done == 0


def test_peek_respects_max_records_and_drop_below():
    ledger: PartitionLedger[int] = PartitionLedger()
    for offset in range(10):
        ledger.add(offset)
        ledger.complete(offset, [offset])
    batch = ledger.peek(4)
    assert batch is not None and batch.next_offset == 4 and batch.outputs == [0, 1, 2, 3]
    assert ledger.drop_below(7) == 7
    assert ledger.peek(100).outputs == [7, 8, 9]  # type: ignore[union-attr]


def test_offsets_must_increase_and_dropped_completion_is_ignored():
    ledger: PartitionLedger[int] = PartitionLedger()
    ledger.add(5)
    with pytest.raises(ValueError):
        ledger.add(5)
    ledger.clear()
    assert ledger.complete(5, [1]) is False


def test_random_completion_order_never_commits_unfinished():
    rng = random.Random(7)
    ledger: PartitionLedger[int] = PartitionLedger()
    offsets = list(range(0, 2000, 2))
    for o in offsets:
        ledger.add(o)
    order = offsets[:]
    rng.shuffle(order)
    finished: set[int] = set()
    committed: list[int] = []
    for o in order:
        ledger.complete(o, [o])
        finished.add(o)
        batch = ledger.peek(rng.randint(1, 50))
        if batch and rng.random() < 0.5:
            assert set(batch.outputs) <= finished
            committed.extend(batch.outputs)
            ledger.pop(batch)
    while (batch := ledger.peek(1000)) is not None:
        committed.extend(batch.outputs)
        ledger.pop(batch)
    assert committed == offsets  # every output once, in offset order
