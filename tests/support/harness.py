"""An in-memory harness for a stage's ``process``: envelopes in, outputs out.

A stage's logic is tested without a broker by feeding it envelopes the way
the runtime would (topic, partition, offsets in order, the record key = the
item id) and collecting what it returns. Tests build envelopes here rather
than by hand, so a field added to :class:`Envelope` changes one place.

A stage with partition hooks and changelog state also needs the runner's
side of them: :class:`MemoryRuntime` keeps what committed transactions leave
behind per input partition (the committed offset and the changelog map) and
outlives the stages that use it, so a test can kill a stage and hand its
partitions to a new one.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Generic

from services.runtime.stage import Envelope, M, Output, PartitionContext, Stage


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


class MemoryRuntime:
    """What the runner does with a stage's partition hooks and changelog, in memory.

    Per input partition it keeps the committed offset and the changelog map.
    :meth:`assign` hands a stage that map the way the runner does after
    fencing; :meth:`commit` is one successful transaction of a prefix (the
    prefix's own changelog outputs, then ``stage.changelog(p, k)``, then
    ``on_committed``); :meth:`revoke` is a rebalance. Uncommitted work simply
    never reaches :meth:`commit`. A stage's ``request_commit`` is noted and
    :meth:`flush` runs the transactions asked for; what the ``changelog`` hook
    writes to other topics is collected in :attr:`emitted`.
    """

    def __init__(self, input_partitions: int = 4) -> None:
        self.input_partitions = input_partitions
        self.changelogs: dict[int, dict[str, bytes]] = {}
        self.committed: dict[int, int] = {}
        self.transactions = 0
        #: Partitions whose stage asked for a transaction (``request_commit``).
        self.requested: set[int] = set()
        #: Outputs the ``changelog`` hook wrote to topics other than the changelog.
        self.emitted: list[Output] = []

    async def assign(self, stage: Stage[Any], *partitions: int) -> None:
        """``on_assigned`` with each partition's committed offset and changelog."""
        for p in partitions:
            context = PartitionContext(
                state=dict(self.changelogs.get(p, {})),
                input_partitions=self.input_partitions,
                request_commit=functools.partial(self.requested.add, p),
            )
            await stage.on_assigned(p, self.committed.get(p), context)

    async def revoke(self, stage: Stage[Any], *partitions: int) -> None:
        """``on_revoked``: the stage loses the partitions (their uncommitted work with them)."""
        for p in partitions:
            await stage.on_revoked(p)

    def commit(
        self, stage: Stage[Any], partition: int, upto: int, outputs: Iterable[Output] = ()
    ) -> None:
        """One transaction of ``partition``'s prefix ending at ``upto`` with ``outputs``."""
        topic = stage.changelog_topic
        assert topic is not None, f"stage {stage.name} has no changelog"
        writes = [o for o in outputs if o.topic == topic]
        hook = list(stage.changelog(partition, upto))
        writes += [w for w in hook if w.topic == topic]
        log = self.changelogs.setdefault(partition, {})
        for w in writes:
            assert w.topic == topic and w.partition == partition, w
            value = w.value.SerializeToString()
            if value:
                log[w.key] = value
            else:  # a tombstone
                log.pop(w.key, None)
        self.emitted += [w for w in hook if w.topic != topic]
        self.committed[partition] = upto + 1
        self.transactions += 1
        stage.on_committed(partition, upto)

    def flush(self, stage: Stage[Any]) -> list[Output]:
        """Run the transactions the stage asked for (no new records, as the runner
        does); returns what they wrote to topics other than the changelog."""
        before = len(self.emitted)
        while self.requested:
            p = min(self.requested)
            self.requested.discard(p)
            self.commit(stage, p, self.committed.get(p, 0) - 1)
        return self.emitted[before:]

    async def feed(
        self,
        stage: Stage[M],
        messages: Iterable[tuple[int, M]],
        *,
        partition: int = 0,
        commit_every: int | None = 1,
    ) -> list[Sequence[Output]]:
        """Process ``(offset, message)`` in order; commit every ``commit_every``
        records (and the rest at the end); None: commit nothing."""
        harness = StageHarness(stage)
        outs: list[Sequence[Output]] = []
        batch: list[Output] = []
        last = -1
        for i, (offset, message) in enumerate(messages, 1):
            out = await harness.process(message, partition=partition, offset=offset)
            outs.append(out)
            batch.extend(out)
            last = offset
            if commit_every is not None and i % commit_every == 0:
                self.commit(stage, partition, last, batch)
                batch = []
        if commit_every is not None and batch:
            self.commit(stage, partition, last, batch)
        return outs
