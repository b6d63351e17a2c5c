"""What the runner does with a stage's partition hooks and changelog, in memory.

Per input partition it keeps what committed transactions leave behind: the
committed offset and the changelog map. ``assign`` hands a stage that map
the way the runner does after fencing; ``commit`` is one successful
transaction of a prefix (the prefix's changelog outputs, then
``stage.changelog(p, k)``, then ``on_committed``); ``revoke`` is a
rebalance. Uncommitted work simply never reaches ``commit``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from act.v1 import critique_pb2

from services.runtime.stage import Envelope, Output, PartitionContext, Stage

CHANGELOG = "sampler_state"


def envelope(
    c: critique_pb2.Critique, partition: int = 0, offset: int = 0, attempt: int = 1
) -> Envelope[critique_pb2.Critique]:
    return Envelope(
        message=c, topic="critiques", partition=partition, offset=offset, key=None,
        headers={}, timestamp_ms=0, attempt=attempt,
    )  # fmt: skip


class MemoryRuntime:
    """Committed offsets and changelogs of the input partitions (a fake broker + runner)."""

    def __init__(self, input_partitions: int = 4) -> None:
        self.input_partitions = input_partitions
        self.changelogs: dict[int, dict[str, bytes]] = {}
        self.committed: dict[int, int] = {}
        self.transactions = 0

    async def assign(self, stage: Stage[critique_pb2.Critique], *partitions: int) -> None:
        for p in partitions:
            context = PartitionContext(
                state=dict(self.changelogs.get(p, {})), input_partitions=self.input_partitions
            )
            await stage.on_assigned(p, self.committed.get(p), context)

    async def revoke(self, stage: Stage[critique_pb2.Critique], *partitions: int) -> None:
        for p in partitions:
            await stage.on_revoked(p)

    def commit(
        self,
        stage: Stage[critique_pb2.Critique],
        partition: int,
        upto: int,
        outputs: Iterable[Output] = (),
    ) -> None:
        """One transaction of ``partition``'s prefix ending at ``upto`` with ``outputs``."""
        writes = [o for o in outputs if o.topic == CHANGELOG]
        writes += stage.changelog(partition, upto)
        log = self.changelogs.setdefault(partition, {})
        for w in writes:
            assert w.topic == CHANGELOG and w.partition == partition, w
            log[w.key] = w.value.SerializeToString()
        self.committed[partition] = upto + 1
        self.transactions += 1
        stage.on_committed(partition, upto)

    async def feed(
        self,
        stage: Stage[critique_pb2.Critique],
        messages: Iterable[tuple[int, critique_pb2.Critique]],
        *,
        partition: int = 0,
        commit_every: int | None = 1,
    ) -> list[Sequence[Output]]:
        """Process (offset, critique) in order; commit every ``commit_every`` records
        (and the rest at the end); None: commit nothing."""
        outs: list[Sequence[Output]] = []
        batch: list[Output] = []
        last = -1
        for i, (offset, c) in enumerate(messages, 1):
            out = await stage.process(envelope(c, partition=partition, offset=offset))
            outs.append(out)
            batch.extend(out)
            last = offset
            if commit_every is not None and i % commit_every == 0:
                self.commit(stage, partition, last, batch)
                batch = []
        if commit_every is not None and batch:
            self.commit(stage, partition, last, batch)
        return outs
