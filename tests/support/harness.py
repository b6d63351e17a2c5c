"""An in-memory harness for a stage's ``process``: envelopes in, outputs out.

A stage's logic is tested without a broker by feeding it envelopes the way
the runtime would (topic, partition, offsets in order, the record key = the
item id) and collecting what it returns. Tests build envelopes here rather
than by hand, so a field added to :class:`Envelope` changes one place.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Generic

from services.runtime.stage import Envelope, M, Output, Stage


class StageHarness(Generic[M]):
    """Feeds one stage's ``process`` with envelopes of its input topic.

    Offsets count up per partition unless given; the key defaults to the
    item id the stage reads from the message (``Stage.identify``).
    """

    def __init__(self, stage: Stage[M], *, topic: str | None = None) -> None:
        self.stage = stage
        self.topic = topic or stage.input_topic
        self._offsets: dict[int, itertools.count[int]] = {}
        #: Every output returned so far, in order.
        self.outputs: list[Output] = []

    def envelope(
        self,
        message: M,
        *,
        partition: int = 0,
        offset: int | None = None,
        key: bytes | None = None,
        headers: Mapping[str, bytes] | None = None,
        attempt: int = 1,
    ) -> Envelope[M]:
        """The envelope the runtime would hand the stage for ``message``."""
        counter = self._offsets.setdefault(partition, itertools.count())
        if offset is None:
            offset = next(counter)
        else:
            self._offsets[partition] = itertools.count(offset + 1)
        if key is None:
            item_id = self.stage.identify(message).item_id
            key = item_id.encode() if item_id else None
        return Envelope(
            message=message,
            topic=self.topic,
            partition=partition,
            offset=offset,
            key=key,
            headers=dict(headers or {}),
            timestamp_ms=0,
            attempt=attempt,
        )

    async def process(self, message: M, **envelope: Any) -> Sequence[Output]:
        """Run ``process`` on one message; returns (and keeps) its outputs."""
        out = await self.stage.process(self.envelope(message, **envelope))
        self.outputs.extend(out)
        return out

    async def process_all(self, messages: Iterable[M], **envelope: Any) -> list[Output]:
        """Run ``process`` on each message in order; returns all outputs."""
        out: list[Output] = []
        for message in messages:
            out.extend(await self.process(message, **envelope))
        return out
