"""Batch mode: a bounded batch is decided at once, with exact quantiles.

A record of a bounded batch (``Item.batch``) waits until all ``batch_size``
critiques of the batch have arrived in this process, so its offset stays
uncommitted until the batch is decided (:func:`~services.core.batch.summarize_batch`):
quantiles are exact and sum(delta) <= B holds exactly. The decided
:class:`~services.core.batch.BatchSummary` is written to the changelog of
the record's input partition with every decision of the batch (key
``"batch:<task>:<batch id>"``), so once any decision of the batch is
committed the summary is too. The runtime restores a partition's changelog
on assignment; re-delivered items of a partly committed batch are then
decided from the summary, without the rest.

The summary of a batch may sit in another partition's changelog (the items
of that partition committed, those of this one did not). The lookup then
goes over the partitions this process owns, in memory; a summary restored
after a batch was reopened decides the open batch at once. All items of a
batch must reach one sampler process (one replica, or partitions one
replica owns), which also makes their partitions' changelogs local.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field

import structlog
from act.v1 import common_pb2, critique_pb2, sampling_pb2, task_pb2
from google.protobuf.timestamp_pb2 import Timestamp
from prometheus_client import Counter

from services.core.batch import BatchSummary, decide_in_batch, summarize_batch
from services.core.params import SamplingParams
from services.core.sampling import bernoulli_draw
from services.runtime.retry import PermanentError
from services.runtime.stage import Output
from services.sampler.decisions import (
    Decided,
    decision_counter,
    decision_outputs,
    timestamp_now,
)
from services.sampler.partition import CHANGELOG, SamplerPartition, batch_key
from services.sampler.settings import SamplerSettings

log = structlog.get_logger(__name__)

TRIMMED = Counter("act_sampler_trimmed_total", "Batch draws dropped to keep sum(delta) <= B.")


@dataclass(slots=True)
class BatchEntry:
    """A batch record after its ordered part: decided already, or a waiter."""

    critique: critique_pb2.Critique
    task: task_pb2.Task | None
    task_id: str
    item_id: str
    eps: float
    summary: BatchSummary | None
    waiter: asyncio.Future[BatchSummary] | None
    deadline: float


@dataclass(eq=False)
class _OpenBatch:
    task_id: str
    batch_id: str
    size: int
    cfg: SamplingParams
    deadline: float
    eps: dict[str, float] = field(default_factory=dict)
    waiters: list[asyncio.Future[BatchSummary]] = field(default_factory=list)


def _summary_state(
    task_id: str, batch_id: str, summary: BatchSummary, now: Timestamp
) -> sampling_pb2.SamplerState:
    """A batch summary as a changelog record (partition -1: it is no partition's state).

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
    state.updated_at.CopyFrom(now)
    return state


class BatchBook:
    """Open and decided batches of this process (see module docstring)."""

    def __init__(self, settings: SamplerSettings, parts: Mapping[int, SamplerPartition]) -> None:
        self.settings = settings
        self._parts = parts
        self._open: dict[tuple[str, str], _OpenBatch] = {}
        self._decided: OrderedDict[tuple[str, str], BatchSummary] = OrderedDict()

    def cancel_all(self) -> None:
        """Fail waiting batch records (their offsets stay uncommitted)."""
        for batch in self._open.values():
            for fut in batch.waiters:
                if not fut.done():
                    fut.cancel()
        self._open.clear()

    def restored(self, part: SamplerPartition) -> None:
        """A partition's summaries were restored: they decide batches open here."""
        for key, summary in part.summaries.items():
            batch = self._open.pop(key, None)
            if batch is not None:
                log.info("batch_summary_restored", task_id=key[0], batch_id=key[1])
                for waiter in batch.waiters:
                    if not waiter.done():
                        waiter.set_result(summary)

    def _summary(self, key: tuple[str, str]) -> BatchSummary | None:
        summary = self._decided.get(key)
        if summary is not None:
            return summary
        for part in self._parts.values():
            summary = part.summaries.get(key)
            if summary is not None:
                return summary
        return None

    def enter(
        self,
        critique: critique_pb2.Critique,
        cfg: SamplingParams,
        task_id: str,
        item_id: str,
        eps: float,
    ) -> tuple[BatchSummary | None, asyncio.Future[BatchSummary] | None, float]:
        """Register a batch record: (summary if decided, else a waiter, deadline)."""
        batch = critique.annotation.item.batch
        if not batch.batch_id or batch.batch_size <= 0:
            raise PermanentError("batch mode needs Item.batch (batch_id and batch_size > 0)")
        if batch.batch_size > self.settings.max_batch:
            raise PermanentError(
                f"batch {batch.batch_id} has {batch.batch_size} items, more than max_batch="
                f"{self.settings.max_batch}; raise ACT_SAMPLER_MAX_BATCH (and MAX_IN_FLIGHT, "
                "MAX_BUFFERED) or sample this task in streaming mode"
            )
        key = (task_id, batch.batch_id)
        summary = None if key in self._open else self._summary(key)
        if summary is not None:
            return summary, None, 0.0
        open_batch = self._open.get(key)
        if open_batch is None:
            open_batch = _OpenBatch(
                task_id=task_id,
                batch_id=batch.batch_id,
                size=int(batch.batch_size),
                cfg=cfg,
                deadline=time.monotonic() + self.settings.batch_timeout_s,
            )
            self._open[key] = open_batch
        elif open_batch.size != batch.batch_size:
            raise PermanentError(
                f"batch {batch.batch_id}: batch_size {batch.batch_size} differs from "
                f"{open_batch.size} of earlier items"
            )
        # A re-delivered item (or a retry) replaces nothing: first eps wins, all waiters wake.
        open_batch.eps.setdefault(item_id, eps)
        waiter: asyncio.Future[BatchSummary] = asyncio.get_running_loop().create_future()
        open_batch.waiters.append(waiter)
        if len(open_batch.eps) >= open_batch.size:
            self._decide_batch(key, open_batch)
        return None, waiter, open_batch.deadline

    def _remember(self, key: tuple[str, str], summary: BatchSummary) -> None:
        self._decided[key] = summary
        self._decided.move_to_end(key)
        while len(self._decided) > 4096:
            self._decided.popitem(last=False)

    def _decide_batch(self, key: tuple[str, str], batch: _OpenBatch) -> None:
        cfg = batch.cfg
        ids = list(batch.eps)
        summary = summarize_batch(
            [batch.eps[i] for i in ids], ids, cfg.rule, cfg.budget_fraction, cfg.beta,
            cfg.pi_min, cfg.seed, batch.task_id, alpha_method=cfg.alpha_method,
            alpha=cfg.alpha, tau=cfg.tau,
        )  # fmt: skip
        del self._open[key]
        self._remember(key, summary)
        if summary.trimmed:
            TRIMMED.inc(summary.trimmed)
        log.info(
            "batch_decided", task_id=batch.task_id, batch_id=batch.batch_id, n=summary.n,
            budget=summary.budget, selected=summary.selected, trimmed=summary.trimmed,
        )  # fmt: skip
        for waiter in batch.waiters:
            if not waiter.done():
                waiter.set_result(summary)

    async def wait(self, waiter: asyncio.Future[BatchSummary], deadline: float) -> BatchSummary:
        try:
            return await asyncio.wait_for(
                asyncio.shield(waiter), timeout=max(0.0, deadline - time.monotonic())
            )
        except TimeoutError:
            pass
        # Fail the whole batch: its records are dead-lettered together with the reason.
        for key, batch in list(self._open.items()):
            if waiter in batch.waiters:
                del self._open[key]
                reason = PermanentError(
                    f"batch {batch.batch_id} of task {batch.task_id} incomplete after "
                    f"{self.settings.batch_timeout_s:.0f}s: {len(batch.eps)} of {batch.size} "
                    "critiques arrived. Batch mode needs every item of a batch in one sampler "
                    "process (one replica) and concurrent batches within max_in_flight."
                )
                for other in batch.waiters:
                    if not other.done():
                        other.set_exception(reason)
                        with contextlib.suppress(BaseException):
                            other.exception()  # retrieved by its own process() below
                break
        if waiter.done() and not waiter.cancelled():
            return waiter.result()  # decided in the meantime, or raises the batch failure
        raise PermanentError("batch incomplete")

    def outputs(self, entry: BatchEntry, summary: BatchSummary, partition: int) -> list[Output]:
        """The decision of a batch record, and the summary for ``partition``'s changelog."""
        task_id, item_id, eps = entry.task_id, entry.item_id, entry.eps
        critique = entry.critique
        batch_id = critique.annotation.item.batch.batch_id
        draw = bernoulli_draw(summary.seed, task_id, item_id)
        d = decide_in_batch(summary, eps, draw, item_id)
        decision_counter("batch", summary.rule.value, d.delta).inc()
        # The summary's parameters, not the current config: a batch decided by an
        # earlier run keeps its own rule, budget and seed.
        decided = Decided(
            delta=d.delta, pi=d.pi, eps=eps, draw=d.draw, rule=summary.rule,
            mode=common_pb2.SAMPLING_MODE_BATCH, budget_fraction=summary.budget_fraction,
            pi_min=summary.pi_min, seed=summary.seed, window_id=batch_id,
            alpha=summary.alpha, beta=summary.beta, tau=summary.tau,
        )  # fmt: skip
        now = timestamp_now()
        headers = {"act-sampler-trimmed": "true"} if d.trimmed else {}
        outputs = decision_outputs(critique, entry.task, decided, headers, now)
        state = _summary_state(task_id, batch_id, summary, now)
        key = batch_key(task_id, batch_id)
        outputs.append(Output(topic=CHANGELOG, key=key, value=state, partition=partition))
        return outputs
