"""In-order commit bookkeeping for one input partition (pure, no I/O).

Records are dispatched in offset order and may finish in any order; only the
longest finished prefix may be committed, together with the outputs of exactly
those records. That is what makes concurrent processing exactly-once: a
transaction never contains the output of a record whose offset it does not
also commit.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(slots=True)
class _Entry(Generic[T]):
    offset: int
    done: bool = False
    outputs: Sequence[T] = ()


@dataclass(frozen=True, slots=True)
class CommitBatch(Generic[T]):
    """The finished prefix taken for one transaction."""

    outputs: list[T]
    next_offset: int  # the offset to commit: last record's offset + 1
    records: int


@dataclass(slots=True)
class PartitionLedger(Generic[T]):
    """Dispatched records of one partition, in offset order."""

    _entries: deque[_Entry[T]] = field(default_factory=deque)
    _by_offset: dict[int, _Entry[T]] = field(default_factory=dict)
    _done: int = 0

    def add(self, offset: int) -> None:
        """Register a dispatched record; offsets must increase."""
        if self._entries and offset <= self._entries[-1].offset:
            raise ValueError(f"offset {offset} not after {self._entries[-1].offset}")
        entry: _Entry[T] = _Entry(offset)
        self._entries.append(entry)
        self._by_offset[offset] = entry

    def complete(self, offset: int, outputs: Sequence[T]) -> bool:
        """Mark a record finished with its outputs; False if it was dropped meanwhile."""
        entry = self._by_offset.get(offset)
        if entry is None or entry.done:
            return False
        entry.done = True
        entry.outputs = outputs
        self._done += 1
        return True

    def ready(self) -> int:
        """Number of finished records at the head (committable now)."""
        n = 0
        for entry in self._entries:
            if not entry.done:
                break
            n += 1
        return n

    def peek(self, max_records: int) -> CommitBatch[T] | None:
        """The finished prefix (at most ``max_records``) without removing it."""
        outputs: list[T] = []
        last = None
        n = 0
        for entry in self._entries:
            if not entry.done or n >= max_records:
                break
            outputs.extend(entry.outputs)
            last = entry.offset
            n += 1
        if last is None:
            return None
        return CommitBatch(outputs=outputs, next_offset=last + 1, records=n)

    def pop(self, batch: CommitBatch[T]) -> None:
        """Remove a batch after its transaction committed."""
        self.drop_below(batch.next_offset)

    def drop_below(self, offset: int) -> int:
        """Forget records below ``offset`` (already committed); returns how many."""
        n = 0
        while self._entries and self._entries[0].offset < offset:
            entry = self._entries.popleft()
            del self._by_offset[entry.offset]
            if entry.done:
                self._done -= 1
            n += 1
        return n

    @property
    def pending(self) -> int:
        """Records dispatched and not yet committed (finished or not)."""
        return len(self._entries)

    @property
    def done(self) -> int:
        """Finished records awaiting commit."""
        return self._done

    @property
    def unfinished(self) -> int:
        """Records still being processed."""
        return len(self._entries) - self._done

    def clear(self) -> None:
        """Forget everything (partition revoked or lost)."""
        self._entries.clear()
        self._by_offset.clear()
        self._done = 0
