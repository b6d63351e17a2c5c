"""The sampler stage: critiques in, review requests (delta = 1) and machine labels out.

Each critique gets ``delta ~ Bernoulli(pi_B(eps))`` by the task's rule
(:mod:`services.core.sampling`). ``delta = 1`` becomes a ``ReviewRequest`` on
``review_requests``; ``delta = 0`` becomes a machine-final ``FinalLabel`` on
``labels``. Both carry the full ``SamplingDecision``
(:mod:`services.sampler.decisions`).

Streaming mode, exactly once
----------------------------
State lives per ``(task, input partition)`` (:mod:`services.core.streaming`)
and is a pure function of the records decided so far, taken in offset order:
the records of a partition pass an
:class:`~services.sampler.ordering.OrderedExecutor`, which runs them one at a
time in offset order and keeps a failed record's place until its retry.

The runtime owns the partition's lifecycle and its state
(:class:`~services.runtime.stage.Stage`): ``on_assigned`` comes after the
previous owner is fenced, with the partition's changelog (the compacted
``sampler_state`` topic, partition = input partition, key
``"<task>:<partition>"``) restored as committed; ``on_revoked`` drops
everything of the partition. In between, every decision leaves a copy of its
task's state; when the runner commits the partition's finished prefix up to
offset ``k`` it asks :meth:`SamplerStage.changelog` for the state of each task
after its last decision at or below ``k`` and writes it in the same
transaction as the decisions and the offset ``k + 1``
(:mod:`services.sampler.partition`). So the committed changelog is exactly the
state after the committed records: a restarted or reassigned sampler resumes
from it with no replay of input records, and decisions that were made but
not committed are not counted (their records come again and are decided
again, from the same state, the same way).

The feedback loop
-----------------
With a :class:`~services.sampler.second_critic.SecondCritic`, each streamed
critique's eps is fused with the trainer's latest published model of its
task before the rule sees it (when the trainer found the fusion better on
validation). The decision records the fit id, the model's error probability
and the fused eps beside pi. A decision replayed after a crash may use a
newer model: only committed decisions count, so each item is still decided
exactly once, with the pi it was drawn with.

Batch mode, exactly once
------------------------
A record of a bounded batch (``Item.batch``) is accepted at once: its
critique goes to its partition's changelog with its offset, in one
transaction, so nothing waits in the runner and a batch may be far larger
than ``max_in_flight``. Once every member is committed the batch is decided
with exact quantiles, and each partition holding members writes their
decisions with the tombstones of their entries in its next transaction,
which the stage asks the runner for (:mod:`services.sampler.batches`).

Limits: all items of a batch must reach one sampler process (one replica, or
a batch produced to partitions that one replica owns); ``max_batch`` bounds
the members held in memory. A batch still incomplete after
``batch_timeout_s`` is dead-lettered as a whole, with the counts in the
reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

import structlog
from act.v1 import common_pb2, critique_pb2, task_pb2
from prometheus_client import Counter

from services.core.params import SamplingParams
from services.core.streaming import StreamingParams, StreamingSampler
from services.runtime.retry import PermanentError
from services.runtime.stage import (
    Envelope,
    Hook,
    HookedStage,
    Identity,
    Output,
    PartitionContext,
)
from services.runtime.tasks import TaskSource
from services.sampler.batches import BatchBook
from services.sampler.decisions import (
    Decided,
    check_rule,
    decision_counter,
    decision_outputs,
    request_id,
    timestamp_now,
    validate,
)
from services.sampler.partition import CHANGELOG, SamplerPartition
from services.sampler.second_critic import SecondCritic
from services.sampler.settings import Mode, SamplerSettings

__all__ = ["Mode", "SamplerSettings", "SamplerStage", "SamplingParams", "request_id"]

log = structlog.get_logger(__name__)

FORCED = Counter("act_sampler_forced_total", "Streaming decisions the pacer overrode.", ["reason"])
RESTORES = Counter(
    "act_sampler_state_events_total",
    "Streaming state restored, started fresh or dropped, by reason.",
    ["reason"],
)


class SamplerStage(HookedStage[critique_pb2.Critique]):
    """Budget-aware sampling of critiques (see module docstring)."""

    name = "sampler"
    input_topic = "critiques"
    input_type = critique_pb2.Critique
    changelog_topic = CHANGELOG

    def __init__(
        self,
        settings: SamplerSettings,
        *,
        tasks: TaskSource | None = None,
        second_critic: SecondCritic | None = None,
        on_start: Sequence[Hook] = (),
        on_stop: Sequence[Hook] = (),
    ) -> None:
        super().__init__(on_start=on_start, on_stop=on_stop)
        self.settings = settings
        #: Streaming mode: the trainer's latest model fused with the critic
        #: (:mod:`services.sampler.second_critic`); None: the critic alone.
        self.second_critic = second_critic
        # The Task lookup: with a source (act.tasks) each task's own budget and
        # rule apply, with the settings as fallbacks; without one, the settings.
        self.tasks = tasks
        self.defaults = settings.sampling_params()
        self._task_cfg: dict[str, tuple[task_pb2.Task, SamplingParams]] = {}
        #: Owned input partitions (from on_assigned to on_revoked).
        self.partitions: dict[int, SamplerPartition] = {}
        #: Each owned partition's way to ask the runner for a transaction.
        self._commit_requests: dict[int, Callable[[], None]] = {}
        self.batches = BatchBook(settings, self.partitions, self._request_commit)
        self._expiry: asyncio.Task[None] | None = None

    async def stop(self) -> None:
        """Stop the batch deadline check, then run the stop hooks (e.g. the task registry)."""
        if self._expiry is not None:
            self._expiry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._expiry
            self._expiry = None
        await super().stop()

    def _request_commit(self, partition: int) -> None:
        request = self._commit_requests.get(partition)
        if request is not None:
            request()

    async def _expire_batches(self) -> None:
        """Fail batches past ``batch_timeout_s`` (checked a few times per timeout)."""
        period = min(5.0, max(0.05, self.settings.batch_timeout_s / 4))
        while True:
            await asyncio.sleep(period)
            self.batches.expire(time.monotonic())

    def identify(self, message: critique_pb2.Critique) -> Identity:
        """Task and item of the critiqued item."""
        item = message.annotation.item
        return Identity(task_id=item.task_id, item_id=item.item_id)

    # ------------------------------------------------------ partition hooks

    async def on_assigned(
        self, partition: int, committed_offset: int | None, context: PartitionContext
    ) -> None:
        """Take the partition with its committed changelog: states and batch summaries."""
        old = self.partitions.pop(partition, None)
        if old is not None:  # never revoked (not with the runner): start over
            old.close()
        part = SamplerPartition(partition, context.input_partitions, dict(context.state))
        self.partitions[partition] = part
        self._commit_requests[partition] = context.request_commit
        await self.batches.restore(part, self._task)
        if self._expiry is None:
            self._expiry = asyncio.create_task(self._expire_batches(), name="act-batch-expiry")
        if part.restored or part.summaries or part.members:
            RESTORES.labels(reason="restored").inc()
        log.info(
            "sampler_partition_assigned", partition=partition, offset=committed_offset,
            states=len(part.restored), batch_summaries=len(part.summaries),
            batch_members=len(part.members),
        )  # fmt: skip

    async def on_revoked(self, partition: int) -> None:
        """Drop the partition: its uncommitted decisions are made again by the next owner."""
        part = self.partitions.pop(partition, None)
        self._commit_requests.pop(partition, None)
        self.batches.revoked(partition)
        if part is not None:
            part.close()
            RESTORES.labels(reason="revoked").inc()

    def changelog(self, partition: int, upto_offset: int) -> Sequence[Output]:
        """Each task's state after its last decision at or below ``upto_offset``, and
        what the partition owes for settled batches (decisions, tombstones)."""
        part = self.partitions.get(partition)
        states = [] if part is None else part.changelog(upto_offset)
        return [*states, *self.batches.flush(partition)]

    def on_committed(self, partition: int, upto_offset: int) -> None:
        """Forget the state copies of committed decisions; count committed batch members."""
        part = self.partitions.get(partition)
        if part is not None:
            part.committed(upto_offset)
        self.batches.committed(partition, upto_offset)

    def _partition(self, partition: int) -> SamplerPartition:
        part = self.partitions.get(partition)
        if part is None:
            # Only without a runner (tests, tools): a partition that starts empty.
            part = self.partitions[partition] = SamplerPartition(partition)
        return part

    # ------------------------------------------------------------- process

    async def process(self, envelope: Envelope[critique_pb2.Critique]) -> Sequence[Output]:
        """Decide one critique (streaming) or wait for its batch to be decided (batch)."""
        part = self._partition(envelope.partition)
        offset = envelope.offset
        if envelope.attempt > 1:
            decided = part.decided.get(offset)
            if decided is not None:  # decided before the attempt failed: the same decision
                return decided
        # Queue before the first await: records arrive here in offset order.
        job = part.executor.submit(offset, final=envelope.attempt >= self.settings.max_attempts)
        outcome = await part.executor.run(job, lambda: self._ordered(part, envelope))
        return cast(list[Output], outcome)

    async def _ordered(
        self, part: SamplerPartition, envelope: Envelope[critique_pb2.Critique]
    ) -> Any:
        """The part of a record that must run in offset order."""
        part.check_open()
        critique = envelope.message
        task_id, item_id, eps = validate(critique)
        task, cfg = await self._task(task_id)
        check_rule(critique, cfg, task_id)
        if cfg.mode == "streaming":
            return self._streaming(part, envelope, task, cfg, task_id, item_id, eps)
        return self.batches.accept(envelope, task, cfg, task_id, item_id, eps)

    async def _task(self, task_id: str) -> tuple[task_pb2.Task | None, SamplingParams]:
        """The task (None without a task source) and its resolved sampling parameters."""
        if self.tasks is None:
            return None, self.defaults
        task = await self.tasks.get(task_id)  # TaskNotFoundError: retried, then DLQ
        cached = self._task_cfg.get(task_id)
        if cached is not None and cached[0] is task:
            return cached
        try:
            cfg = SamplingParams.from_task(task, self.defaults)
        except ValueError as exc:  # a task that can never be sampled as defined
            raise PermanentError(f"task {task_id}: {exc}") from exc
        self._task_cfg[task_id] = (task, cfg)
        return task, cfg

    # --------------------------------------------------- streaming state

    def _state(self, part: SamplerPartition, task_id: str, cfg: SamplingParams) -> StreamingSampler:
        state = part.states.get(task_id)
        if state is not None:
            if part.cfgs.get(task_id) is not cfg:
                # The task changed on act.tasks: new parameters from now on, same counters.
                state.params = self._params(cfg, part)
                part.cfgs[task_id] = cfg
            return state
        params = self._params(cfg, part)
        restored = part.restored.pop(task_id, None)
        if restored is None:
            state = StreamingSampler(params, task_id, part.partition)
        else:
            state = StreamingSampler.from_proto(restored, params)
            log.info(
                "sampler_state_restored", task_id=task_id, partition=part.partition,
                seen=state.seen, selected=state.selected, window=state.window_id,
            )  # fmt: skip
        RESTORES.labels(reason="fresh" if restored is None else "task_restored").inc()
        part.states[task_id] = state
        part.cfgs[task_id] = cfg
        return state

    def _params(self, cfg: SamplingParams, part: SamplerPartition) -> StreamingParams:
        """The task's parameters with the streaming engine's knobs and this partition's cap."""
        return StreamingParams(
            rule=cfg.rule,
            budget_fraction=cfg.budget_fraction,
            beta=cfg.beta,
            alpha_method=cfg.alpha_method,
            alpha=cfg.alpha,
            tau=cfg.tau,
            pi_min=cfg.pi_min,
            seed=cfg.seed,
            window_items=cfg.window_items,
            hard_cap=_cap_share(cfg.hard_cap, part.partition, part.input_partitions),
            tolerance=self.settings.pacing_tolerance,
            sketch_bins=self.settings.sketch_bins,
            sketch_half_life=self.settings.sketch_half_life_items,
        )

    def _streaming(
        self,
        part: SamplerPartition,
        envelope: Envelope[critique_pb2.Critique],
        task: task_pb2.Task | None,
        cfg: SamplingParams,
        task_id: str,
        item_id: str,
        eps: float,
    ) -> list[Output]:
        offset = envelope.offset
        state = self._state(part, task_id, cfg)
        opinion = None
        if self.second_critic is not None:
            opinion = self.second_critic.opinion(task_id, envelope.message, eps)
        if opinion is not None:
            eps = opinion.eps
        d = state.decide(item_id, eps, offset=offset)
        if d.forced:
            FORCED.labels(reason=d.forced).inc()
        decision_counter("streaming", cfg.rule.value, d.delta).inc()
        decided = Decided(
            delta=d.delta, pi=d.pi, eps=eps, draw=d.draw, rule=cfg.rule,
            mode=common_pb2.SAMPLING_MODE_STREAMING, budget_fraction=cfg.budget_fraction,
            pi_min=cfg.pi_min, seed=cfg.seed, window_id=d.window_id, alpha=d.alpha,
            beta=d.beta, tau=d.tau,
        )  # fmt: skip
        if opinion is not None and opinion.model_eps is not None:
            decided.second_fit_id = opinion.fit_id
            decided.second_eps = opinion.model_eps
        elif opinion is not None:
            decided.calibration_fit_id = opinion.fit_id
        headers = {"act-sampler-forced": d.forced} if d.forced else {}
        outputs = decision_outputs(envelope.message, task, decided, headers, timestamp_now())
        part.record(offset, task_id, state, outputs)
        return outputs


def _cap_share(hard_cap: int, partition: int, partitions: int) -> int | None:
    """This partition's share of the task's hard cap (shares sum to the cap); None = no cap.

    Items are spread over partitions by the hash of their id, so equal shares
    track the traffic; the cap then holds across all replicas without any
    coordination between them. Unknown partition count (no runner): the whole cap.
    """
    if hard_cap <= 0:
        return None
    n = max(1, partitions)
    return hard_cap // n + (1 if partition < hard_cap % n else 0)
