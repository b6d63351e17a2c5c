"""What a pipeline stage implements: a pure-ish transform from one message to outputs.

A stage knows nothing about offsets, transactions or retries; the
:class:`~services.runtime.runner.StageRunner` supplies those. Keep I/O that the
transform needs (model calls, database writes) inside ``process`` and make it
idempotent: a record can be processed again after a crash, but only one
processing's outputs are ever committed.

A stage that keeps state across records gets the partition hooks
(:meth:`Stage.on_assigned`, :meth:`Stage.on_revoked`) and, by naming a
``changelog_topic``, one changelog-backed key -> bytes state per input
partition that the runtime commits with the outputs and restores on
assignment (see :class:`Stage`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Generic, TypeVar

from google.protobuf.message import Message

M = TypeVar("M", bound=Message)


def _no_commit() -> None:
    """The default :attr:`PartitionContext.request_commit`: nothing to ask."""


@dataclass(frozen=True, slots=True)
class Output:
    """One record to produce, in the same transaction as the input's offset.

    ``topic`` is a topic *id* of the topic specification (``"annotations"``),
    never a raw broker name, so prefixes and versions stay in one place.
    """

    topic: str
    key: str
    value: Message
    headers: Mapping[str, str] = field(default_factory=dict)
    #: Output partition; None = the default partitioner's (murmur2 of the key).
    #: Changelog writes name the input partition they belong to.
    partition: int | None = None


@dataclass(frozen=True, slots=True)
class Envelope(Generic[M]):
    """A decoded input record and where it came from."""

    message: M
    topic: str
    partition: int
    offset: int
    key: bytes | None
    headers: Mapping[str, bytes]
    timestamp_ms: int
    attempt: int = 1


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a message is about, for logs and dead letters (never its content)."""

    task_id: str = ""
    item_id: str = ""


@dataclass(frozen=True, slots=True)
class PartitionContext:
    """What the runtime hands :meth:`Stage.on_assigned` besides the offset."""

    #: The partition's changelog restored (key -> latest committed value);
    #: empty for a stage without ``changelog_topic``.
    state: Mapping[str, bytes] = field(default_factory=dict)
    #: Partitions of the input topic (0 when unknown, e.g. in unit tests).
    input_partitions: int = 0
    #: Ask the runner for a transaction of this partition soon, even when no
    #: record of it finished, so that :meth:`Stage.changelog` can write what
    #: the stage owes outside any record (e.g. the decisions of a batch that
    #: another partition's commit completed). A no-op without a runner.
    request_commit: Callable[[], None] = _no_commit


class Stage(ABC, Generic[M]):
    """A consume-transform-produce step of the pipeline.

    Partition hooks, with what the runner guarantees:

    * :meth:`on_assigned` runs when this process takes an input partition,
      after the previous owner is fenced (the partition's transactional
      producer is initialised, so nobody else can commit for it any more and
      whatever it committed is visible), after the group's committed offset
      was read and the consumer sought to it, after the changelog partition
      was restored, and *before* any record of the partition is dispatched.
    * :meth:`on_revoked` runs after the partition's work was released: on a
      rebalance the finished prefix is committed and the rest cancelled; when
      the partition is lost (``ProducerFenced``) nothing more is committed;
      at shutdown like a rebalance. No record of the partition is dispatched
      after it, until the next :meth:`on_assigned`.

    Changelog state: a stage that sets ``changelog_topic`` (a compacted topic
    with at least as many partitions as the input) owns, per input partition
    ``p``, a key -> bytes map kept in partition ``p`` of that topic. Whenever
    the runner commits a prefix of ``p`` ending at offset ``k`` it asks
    :meth:`changelog` for the writes that bring the map to the state after
    record ``k`` and produces them (to partition ``p``) in the same
    transaction as the outputs and the offset ``k + 1``; after the commit it
    calls :meth:`on_committed`. A failed transaction asks again. On
    assignment the runtime reads partition ``p`` of the changelog
    ``read_committed`` from the beginning to its end (after the fencing, so
    no transaction of a previous owner is pending) and passes the map in
    :class:`PartitionContext`. Outputs of :meth:`process` may also write the
    changelog, with ``partition`` set to the record's partition. A stage
    without ``changelog_topic`` pays nothing for any of this.
    """

    #: Short stage name: consumer group ``act-<name>``, metrics label, DLQ field.
    name: ClassVar[str]
    #: Topic id (in the topic specification) this stage consumes.
    input_topic: ClassVar[str]
    #: Protobuf type of the input records.
    input_type: type[M]
    #: Topic id of this stage's changelog (compacted, co-partitioned with the
    #: input); None: no changelog state.
    changelog_topic: ClassVar[str | None] = None

    async def start(self) -> None:
        """Open clients the stage needs (called once before consuming)."""

    async def stop(self) -> None:
        """Close what :meth:`start` opened."""

    async def on_assigned(
        self, partition: int, committed_offset: int | None, context: PartitionContext
    ) -> None:
        """This process now owns ``partition``; the next record dispatched is at
        ``committed_offset`` (None: the group has no offset, from the beginning)."""

    async def on_revoked(self, partition: int) -> None:
        """This process no longer owns ``partition`` (revoked, lost or stopping)."""

    def changelog(self, partition: int, upto_offset: int) -> Sequence[Output]:
        """Writes for a commit of ``partition`` up to ``upto_offset`` (inclusive).

        Writes to :attr:`changelog_topic` go to the changelog's partition
        ``partition``; writes to other topics are routed by key like any
        output, in the same transaction (outputs the stage owes beyond the
        committed records, see :attr:`PartitionContext.request_commit`). A
        failed transaction asks again, so the answer must not change until
        :meth:`on_committed`. A commit asked for with no new record passes the
        last committed offset (-1 when none)."""
        return ()

    def on_committed(self, partition: int, upto_offset: int) -> None:
        """The records of ``partition`` up to ``upto_offset`` and their
        :meth:`changelog` writes are committed."""

    def identify(self, message: M) -> Identity:
        """Task and item ids of a message; default reads ``task_id``/``item_id`` fields."""
        return Identity(
            task_id=str(getattr(message, "task_id", "") or ""),
            item_id=str(getattr(message, "item_id", "") or ""),
        )

    @abstractmethod
    async def process(self, envelope: Envelope[M]) -> Sequence[Output]:
        """Transform one message into the records to produce.

        Raise :class:`~services.runtime.retry.PermanentError` for input that can
        never succeed (it goes to the dead-letter topic at once) and any other
        exception for transient failures (retried with backoff, then
        dead-lettered).
        """


Hook = Callable[[], Awaitable[None]]


class HookedStage(Stage[M]):
    """A stage whose :meth:`start`/:meth:`stop` run hooks given at construction.

    Services build their clients once (a task registry, model clients) and hand
    the stage the coroutines that open and close them, in order.
    """

    def __init__(self, *, on_start: Sequence[Hook] = (), on_stop: Sequence[Hook] = ()) -> None:
        self._on_start = list(on_start)
        self._on_stop = list(on_stop)

    async def start(self) -> None:
        """Run the start hooks in order."""
        for hook in self._on_start:
            await hook()

    async def stop(self) -> None:
        """Run the stop hooks in order."""
        for hook in self._on_stop:
            await hook()
