"""Batch mode: a bounded batch is decided at once, with exact quantiles.

A critique of a bounded batch (``Item.batch``) is *accepted* at once: its
record's only output is a changelog entry (key
``batchm:<task>:<batch>:<item>``, a :class:`~act.v1.sampling_pb2.BatchMember`
holding the critique), committed with the record's offset. Nothing waits in
the runner, so a batch may be far larger than the runner's in-flight and
buffer limits; ``max_batch`` only bounds the memory a batch's members take.

When every member of a batch is committed (:meth:`BatchBook.committed`, from
the runner's ``on_committed``) the batch is decided
(:func:`~services.core.batch.summarize_batch`, members in item-id order, so
the summary does not depend on arrival order) and every partition holding
members is asked for a commit (``request_commit``). In that partition's next
transaction :meth:`BatchBook.flush` writes the decisions of its members, the
summary (key ``batch:<task>:<batch>``) and tombstones of the member entries:
a member's decision and the removal of its entry commit together, so each
is decided exactly once. Only committed members count, so a decision never
includes a critique whose record could still go to another owner.

On assignment the partition's changelog comes back: member entries as
committed members, summaries as decided batches. A member of a decided batch
(its summary in any partition this process owns) is flushed again; a batch
whose members are all back is decided again, the same way (same members,
same seed). A record of a batch already decided (a re-ingested item) is
decided at once from the summary.

A batch still incomplete ``batch_timeout_s`` after its first member reached
this process fails: each partition writes one dead letter per member (the
original critique and its coordinates) with the entries' tombstones, and
later records of that batch are dead-lettered at once.

All items of a batch must reach one sampler process (one replica, or a batch
produced to partitions one replica owns).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import structlog
from act.v1 import common_pb2, critique_pb2, sampling_pb2, task_pb2
from google.protobuf.timestamp_pb2 import Timestamp
from prometheus_client import Counter

from services.core.batch import BatchSummary, decide_in_batch, summarize_batch
from services.core.params import SamplingParams
from services.core.sampling import bernoulli_draw
from services.runtime.dlq import build_dead_letter
from services.runtime.retry import PermanentError
from services.runtime.stage import Envelope, Identity, Output
from services.sampler.decisions import (
    Decided,
    decision_counter,
    decision_outputs,
    timestamp_now,
    validate,
)
from services.sampler.partition import CHANGELOG, SamplerPartition, batch_key, member_key
from services.sampler.settings import SamplerSettings

log = structlog.get_logger(__name__)

TRIMMED = Counter("act_sampler_trimmed_total", "Batch draws dropped to keep sum(delta) <= B.")
BATCHES = Counter("act_sampler_batches_total", "Batches decided or failed.", ["outcome"])

BatchKey = tuple[str, str]
#: Resolves a task id to (task or None, its sampling parameters).
TaskResolver = Callable[[str], Awaitable[tuple[task_pb2.Task | None, SamplingParams]]]


@dataclass(slots=True)
class _Member:
    critique: critique_pb2.Critique
    item_id: str
    eps: float
    topic: str
    partition: int
    offset: int
    committed: bool


@dataclass(eq=False)
class _Batch:
    task_id: str
    batch_id: str
    size: int
    cfg: SamplingParams
    task: task_pb2.Task | None
    deadline: float
    members: dict[str, _Member] = field(default_factory=dict)
    summary: BatchSummary | None = None
    failure: str | None = None

    @property
    def settled(self) -> bool:
        return self.summary is not None or self.failure is not None


class BatchBook:
    """The batches of this process (see the module docstring).

    ``request_commit(p)`` asks the runner for a transaction of partition ``p``
    (its ``PartitionContext.request_commit``).
    """

    def __init__(
        self,
        settings: SamplerSettings,
        parts: Mapping[int, SamplerPartition],
        request_commit: Callable[[int], None],
    ) -> None:
        self.settings = settings
        self._parts = parts
        self._request_commit = request_commit
        self._batches: dict[BatchKey, _Batch] = {}
        #: Summaries decided in this process (bounded), besides those restored.
        self._decided: OrderedDict[BatchKey, BatchSummary] = OrderedDict()
        #: Batches that failed (bounded): their late records are dead-lettered at once.
        self._failed: OrderedDict[BatchKey, str] = OrderedDict()
        #: Per partition, the members its last :meth:`flush` wrote.
        self._flushing: dict[int, list[tuple[BatchKey, str]]] = {}

    # -------------------------------------------------------------- records

    def accept(
        self,
        envelope: Envelope[critique_pb2.Critique],
        task: task_pb2.Task | None,
        cfg: SamplingParams,
        task_id: str,
        item_id: str,
        eps: float,
    ) -> list[Output]:
        """A batch record's outputs: its member entry, or its decision when the
        batch is decided already. Raises PermanentError for a bad batch."""
        critique = envelope.message
        meta = critique.annotation.item.batch
        if not meta.batch_id or meta.batch_size <= 0:
            raise PermanentError("batch mode needs Item.batch (batch_id and batch_size > 0)")
        if meta.batch_size > self.settings.max_batch:
            raise PermanentError(
                f"batch {meta.batch_id} has {meta.batch_size} items, more than max_batch="
                f"{self.settings.max_batch}; raise ACT_SAMPLER_MAX_BATCH or sample this task "
                "in streaming mode"
            )
        key = (task_id, meta.batch_id)
        failure = self._failed.get(key)
        if failure is not None:
            raise PermanentError(failure)
        batch = self._batches.get(key)
        summary = batch.summary if batch is not None else self._summary(key)
        if summary is not None:  # decided already: this record at once, from the summary
            p = envelope.partition
            return [*_decision(critique, task, task_id, item_id, eps, summary), _summary_write(
                task_id, meta.batch_id, summary, p
            )]  # fmt: skip
        if batch is None:
            batch = self._batches[key] = _Batch(
                task_id=task_id, batch_id=meta.batch_id, size=int(meta.batch_size), cfg=cfg,
                task=task, deadline=time.monotonic() + self.settings.batch_timeout_s,
            )  # fmt: skip
        elif batch.size != meta.batch_size:
            raise PermanentError(
                f"batch {meta.batch_id}: batch_size {meta.batch_size} differs from "
                f"{batch.size} of earlier items"
            )
        if item_id in batch.members:
            # The same item again (ingested twice): it has its entry, and gets one decision.
            log.info("batch_item_repeated", task_id=task_id, batch_id=meta.batch_id)
            return []
        member = _Member(
            critique, item_id, eps, envelope.topic, envelope.partition, envelope.offset, False
        )
        batch.members[item_id] = member
        return [_member_write(task_id, meta.batch_id, member)]

    # ------------------------------------------------------- runner's side

    def committed(self, partition: int, upto: int) -> None:
        """Records of ``partition`` up to ``upto`` are committed, with the last flush."""
        for key, item_id in self._flushing.pop(partition, []):
            batch = self._batches.get(key)
            if batch is None or batch.members.pop(item_id, None) is None:
                continue
            if batch.failure is not None:
                BATCHES.labels(outcome="member_dead_lettered").inc()
            if not batch.members:
                del self._batches[key]
        for batch in list(self._batches.values()):
            newly = False
            for m in batch.members.values():
                if m.partition == partition and not m.committed and m.offset <= upto:
                    m.committed = newly = True
            if not newly:
                continue
            if batch.settled:  # a failed batch's late member: write its dead letter
                self._request_commit(partition)
            else:
                self._maybe_decide(batch)

    def flush(self, partition: int) -> list[Output]:
        """What ``partition`` owes for settled batches: decisions (or dead letters),
        summaries and tombstones of its committed members."""
        outputs: list[Output] = []
        written: list[tuple[BatchKey, str]] = []
        now = timestamp_now()
        for key, batch in self._batches.items():
            if not batch.settled:
                continue
            mine = [m for m in batch.members.values() if m.partition == partition and m.committed]
            if not mine:
                continue
            for m in mine:
                if batch.summary is not None:
                    outputs += _decision(
                        m.critique, batch.task, batch.task_id, m.item_id, m.eps, batch.summary, now
                    )
                else:
                    outputs.append(self._dead_letter(batch, m))
                outputs.append(_tombstone(member_key(batch.task_id, batch.batch_id, m.item_id), m))
                written.append((key, m.item_id))
            if batch.summary is not None:
                outputs.append(
                    _summary_write(batch.task_id, batch.batch_id, batch.summary, partition)
                )
        self._flushing[partition] = written
        return outputs

    async def restore(self, part: SamplerPartition, resolve: TaskResolver) -> None:
        """A partition was assigned: its member entries and summaries come back."""
        p = part.partition
        touched: set[BatchKey] = set(part.summaries)
        for entry in part.members:
            critique = entry.critique
            try:
                task_id, item_id, eps = validate(critique)
            except PermanentError as exc:  # accepted once, so never; one bad entry must not block
                log.warning("batch_member_skipped", partition=p, error=str(exc))
                continue
            task, cfg = await resolve(task_id)
            meta = critique.annotation.item.batch
            key = (task_id, meta.batch_id)
            touched.add(key)
            batch = self._batches.get(key)
            if batch is None:
                batch = self._batches[key] = _Batch(
                    task_id=task_id, batch_id=meta.batch_id, size=int(meta.batch_size),
                    cfg=cfg, task=task,
                    deadline=time.monotonic() + self.settings.batch_timeout_s,
                )  # fmt: skip
            batch.members[item_id] = _Member(
                critique, item_id, eps, entry.topic, p, entry.offset, True
            )
        for key in touched:
            batch = self._batches.get(key)
            if batch is None:
                continue
            if batch.summary is None and batch.failure is None:
                batch.summary = part.summaries.get(key) or self._summary(key)
            if batch.settled:
                # Members here, and elsewhere in this process, may wait for this summary.
                for q in {m.partition for m in batch.members.values() if m.committed}:
                    self._request_commit(q)
            else:
                self._maybe_decide(batch)

    def revoked(self, partition: int) -> None:
        """``partition`` is gone: forget its members (its changelog keeps them)."""
        self._flushing.pop(partition, None)
        for key, batch in list(self._batches.items()):
            for item_id in [i for i, m in batch.members.items() if m.partition == partition]:
                del batch.members[item_id]
            if not batch.members:
                del self._batches[key]

    def expire(self, now: float) -> None:
        """Fail batches past their deadline (their members are dead-lettered)."""
        for batch in self._batches.values():
            if batch.settled or now < batch.deadline:
                continue
            batch.failure = (
                f"batch {batch.batch_id} of task {batch.task_id} incomplete after "
                f"{self.settings.batch_timeout_s:.0f}s: {len(batch.members)} of {batch.size} "
                "critiques arrived. Batch mode needs every item of a batch in one sampler "
                "process (one replica, or partitions one replica owns)."
            )
            BATCHES.labels(outcome="failed").inc()
            key = (batch.task_id, batch.batch_id)
            self._failed[key] = batch.failure
            while len(self._failed) > 4096:
                self._failed.popitem(last=False)
            log.warning(
                "batch_failed", task_id=batch.task_id, batch_id=batch.batch_id,
                members=len(batch.members), size=batch.size,
            )  # fmt: skip
            for p in {m.partition for m in batch.members.values() if m.committed}:
                self._request_commit(p)

    @property
    def open_batches(self) -> int:
        """Batches waiting for members."""
        return sum(not b.settled for b in self._batches.values())

    # -------------------------------------------------------------- helpers

    def _summary(self, key: BatchKey) -> BatchSummary | None:
        summary = self._decided.get(key)
        if summary is not None:
            return summary
        for part in self._parts.values():
            summary = part.summaries.get(key)
            if summary is not None:
                return summary
        return None

    def _maybe_decide(self, batch: _Batch) -> None:
        if batch.settled or len(batch.members) < batch.size:
            return
        if not all(m.committed for m in batch.members.values()):
            return
        cfg = batch.cfg
        ids = sorted(batch.members)
        summary = summarize_batch(
            [batch.members[i].eps for i in ids], ids, cfg.rule, cfg.budget_fraction, cfg.beta,
            cfg.pi_min, cfg.seed, batch.task_id, alpha_method=cfg.alpha_method,
            alpha=cfg.alpha, tau=cfg.tau,
        )  # fmt: skip
        batch.summary = summary
        key = (batch.task_id, batch.batch_id)
        self._decided[key] = summary
        self._decided.move_to_end(key)
        while len(self._decided) > 4096:
            self._decided.popitem(last=False)
        if summary.trimmed:
            TRIMMED.inc(summary.trimmed)
        BATCHES.labels(outcome="decided").inc()
        log.info(
            "batch_decided", task_id=batch.task_id, batch_id=batch.batch_id, n=summary.n,
            budget=summary.budget, selected=summary.selected, trimmed=summary.trimmed,
        )  # fmt: skip
        for p in {m.partition for m in batch.members.values()}:
            self._request_commit(p)

    def _dead_letter(self, batch: _Batch, m: _Member) -> Output:
        assert batch.failure is not None
        letter = build_dead_letter(
            stage="sampler", error=PermanentError(batch.failure), attempts=1, topic=m.topic,
            partition=m.partition, offset=m.offset, key=m.item_id.encode(),
            value=m.critique.SerializeToString(), headers={},
            identity=Identity(task_id=batch.task_id, item_id=m.item_id),
        )  # fmt: skip
        return Output(topic="dlq", key=m.item_id, value=letter)


def _decision(
    critique: critique_pb2.Critique,
    task: task_pb2.Task | None,
    task_id: str,
    item_id: str,
    eps: float,
    summary: BatchSummary,
    now: Timestamp | None = None,
) -> list[Output]:
    """One item's decision from its batch's summary (its own parameters, not the
    current config: a batch decided earlier keeps its rule, budget and seed)."""
    batch_id = critique.annotation.item.batch.batch_id
    d = decide_in_batch(summary, eps, bernoulli_draw(summary.seed, task_id, item_id), item_id)
    decision_counter("batch", summary.rule.value, d.delta).inc()
    decided = Decided(
        delta=d.delta, pi=d.pi, eps=eps, draw=d.draw, rule=summary.rule,
        mode=common_pb2.SAMPLING_MODE_BATCH, budget_fraction=summary.budget_fraction,
        pi_min=summary.pi_min, seed=summary.seed, window_id=batch_id,
        alpha=summary.alpha, beta=summary.beta, tau=summary.tau,
    )  # fmt: skip
    headers = {"act-sampler-trimmed": "true"} if d.trimmed else {}
    return decision_outputs(critique, task, decided, headers, now or timestamp_now())


def _summary_write(task_id: str, batch_id: str, summary: BatchSummary, partition: int) -> Output:
    """A batch summary as a changelog record of ``partition`` (its state's partition
    field is -1: it is no partition's streaming state).

    ``quantile_sketch`` carries the exact batch summary (magic ``ACTB``), the
    exact counterpart of the streaming sketch.
    """
    state = sampling_pb2.SamplerState(
        task_id=task_id,
        partition=-1,
        quantile_sketch=summary.to_bytes(),
        seen=summary.n,
        selected=summary.selected,
        window_id=batch_id,
    )
    state.batch_counts[batch_id] = summary.n
    state.updated_at.CopyFrom(timestamp_now())
    key = batch_key(task_id, batch_id)
    return Output(topic=CHANGELOG, key=key, value=state, partition=partition)


def _member_write(task_id: str, batch_id: str, m: _Member) -> Output:
    state = sampling_pb2.SamplerState(task_id=task_id, partition=-1)
    entry = state.batch_member
    entry.critique.CopyFrom(m.critique)
    entry.topic, entry.partition, entry.offset = m.topic, m.partition, m.offset
    entry.accepted_at.CopyFrom(timestamp_now())
    key = member_key(task_id, batch_id, m.item_id)
    return Output(topic=CHANGELOG, key=key, value=state, partition=m.partition)


def _tombstone(key: str, m: _Member) -> Output:
    """An empty value: compaction removes the key, and a restore skips it."""
    return Output(
        topic=CHANGELOG, key=key, value=sampling_pb2.SamplerState(), partition=m.partition
    )
