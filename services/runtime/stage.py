"""What a pipeline stage implements: a pure-ish transform from one message to outputs.

A stage knows nothing about offsets, transactions or retries; the
:class:`~services.runtime.runner.StageRunner` supplies those. Keep I/O that the
transform needs (model calls, database writes) inside ``process`` and make it
idempotent: a record can be processed again after a crash, but only one
processing's outputs are ever committed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Generic, TypeVar

from google.protobuf.message import Message

M = TypeVar("M", bound=Message)


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


class Stage(ABC, Generic[M]):
    """A consume-transform-produce step of the pipeline."""

    #: Short stage name: consumer group ``act-<name>``, metrics label, DLQ field.
    name: ClassVar[str]
    #: Topic id (in the topic specification) this stage consumes.
    input_topic: ClassVar[str]
    #: Protobuf type of the input records.
    input_type: type[M]

    async def start(self) -> None:
        """Open clients the stage needs (called once before consuming)."""

    async def stop(self) -> None:
        """Close what :meth:`start` opened."""

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
