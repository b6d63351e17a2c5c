"""What the sampler keeps per owned input partition, and its changelog.

A :class:`SamplerPartition` exists from the runner's ``on_assigned`` to its
``on_revoked``. It holds the streaming states of the partition's tasks, the
:class:`~services.sampler.ordering.OrderedExecutor` that makes them change
in offset order, the batch summaries and members restored from the
partition's changelog, and, for every decision not yet committed, a cheap copy of its
task's state (:class:`StateCopy`) with the decision's outputs.

The runner commits a *prefix* of the partition, ending at some offset ``k``,
and asks for the changelog writes of exactly that prefix
(:meth:`SamplerPartition.changelog`): per task, the copy taken after its last
decision at or below ``k``. Decisions are made in offset order, so that copy
is the task's state after every committed record and none after; a task
without a decision in the prefix keeps its earlier committed record. Copies
leave only when the runner reports the commit (:meth:`committed`), so a
failed transaction gets the same answer again.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import structlog
from act.v1 import sampling_pb2
from google.protobuf.message import DecodeError

from services.core.batch import BatchSummary
from services.core.params import SamplingParams
from services.core.streaming import DecayedHistogram, StreamingSampler
from services.runtime.retry import RetryableError
from services.runtime.stage import Output
from services.sampler.ordering import OrderedExecutor

log = structlog.get_logger(__name__)

#: Topic id of the sampler's changelog.
CHANGELOG = "sampler_state"


class PartitionGone(RetryableError):
    """Work of a partition this process no longer owns (it is never committed)."""


def state_key(task_id: str, partition: int) -> str:
    """Changelog key of a task's streaming state on ``partition``."""
    return f"{task_id}:{partition}"


def batch_key(task_id: str, batch_id: str) -> str:
    """Changelog key of a decided batch's summary."""
    return f"batch:{task_id}:{batch_id}"


def member_key(task_id: str, batch_id: str, item_id: str) -> str:
    """Changelog key of a critique accepted into an undecided batch."""
    return f"batchm:{task_id}:{batch_id}:{item_id}"


@dataclass(slots=True, frozen=True)
class StateCopy:
    """A streaming state as it was after one decision (the sketch counts copied)."""

    counts: list[float]
    weight: float
    total: float
    sum_eps: float
    bins: int
    half_life: float
    seen: int
    selected: int
    window_index: int
    window_seen: int
    window_selected: int

    @classmethod
    def of(cls, s: StreamingSampler) -> StateCopy:
        """Copy ``s``: a list copy of the bins and a few numbers, no encoding."""
        sk = s.sketch
        return cls(
            sk.counts.copy(), sk.weight, sk.total, sk.sum_eps, sk.bins, sk.half_life,
            s.seen, s.selected, s.window_index, s.window_seen, s.window_selected,
        )  # fmt: skip

    def to_proto(self, task_id: str, partition: int, upto: int) -> sampling_pb2.SamplerState:
        """The changelog record: the state as of the committed prefix ending at ``upto``."""
        sketch = DecayedHistogram(self.bins, self.half_life)
        sketch.counts = self.counts
        sketch.weight, sketch.total, sketch.sum_eps = self.weight, self.total, self.sum_eps
        state = sampling_pb2.SamplerState(
            task_id=task_id,
            partition=partition,
            quantile_sketch=sketch.to_bytes(),
            seen=self.seen,
            selected=self.selected,
            window_seen=self.window_seen,
            window_selected=self.window_selected,
            window_id=f"{task_id}:{partition}:{self.window_index}",
            committed_offset=upto + 1,
        )
        state.updated_at.GetCurrentTime()
        return state


class SamplerPartition:
    """The sampler's state of one owned input partition (see module docstring)."""

    def __init__(
        self, partition: int, input_partitions: int = 0, restored: dict[str, bytes] | None = None
    ) -> None:
        self.partition = partition
        #: Partitions of the input topic (hard-cap shares); 0 = unknown: one share.
        self.input_partitions = input_partitions
        self.executor = OrderedExecutor()
        self.states: dict[str, StreamingSampler] = {}
        self.cfgs: dict[str, SamplingParams] = {}
        #: Committed streaming states not used yet, by task.
        self.restored: dict[str, sampling_pb2.SamplerState] = {}
        #: Batch summaries in this partition's changelog.
        self.summaries: dict[tuple[str, str], BatchSummary] = {}
        #: Critiques of undecided batches in this partition's changelog.
        self.members: list[sampling_pb2.BatchMember] = []
        #: Uncommitted decisions in offset order: (offset, task, state after it).
        self._pending: deque[tuple[int, str, StateCopy]] = deque()
        #: Their outputs, so that a retried record returns its decision, not a second one.
        self.decided: dict[int, list[Output]] = {}
        self.closed = False
        for key, value in (restored or {}).items():
            try:
                self._restore(key, value)
            except (DecodeError, ValueError) as exc:  # one bad record must not block the rest
                log.warning(
                    "changelog_record_skipped", partition=partition, key=key, error=str(exc)
                )

    def _restore(self, key: str, value: bytes) -> None:
        state = sampling_pb2.SamplerState.FromString(value)
        if key.startswith("batchm:"):
            self.members.append(state.batch_member)
        elif key.startswith("batch:"):
            _, task_id, batch_id = key.split(":", 2)
            self.summaries[(task_id, batch_id)] = BatchSummary.from_bytes(state.quantile_sketch)
        elif state.partition == self.partition and key == state_key(state.task_id, self.partition):
            self.restored[state.task_id] = state

    def check_open(self) -> None:
        """Raise unless the partition is still owned (work of a revoked one must not run)."""
        if self.closed:
            raise PartitionGone(f"partition {self.partition} was revoked")

    def record(self, offset: int, task_id: str, state: StreamingSampler, out: list[Output]) -> None:
        """Note a decision: the state after it and its outputs, until committed."""
        self._pending.append((offset, task_id, StateCopy.of(state)))
        self.decided[offset] = out

    def changelog(self, upto: int) -> list[Output]:
        """State records of the committed prefix ending at ``upto`` (see module docstring)."""
        latest: dict[str, StateCopy] = {}
        for offset, task_id, copy in self._pending:
            if offset > upto:
                break
            latest[task_id] = copy
        p = self.partition
        return [
            Output(
                topic=CHANGELOG,
                key=state_key(task_id, p),
                value=copy.to_proto(task_id, p, upto),
                partition=p,
            )
            for task_id, copy in latest.items()
        ]

    def committed(self, upto: int) -> None:
        """Forget the copies and outputs of committed decisions."""
        pending = self._pending
        while pending and pending[0][0] <= upto:
            self.decided.pop(pending.popleft()[0], None)

    def close(self) -> None:
        """The partition is revoked: its queued work fails, its state is dropped."""
        self.closed = True
        self.executor.reset()
        self.states.clear()
        self._pending.clear()
        self.decided.clear()
