"""The sampler stage: critiques in, review requests (delta = 1) and machine labels out.

Each critique gets ``delta ~ Bernoulli(pi_B(eps))`` by the task's rule
(:mod:`services.sampler.rules`). ``delta = 1`` becomes a ``ReviewRequest`` on
``review_requests``; ``delta = 0`` becomes a machine-final ``FinalLabel`` on
``labels``. Both carry the full ``SamplingDecision`` (delta, pi, eps, rule,
mode, alpha/beta/tau, budget fraction, pi_min, seed, draw, window).

Streaming mode, exactly once
----------------------------
State lives per ``(task, input partition)`` (:mod:`.streaming`) and is a
pure function of the records decided so far, taken in offset order: the
records of a partition pass an
:class:`~services.sampler.ordering.OrderedExecutor`, which runs them one at a
time in offset order and keeps a failed record's place until its retry.

The state is kept like a changelog in the compacted ``sampler_state`` topic,
key ``"<task>:<partition>"``: a snapshot (with ``committed_offset``, the
input offset it accounts up to) is an *output of a record*, so the runner
commits it in the same transaction as the decisions and the input offset.
Snapshots go out with a lineage's first decision, every ``snapshot_every``
decisions, and at the latest ``snapshot_max_lag`` offsets after the last one
(not with every decision: that doubled the records produced per item). To
restore, the stage reads the latest committed snapshot and *replays* the
committed input records between its ``committed_offset`` and the record at
hand through the same decision function, without producing anything, which
rebuilds exactly the state the committed decisions left behind. A crash
therefore neither loses nor double-counts a decision, and a replayed record
gets the decision it got the first time (the SIGKILL test checks this).

In-memory state is only trusted while this process has owned the partition
without interruption. The stage cannot see rebalances, so it infers them from
offsets (:class:`~services.sampler.ordering.PartitionTracker`):

* first record of a task on a partition: restore;
* an offset at or below the last one seen (re-delivery after a revoke or a
  lost transaction): drop the partition's states, restore;
* an offset gap (normal: transaction markers and aborted records occupy
  offsets): ask the broker for the group's committed offset ``C``. Our own
  commits never pass ``last + 1`` while this record is unfinished, so
  ``C > last + 1`` means another process committed records we never saw:
  drop and restore. Whenever ``C > last + 1`` every record up to ``last`` is
  committed (commits are prefixes), so a restore never loses our own work.
  Later records of the partition wait until the check has succeeded.

Batch mode, exactly once
------------------------
A record of a bounded batch (``Item.batch``) waits in ``process`` until all
``batch_size`` critiques of the batch have arrived in this process, so its
offset stays uncommitted until the batch is decided with exact quantiles
(:func:`~services.sampler.rules.summarize_batch`). The decided
:class:`~services.sampler.rules.BatchSummary` is emitted with every decision
of the batch (key ``"batch:<task>:<batch id>"``), so once any decision of the
batch is committed the summary is too, and re-delivered items of a partly
committed batch are decided from it after a restart, without the rest.

Limits: the waiting records occupy the runner's in-flight slots, so a batch
may have at most ``max_batch <= max_in_flight`` items (larger ones are
dead-lettered at once with the reason), and all items of a batch must reach
one sampler process (one replica, or a batch produced to partitions that one
replica owns). A batch still incomplete after ``batch_timeout_s`` is
dead-lettered as a whole, with the counts in the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import math
import time
from collections import OrderedDict, defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import structlog
from act.v1 import common_pb2, critique_pb2, review_pb2, sampling_pb2, task_pb2
from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp
from prometheus_client import Counter
from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from services.runtime.config import KafkaSettings, StageSettings
from services.runtime.retry import PermanentError
from services.runtime.stage import Envelope, Identity, Output, Stage
from services.runtime.tasks import TaskSource
from services.runtime.topics import TopicCatalog, default_catalog
from services.sampler.ordering import Job, OrderedExecutor, PartitionTracker, Verdict
from services.sampler.rules import (
    DEFAULT_BETA,
    AlphaMethod,
    BatchSummary,
    Rule,
    bernoulli_draw,
    decide_in_batch,
    summarize_batch,
)
from services.sampler.state_store import KafkaStateStore, StateBackend
from services.sampler.streaming import StreamingParams, StreamingSampler

log = structlog.get_logger(__name__)

DECISIONS = Counter(
    "act_sampler_decisions_total",
    "Sampling decisions made (a re-processed record counts again).",
    ["mode", "rule", "delta"],
)
FORCED = Counter("act_sampler_forced_total", "Streaming decisions the pacer overrode.", ["reason"])
TRIMMED = Counter("act_sampler_trimmed_total", "Batch draws dropped to keep sum(delta) <= B.")
RESTORES = Counter(
    "act_sampler_state_events_total",
    "Streaming state restored, started fresh or dropped, by reason.",
    ["reason"],
)

_RULES = {
    Rule.NORMALIZATION: common_pb2.SAMPLING_RULE_NORMALIZATION,
    Rule.EXPONENTIAL: common_pb2.SAMPLING_RULE_EXPONENTIAL,
    Rule.THRESHOLD: common_pb2.SAMPLING_RULE_THRESHOLD,
}
_RULES_BACK = {v: k for k, v in _RULES.items()}
Mode = Literal["batch", "streaming"]


# ------------------------------------------------------------------ settings


class SamplerSettings(StageSettings):
    """Sampler settings (env prefix ``ACT_SAMPLER_``), also the default task sampling."""

    model_config = SettingsConfigDict(env_prefix="ACT_SAMPLER_", extra="ignore")

    rule: Rule = Field(Rule.THRESHOLD, description="normalization, exponential or threshold.")
    mode: Mode = Field("streaming", description="batch (bounded data sets) or streaming.")
    budget_fraction: float = Field(0.1, ge=0.0, le=1.0, description="Budget b: B = floor(b*N).")
    beta: float = Field(DEFAULT_BETA, gt=0.0, description="Exponential weighting steepness.")
    alpha_method: AlphaMethod = Field(
        "solve",
        description=(
            "Exponential alpha: 'solve' (sum pi = B, pi stays the true inclusion probability) "
            "or 'quantile' (paper A.3; with beta=10 sum pi can be ~2B and the budget trim "
            "then drops many draws)."
        ),
    )
    pi_min: float = Field(0.0, ge=0.0, le=1.0, description="Exploration floor on pi.")
    seed: int = Field(0, ge=0, lt=2**64, description="Seed of the Bernoulli draws.")
    window_items: int = Field(1000, ge=1, description="Streaming pacing window (items).")
    hard_cap: int = Field(0, ge=0, description="Max reviews per task, all partitions; 0 = none.")
    pacing_tolerance: float = Field(
        0.005, ge=0.0, le=1.0, description="Streaming: force picks below (b - this) per window."
    )
    sketch_bins: int = Field(100, ge=2, le=65535, description="Streaming eps histogram bins.")
    sketch_half_life_items: float = Field(
        1000.0, gt=0.0, description="Streaming: items after which an eps counts half."
    )
    max_batch: int = Field(
        256, ge=1, description="Largest batch (items) batch mode accepts; <= max_in_flight."
    )
    batch_timeout_s: float = Field(60.0, gt=0.0, description="Batch incomplete after this: DLQ.")
    restore_timeout_s: float = Field(30.0, gt=0.0, description="Reading act.sampler.state.")
    task_source: Literal["topic", "settings"] = Field(
        "topic",
        description=(
            "'topic': each task's budget and rule from act.tasks (these settings fill what a "
            "task leaves unset); 'settings': these settings for every task."
        ),
    )
    snapshot_every: int = Field(
        200, ge=1, description="Streaming: snapshot a task's state every this many decisions."
    )
    snapshot_max_lag: int = Field(
        2000, ge=1, description="Streaming: ...and at the latest this many input offsets later."
    )

    @model_validator(mode="after")
    def _batch_fits(self) -> SamplerSettings:
        # Waiting batch records hold in-flight slots and ledger entries; a batch
        # larger than either would wait forever for records never fetched.
        if self.max_batch > self.max_in_flight or self.max_batch > self.max_buffered:
            raise ValueError("max_batch must be <= max_in_flight and <= max_buffered")
        return self


# ---------------------------------------------------------------- task config


@dataclass(frozen=True, slots=True)
class TaskSampling:
    """The sampling parameters of one task, resolved."""

    rule: Rule
    mode: Mode
    budget_fraction: float
    beta: float = DEFAULT_BETA
    alpha_method: AlphaMethod = "solve"
    alpha: float | None = None
    tau: float | None = None
    pi_min: float = 0.0
    seed: int = 0
    window_items: int = 1000
    hard_cap: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.budget_fraction <= 1.0:
            raise ValueError(f"budget fraction {self.budget_fraction} outside [0, 1]")
        if not 0.0 <= self.pi_min <= 1.0:
            raise ValueError(f"pi_min {self.pi_min} outside [0, 1]")
        if self.beta <= 0 or self.window_items < 1 or self.hard_cap < 0:
            raise ValueError("beta must be > 0, window_items >= 1 and hard_cap >= 0")

    @classmethod
    def from_settings(cls, s: SamplerSettings) -> TaskSampling:
        """What every task gets when no task source is configured (and its fallbacks)."""
        return cls(
            rule=s.rule, mode=s.mode, budget_fraction=s.budget_fraction, beta=s.beta,
            alpha_method=s.alpha_method, pi_min=s.pi_min, seed=s.seed,
            window_items=s.window_items, hard_cap=s.hard_cap,
        )  # fmt: skip

    @classmethod
    def from_task(cls, task: task_pb2.Task, defaults: TaskSampling) -> TaskSampling:
        """Resolve a ``Task`` (act.tasks): its fields where set, ``defaults`` otherwise."""
        cfg = task.sampling
        mode: Mode = defaults.mode
        if cfg.mode == common_pb2.SAMPLING_MODE_BATCH:
            mode = "batch"
        elif cfg.mode == common_pb2.SAMPLING_MODE_STREAMING:
            mode = "streaming"
        return cls(
            rule=_RULES_BACK.get(cfg.rule, defaults.rule),
            mode=mode,
            budget_fraction=(
                task.budget.fraction if task.HasField("budget") else defaults.budget_fraction
            ),
            beta=cfg.beta if cfg.HasField("beta") else defaults.beta,
            alpha_method=defaults.alpha_method,
            alpha=cfg.alpha if cfg.HasField("alpha") else None,
            tau=cfg.tau if cfg.HasField("tau") else None,
            pi_min=cfg.pi_min,
            seed=cfg.seed,
            window_items=task.budget.window_items or defaults.window_items,
            hard_cap=task.budget.hard_cap,
        )  # fmt: skip


# ------------------------------------------------------------------ batches


@dataclass(slots=True)
class _BatchEntry:
    """A batch record after its ordered part: decided already, or a waiter."""

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
    cfg: TaskSampling
    deadline: float
    eps: dict[str, float] = field(default_factory=dict)
    waiters: list[asyncio.Future[BatchSummary]] = field(default_factory=list)


def _batch_key(task_id: str, batch_id: str) -> str:
    return f"batch:{task_id}:{batch_id}"


def _summary_state(
    task_id: str, batch_id: str, summary: BatchSummary, now: Timestamp
) -> sampling_pb2.SamplerState:
    """A batch summary as a ``sampler_state`` record (partition -1: all partitions).

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


# -------------------------------------------------------------------- stage


class SamplerStage(Stage[critique_pb2.Critique]):
    """Budget-aware sampling of critiques (see module docstring)."""

    name = "sampler"
    input_topic = "critiques"
    input_type = critique_pb2.Critique

    def __init__(
        self,
        settings: SamplerSettings,
        kafka: KafkaSettings | None = None,
        *,
        tasks: TaskSource | None = None,
        on_start: Sequence[Callable[[], Awaitable[None]]] = (),
        on_stop: Sequence[Callable[[], Awaitable[None]]] = (),
        backend: StateBackend | None = None,
        catalog: TopicCatalog | None = None,
    ) -> None:
        self.settings = settings
        # The Task lookup: with a source (act.tasks) each task's own budget and
        # rule apply, with the settings as fallbacks; without one, the settings.
        self.tasks = tasks
        self.defaults = TaskSampling.from_settings(settings)
        self._task_cfg: dict[str, tuple[task_pb2.Task, TaskSampling]] = {}
        self._on_start = list(on_start)
        self._on_stop = list(on_stop)
        if backend is None:
            if kafka is None:
                raise ValueError("give kafka settings or a state backend")
            catalog = catalog or default_catalog()
            backend = KafkaStateStore(
                kafka,
                state_topic=catalog.name("sampler_state", kafka.topic_prefix),
                input_topic=catalog.name(self.input_topic, kafka.topic_prefix),
                group_id=settings.group_id or f"act-{self.name}",
                timeout_s=settings.restore_timeout_s,
            )
        self.backend = backend
        self.tracker = PartitionTracker()
        self._executors: defaultdict[int, OrderedExecutor] = defaultdict(OrderedExecutor)
        self._states: dict[tuple[str, int], StreamingSampler] = {}
        self._state_cfg: dict[tuple[str, int], TaskSampling] = {}
        # Per partition: states with decisions not yet in a snapshot.
        self._dirty: dict[int, dict[str, StreamingSampler]] = {}
        self._scan_countdown: dict[int, int] = {}
        # Gap checks not done yet: (partition, offset after the gap) -> offset before it.
        self._gap_checks: dict[tuple[int, int], int] = {}
        self._open: dict[tuple[str, str], _OpenBatch] = {}
        self._decided: OrderedDict[tuple[str, str], BatchSummary] = OrderedDict()
        self._lookups: dict[tuple[str, str], asyncio.Future[BatchSummary | None]] = {}

    async def start(self) -> None:
        """Open the state backend, then run the start hooks (e.g. the task registry)."""
        await self.backend.start()
        for hook in self._on_start:
            await hook()

    async def stop(self) -> None:
        """Fail waiting batch records (their offsets stay uncommitted) and close."""
        for batch in self._open.values():
            for fut in batch.waiters:
                if not fut.done():
                    fut.cancel()
        self._open.clear()
        for hook in self._on_stop:
            await hook()
        await self.backend.stop()

    def identify(self, message: critique_pb2.Critique) -> Identity:
        """Task and item of the critiqued item."""
        item = message.annotation.item
        return Identity(task_id=item.task_id, item_id=item.item_id)

    # ------------------------------------------------------------- process

    async def process(self, envelope: Envelope[critique_pb2.Critique]) -> Sequence[Output]:
        """Decide one critique (streaming) or wait for its batch to be decided (batch)."""
        p = envelope.partition
        # Classify and queue before the first await: records arrive here in offset order.
        verdict, prev = self.tracker.observe(p, envelope.offset, envelope.attempt)
        executor = self._executors[p]
        if verdict is Verdict.REGRESS:
            self._drop_partition(p, "redelivery")
            executor.reset()  # jobs of the abandoned generation
            for key in [k for k in self._gap_checks if k[0] == p]:
                del self._gap_checks[key]
        elif verdict is Verdict.GAP and prev is not None:
            self._gap_checks[(p, envelope.offset)] = prev
        job = executor.submit(envelope.offset, final=envelope.attempt >= self.settings.max_attempts)
        # Before the job may run: if another process took over, the jobs ahead
        # of this one are records we will never see again. A failed check
        # leaves the job unrunnable (it holds its place) until the retry.
        await self._check_gap(p, job, executor)
        critique = envelope.message
        outcome = await executor.run(job, lambda: self._ordered(envelope))
        if isinstance(outcome, _BatchEntry):  # batch records wait outside the order
            summary = outcome.summary
            if summary is None:
                assert outcome.waiter is not None
                summary = await self._wait_batch(outcome.waiter, outcome.deadline)
            return self._batch_outputs(
                critique, outcome.task, summary, outcome.task_id, outcome.item_id, outcome.eps
            )
        return cast(list[Output], outcome)

    async def _ordered(self, envelope: Envelope[critique_pb2.Critique]) -> Any:
        """The part of a record that must run in offset order."""
        critique = envelope.message
        task_id, item_id, eps = _validate(critique)
        task, cfg = await self._task(task_id)
        _check_rule(critique, cfg, task_id)
        if cfg.mode == "streaming":
            return await self._streaming(envelope, task, cfg, task_id, item_id, eps)
        summary, waiter, deadline = await self._enter_batch(critique, cfg, task_id, item_id, eps)
        return _BatchEntry(task, task_id, item_id, eps, summary, waiter, deadline)

    async def _task(self, task_id: str) -> tuple[task_pb2.Task | None, TaskSampling]:
        """The task (None without a task source) and its resolved sampling parameters."""
        if self.tasks is None:
            return None, self.defaults
        task = await self.tasks.get(task_id)  # TaskNotFoundError: retried, then DLQ
        cached = self._task_cfg.get(task_id)
        if cached is not None and cached[0] is task:
            return cached
        try:
            cfg = TaskSampling.from_task(task, self.defaults)
        except ValueError as exc:  # a task that can never be sampled as defined
            raise PermanentError(f"task {task_id}: {exc}") from exc
        self._task_cfg[task_id] = (task, cfg)
        return task, cfg

    # --------------------------------------------------- streaming state

    def _drop_partition(self, partition: int, reason: str) -> None:
        dropped = [k for k in self._states if k[1] == partition]
        for k in dropped:
            del self._states[k]
            self._state_cfg.pop(k, None)
        self._dirty.pop(partition, None)
        if dropped:
            RESTORES.labels(reason=reason).inc()
            log.info(
                "sampler_state_dropped", partition=partition, reason=reason, tasks=len(dropped)
            )

    async def _check_gap(self, partition: int, job: Job, executor: OrderedExecutor) -> None:
        """After an offset gap: did another process commit records we never saw?

        Valid while the gap record is unfinished, however far it is from its
        turn: our own commits cannot pass ``prev + 1`` before it finishes. A
        failed check raises; the record keeps its place and its retry checks again.
        """
        key = (partition, job.offset)
        prev = self._gap_checks.get(key)
        if prev is None:
            return
        try:
            committed = await self.backend.committed(partition)
        except Exception:
            if job.final:  # no retry will come: give up the place
                executor.drop(job)
            raise
        if committed is not None and committed > prev + 1:
            self._drop_partition(partition, "another_owner")
            executor.drop_before(job)
        self._gap_checks.pop(key, None)

    async def _state(
        self, task_id: str, partition: int, offset: int, cfg: TaskSampling
    ) -> StreamingSampler:
        key = (task_id, partition)
        state = self._states.get(key)
        if state is not None:
            if self._state_cfg.get(key) is not cfg:
                # The task changed on act.tasks: new parameters from now on, same
                # counters. (A replay after a restart re-decides with the current ones.)
                state.params = await self._params(cfg, partition)
                self._state_cfg[key] = cfg
            return state
        params = await self._params(cfg, partition)
        snapshot = await self.backend.latest(f"{task_id}:{partition}")
        if snapshot is None:
            # No snapshot means no committed decision of this task here: the
            # first decision of a lineage always carries one.
            state = StreamingSampler(params, task_id, partition)
        else:
            state = StreamingSampler.from_proto(snapshot, params)
            start = state.committed_offset
            replayed = 0
            if start < offset:
                replayed = await self._replay(state, cfg, start, offset)
            elif start > offset:
                # Only an operator's offset reset gets here: the record is already
                # counted in the snapshot and will be decided (and counted) again.
                log.warning(
                    "sampler_state_ahead_of_input", task_id=task_id, partition=partition,
                    state_offset=start, offset=offset,
                )  # fmt: skip
            log.info(
                "sampler_state_restored", task_id=task_id, partition=partition,
                seen=state.seen, selected=state.selected, window=state.window_id,
                snapshot_offset=start, replayed=replayed,
            )  # fmt: skip
        RESTORES.labels(reason="restored" if snapshot is not None else "fresh").inc()
        self._states[key] = state
        self._state_cfg[key] = cfg
        return state

    async def _params(self, cfg: TaskSampling, partition: int) -> StreamingParams:
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
            hard_cap=await self._cap_share(cfg.hard_cap, partition),
            tolerance=self.settings.pacing_tolerance,
            sketch_bins=self.settings.sketch_bins,
            sketch_half_life=self.settings.sketch_half_life_items,
        )

    async def _replay(
        self, state: StreamingSampler, cfg: TaskSampling, start: int, end: int
    ) -> int:
        """Re-decide (without output) the task's committed records after its snapshot.

        Decisions are a pure function of state and record, so this rebuilds
        exactly the state the committed decisions left behind. Records the
        live path rejects are skipped here too.
        """
        replayed = 0
        for offset, value in await self.backend.replay(state.partition, start, end):
            try:
                critique = critique_pb2.Critique.FromString(value)
                task_id, item_id, eps = _validate(critique)
                if task_id != state.task_id:
                    continue
                _check_rule(critique, cfg, task_id)
            except (DecodeError, PermanentError):
                continue
            state.decide(item_id, eps, offset=offset)
            replayed += 1
        return replayed

    async def _cap_share(self, hard_cap: int, partition: int) -> int | None:
        """This partition's share of the task's hard cap (shares sum to the cap); None = no cap.

        Items are spread over partitions by the hash of their id, so equal
        shares track the traffic; the cap then holds across all replicas
        without any coordination between them.
        """
        if hard_cap <= 0:
            return None
        n = await self.backend.input_partitions()
        return hard_cap // n + (1 if partition < hard_cap % n else 0)

    async def _streaming(
        self,
        envelope: Envelope[critique_pb2.Critique],
        task: task_pb2.Task | None,
        cfg: TaskSampling,
        task_id: str,
        item_id: str,
        eps: float,
    ) -> list[Output]:
        p, offset = envelope.partition, envelope.offset
        state = await self._state(task_id, p, offset, cfg)
        d = state.decide(item_id, eps, offset=offset)
        if d.forced:
            FORCED.labels(reason=d.forced).inc()
        _decision_counter("streaming", cfg.rule.value, d.delta).inc()
        decided = _Decided(
            delta=d.delta, pi=d.pi, eps=eps, draw=d.draw, rule=cfg.rule,
            mode=common_pb2.SAMPLING_MODE_STREAMING, budget_fraction=cfg.budget_fraction,
            pi_min=cfg.pi_min, seed=cfg.seed, window_id=d.window_id, alpha=d.alpha,
            beta=d.beta, tau=d.tau,
        )  # fmt: skip
        now = _now()
        headers = {"act-sampler-forced": d.forced} if d.forced else {}
        outputs = _outputs(envelope.message, task, decided, headers, now)
        outputs.extend(self._snapshots(p, offset, task_id, state, now))
        return outputs

    def _snapshots(
        self, partition: int, offset: int, task_id: str, state: StreamingSampler, now: Timestamp
    ) -> list[Output]:
        """State snapshots to commit with this record.

        The record's own task when due; every 32 records also any other task
        of the partition whose last snapshot lags too far behind (a rare task
        would otherwise make its replay read everything since).
        """
        s = self.settings
        dirty = self._dirty.setdefault(partition, {})
        dirty[task_id] = state
        countdown = self._scan_countdown.get(partition, 0) - 1
        if countdown <= 0 or len(dirty) == 1:
            candidates = list(dirty.items())
            countdown = 32
        else:
            candidates = [(task_id, state)]
        self._scan_countdown[partition] = countdown
        out = []
        for t, st in candidates:
            if st.snapshot_due(offset, s.snapshot_every, s.snapshot_max_lag):
                del dirty[t]
                value = st.snapshot(offset, now)
                out.append(Output(topic="sampler_state", key=f"{t}:{partition}", value=value))
        return out

    # ------------------------------------------------------------ batches

    async def _enter_batch(
        self,
        critique: critique_pb2.Critique,
        cfg: TaskSampling,
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
        summary = self._decided.get(key)
        if summary is None and key not in self._open:
            summary = await self._lookup_summary(key)
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

    async def _lookup_summary(self, key: tuple[str, str]) -> BatchSummary | None:
        """A summary committed by an earlier run (some of the batch's decisions committed)."""
        pending = self._lookups.get(key)
        if pending is None:
            pending = asyncio.get_running_loop().create_future()
            self._lookups[key] = pending
            try:
                state = await self.backend.latest(_batch_key(*key))
                found = BatchSummary.from_bytes(state.quantile_sketch) if state else None
            except BaseException as exc:
                self._lookups.pop(key, None)
                pending.set_exception(exc)
                # The exception is re-raised to this caller; mark it retrieved.
                pending.exception()
                raise
            pending.set_result(found)
            self._lookups.pop(key, None)
            if found is not None:
                self._remember(key, found)
                log.info("batch_summary_restored", task_id=key[0], batch_id=key[1])
            return found
        return await asyncio.shield(pending)

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

    async def _wait_batch(
        self, waiter: asyncio.Future[BatchSummary], deadline: float
    ) -> BatchSummary:
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

    def _batch_outputs(
        self,
        critique: critique_pb2.Critique,
        task: task_pb2.Task | None,
        summary: BatchSummary,
        task_id: str,
        item_id: str,
        eps: float,
    ) -> list[Output]:
        batch_id = critique.annotation.item.batch.batch_id
        draw = bernoulli_draw(summary.seed, task_id, item_id)
        d = decide_in_batch(summary, eps, draw, item_id)
        _decision_counter("batch", summary.rule.value, d.delta).inc()
        # The summary's parameters, not the current config: a batch decided by an
        # earlier run keeps its own rule, budget and seed.
        decided = _Decided(
            delta=d.delta, pi=d.pi, eps=eps, draw=d.draw, rule=summary.rule,
            mode=common_pb2.SAMPLING_MODE_BATCH, budget_fraction=summary.budget_fraction,
            pi_min=summary.pi_min, seed=summary.seed, window_id=batch_id,
            alpha=summary.alpha, beta=summary.beta, tau=summary.tau,
        )  # fmt: skip
        now = _now()
        headers = {"act-sampler-trimmed": "true"} if d.trimmed else {}
        outputs = _outputs(critique, task, decided, headers, now)
        state = _summary_state(task_id, batch_id, summary, now)
        outputs.append(
            Output(topic="sampler_state", key=_batch_key(task_id, batch_id), value=state)
        )
        return outputs


# ------------------------------------------------------------------ helpers


def _check_rule(critique: critique_pb2.Critique, cfg: TaskSampling, task_id: str) -> None:
    if (
        critique.strategy == common_pb2.CRITIQUE_STRATEGY_COT_PERPLEXITY
        and cfg.rule is not Rule.THRESHOLD
    ):
        raise PermanentError(
            "COT_PERPLEXITY eps is an order, not a probability: only the threshold rule "
            f"applies (task {task_id} uses {cfg.rule.value})"
        )


def _validate(critique: critique_pb2.Critique) -> tuple[str, str, float]:
    item = critique.annotation.item
    if not item.task_id or not item.item_id:
        raise PermanentError("critique without annotation.item.task_id / item_id")
    eps = float(critique.eps)
    if not (0.0 <= eps <= 1.0):  # also NaN
        raise PermanentError(f"eps {critique.eps!r} outside [0, 1]")
    return item.task_id, item.item_id, eps


@dataclass(slots=True)
class _Decided:
    """A decision and every parameter in effect, as SamplingDecision records it."""

    delta: bool
    pi: float
    eps: float
    draw: float
    rule: Rule
    mode: int
    budget_fraction: float
    pi_min: float
    seed: int
    window_id: str
    alpha: float | None = None
    beta: float | None = None
    tau: float | None = None


def _now() -> Timestamp:
    ns = time.time_ns()
    return Timestamp(seconds=ns // 1_000_000_000, nanos=ns % 1_000_000_000)


@functools.lru_cache(maxsize=64)
def _decision_counter(mode: str, rule: str, delta: bool) -> Any:
    return DECISIONS.labels(mode=mode, rule=rule, delta="true" if delta else "false")


def _fill_decision(
    target: sampling_pb2.SamplingDecision,
    critique: critique_pb2.Critique,
    d: _Decided,
    now: Timestamp,
) -> None:
    # Filled in place inside the output message: the critique (with annotation
    # and item) is copied once, not once into a decision and again into the output.
    target.critique.CopyFrom(critique)
    target.delta = d.delta
    target.pi = d.pi
    target.eps = d.eps
    target.rule = _RULES[d.rule]
    target.mode = d.mode  # type: ignore[assignment]
    target.budget_fraction = d.budget_fraction
    target.pi_min = d.pi_min
    target.seed = d.seed
    target.draw = d.draw
    target.window_id = d.window_id
    if d.alpha is not None:
        target.alpha = d.alpha
    if d.beta is not None:
        target.beta = d.beta
    if d.tau is not None:
        target.tau = d.tau
    target.decided_at.CopyFrom(now)


def request_id(task_id: str, item_id: str) -> str:
    """Deterministic review request id: a replay produces the same id (idempotent queueing)."""
    digest = hashlib.blake2b(f"{task_id}\x1f{item_id}".encode(), digest_size=16).hexdigest()
    return f"rr-{digest}"


def _outputs(
    critique: critique_pb2.Critique,
    task: task_pb2.Task | None,
    d: _Decided,
    headers: Mapping[str, str],
    now: Timestamp,
) -> list[Output]:
    """delta = 1: a ReviewRequest; delta = 0: a machine-final FinalLabel."""
    # Fields are set one by one: protobuf keyword construction is about twice
    # as slow, and this runs for every item.
    annotation = critique.annotation
    item = annotation.item
    if d.delta:
        request = review_pb2.ReviewRequest()
        request.request_id = request_id(item.task_id, item.item_id)
        # Higher eps first; an int32 keeps 6 decimals of eps.
        request.priority = min(2**31 - 1, math.floor(d.eps * 1_000_000))
        request.requested_at.CopyFrom(now)
        _fill_decision(request.decision, critique, d, now)
        if task is not None:  # label set and instructions for the gateway, no lookup there
            request.task.CopyFrom(task)
        return [Output(topic="review_requests", key=item.item_id, value=request, headers=headers)]
    label = review_pb2.FinalLabel()
    label.item_id = item.item_id
    label.task_id = item.task_id
    label.label_index = annotation.label_index
    label.source = common_pb2.LABEL_SOURCE_MACHINE
    label.machine_label = annotation.label_index
    label.delta = False
    label.pi = d.pi
    label.eps = d.eps
    label.item.CopyFrom(item)
    label.finalized_at.CopyFrom(now)
    label.label_name = annotation.label_name
    _fill_decision(label.decision, critique, d, now)
    return [Output(topic="labels", key=item.item_id, value=label, headers=headers)]
