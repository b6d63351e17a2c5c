"""The sampler stage without a broker: outputs, ordering, state restore, batches."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterable, Sequence

import pytest
from act.v1 import common_pb2, critique_pb2, review_pb2, sampling_pb2, task_pb2
from pydantic import ValidationError

from services.runtime.retry import PermanentError
from services.runtime.stage import Envelope, Output
from services.runtime.tasks import StaticTaskSource, TaskNotFoundError
from services.sampler.ordering import OrderedExecutor, PartitionTracker, Verdict
from services.sampler.rules import BatchSummary, Rule, bernoulli_draw
from services.sampler.service import SamplerSettings, SamplerStage, TaskSampling, request_id

from .support import critique


class FakeBackend:
    """In-memory act.sampler.state, input partitions and committed offsets."""

    def __init__(self, partitions: int = 4) -> None:
        self.states: dict[str, sampling_pb2.SamplerState] = {}
        self.inputs: dict[int, dict[int, bytes]] = {}
        self.committed_offsets: dict[int, int] = {}
        self.partitions = partitions
        self.fail_committed = 0
        self.fail_latest = 0
        self.latest_calls: list[str] = []

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def latest(self, key: str) -> sampling_pb2.SamplerState | None:
        self.latest_calls.append(key)
        if self.fail_latest:
            self.fail_latest -= 1
            raise ConnectionError("broker unavailable")
        return self.states.get(key)

    async def committed(self, partition: int) -> int | None:
        if self.fail_committed:
            self.fail_committed -= 1
            raise ConnectionError("broker unavailable")
        return self.committed_offsets.get(partition)

    async def input_partitions(self) -> int:
        return self.partitions

    async def replay(self, partition: int, start: int, end: int) -> list[tuple[int, bytes]]:
        records = self.inputs.get(partition, {})
        return [(o, v) for o, v in sorted(records.items()) if start <= o < end]

    def commit(self, partition: int, offset: int, outputs: Sequence[Output]) -> None:
        """What a committed transaction leaves behind."""
        for o in outputs:
            if o.topic == "sampler_state":
                assert isinstance(o.value, sampling_pb2.SamplerState)
                self.states[o.key] = o.value
        self.committed_offsets[partition] = offset + 1


def envelope(
    c: critique_pb2.Critique, partition: int = 0, offset: int = 0, attempt: int = 1
) -> Envelope[critique_pb2.Critique]:
    return Envelope(
        message=c, topic="critiques", partition=partition, offset=offset, key=None,
        headers={}, timestamp_ms=0, attempt=attempt,
    )  # fmt: skip


def make_stage(
    backend: FakeBackend | None = None, **settings: object
) -> tuple[SamplerStage, FakeBackend]:
    backend = backend or FakeBackend()
    base: dict[str, object] = {
        "metrics_port": 0, "budget_fraction": 0.1, "window_items": 100, "rule": "normalization",
    }  # fmt: skip
    base.update(settings)
    return SamplerStage(SamplerSettings(**base), backend=backend), backend  # type: ignore[arg-type]


def decision_of(outputs: Sequence[Output]) -> sampling_pb2.SamplingDecision:
    main = outputs[0].value
    assert isinstance(main, review_pb2.ReviewRequest | review_pb2.FinalLabel)
    return main.decision


def state_of(outputs: Sequence[Output], key: str) -> sampling_pb2.SamplerState | None:
    for o in outputs:
        if o.topic == "sampler_state" and o.key == key:
            assert isinstance(o.value, sampling_pb2.SamplerState)
            return o.value
    return None


# ------------------------------------------------------------------ outputs


async def test_machine_label_and_review_request_carry_the_full_decision() -> None:
    stage, _ = make_stage(rule="threshold", seed=5, pi_min=0.0)
    low = await stage.process(envelope(critique("task", "a", 0.0, label=3), offset=0))
    assert [o.topic for o in low] == ["labels", "sampler_state"]  # first decision: snapshot
    label = low[0].value
    assert isinstance(label, review_pb2.FinalLabel)
    assert low[0].key == "a"
    assert (label.item_id, label.task_id, label.label_index, label.machine_label) == (
        "a",
        "task",
        3,
        3,
    )
    assert label.source == common_pb2.LABEL_SOURCE_MACHINE and not label.delta
    assert label.label_name == "label3" and label.item.item_id == "a"
    assert not label.HasField("human_label")
    d = label.decision
    assert d.critique.annotation.item.item_id == "a" and d.critique.eps == 0.0
    assert (d.delta, d.pi, d.eps) == (False, label.pi, 0.0)
    assert (
        d.rule == common_pb2.SAMPLING_RULE_THRESHOLD
        and d.mode == common_pb2.SAMPLING_MODE_STREAMING
    )
    assert d.budget_fraction == 0.1 and d.seed == 5 and d.HasField("tau")
    assert d.draw == bernoulli_draw(5, "task", "a")
    assert d.window_id == "task:0:0" and d.HasField("decided_at")

    # An item far above everything seen goes to review.
    for i in range(1, 50):
        await stage.process(envelope(critique("task", f"x{i}", 0.01), offset=i))
    high = await stage.process(envelope(critique("task", "z", 0.99), offset=50))
    request = high[0].value
    assert high[0].topic == "review_requests" and isinstance(request, review_pb2.ReviewRequest)
    assert request.request_id == request_id("task", "z")
    assert request.decision.delta and request.decision.pi == 1.0
    assert request.priority == 990_000 and request.HasField("requested_at")


async def test_invalid_critiques_fail_permanently() -> None:
    stage, _ = make_stage(rule="normalization")
    with pytest.raises(PermanentError, match="outside"):
        await stage.process(envelope(critique("task", "a", 1.5), offset=0))
    with pytest.raises(PermanentError, match="task_id"):
        await stage.process(envelope(critique("", "b", 0.5), offset=1))
    perplexity = critique("task", "c", 0.5)
    perplexity.strategy = common_pb2.CRITIQUE_STRATEGY_COT_PERPLEXITY
    with pytest.raises(PermanentError, match="only the threshold"):
        await stage.process(envelope(perplexity, offset=2))
    # The partition is not blocked by them.
    ok = await stage.process(envelope(critique("task", "d", 0.5), offset=3))
    assert ok[0].topic in ("labels", "review_requests")


# --------------------------------------------------------------- ordering


def test_tracker_verdicts() -> None:
    t = PartitionTracker()
    assert t.observe(0, 10, 1) == (Verdict.FIRST, None)
    assert t.observe(0, 11, 1) == (Verdict.NEXT, 10)
    assert t.observe(0, 15, 1) == (Verdict.GAP, 11)
    assert t.observe(0, 15, 2) == (Verdict.RETRY, 15)
    assert t.observe(0, 12, 1) == (Verdict.REGRESS, 15)
    assert t.observe(1, 0, 1) == (Verdict.FIRST, None)


async def test_executor_runs_in_order_and_holds_a_failed_job_for_its_retry() -> None:
    ex = OrderedExecutor()
    order: list[int] = []
    attempts = {1: 0}

    async def work(i: int) -> int:
        if i == 1 and attempts[1] == 0:
            attempts[1] += 1
            raise ConnectionError("transient")
        order.append(i)
        return i * 10

    jobs = [ex.submit(i, final=False) for i in range(4)]  # dispatch order = offset order
    tasks = [asyncio.create_task(ex.run(j, functools.partial(work, i))) for i, j in enumerate(jobs)]
    assert await tasks[0] == 0
    with pytest.raises(ConnectionError):
        await tasks[1]
    await asyncio.sleep(0.01)
    assert order == [0] and not tasks[2].done()  # nobody overtakes the failed job
    retry = ex.submit(1, final=False)
    assert retry is jobs[1]  # the retry finds its place at the head
    assert await ex.run(retry, functools.partial(work, 1)) == 10
    assert [await t for t in tasks[2:]] == [20, 30]
    assert order == [0, 1, 2, 3]


async def test_executor_drains_a_queue_without_a_loop_iteration_per_job() -> None:
    ex = OrderedExecutor()
    gate = asyncio.Event()

    async def slow_first() -> int:
        await gate.wait()  # e.g. a state restore
        return -1

    async def fast(i: int) -> int:
        return i

    first = asyncio.create_task(ex.run(ex.submit(0, final=False), slow_first))
    await asyncio.sleep(0)
    rest = [
        asyncio.create_task(ex.run(ex.submit(i, final=False), functools.partial(fast, i)))
        for i in range(1, 500)
    ]
    await asyncio.sleep(0)
    gate.set()
    # A lock would need ~500 loop iterations here; the drainer needs a handful.
    for _ in range(5):
        await asyncio.sleep(0)
    assert all(t.done() for t in rest) and await first == -1


async def test_records_decide_in_offset_order_across_a_failed_gap_check() -> None:
    stage, backend = make_stage(rule="normalization", seed=1)
    eps = [0.1, 0.9, 0.2, 0.8, 0.3, 0.7]
    await stage.process(envelope(critique("t", "i0", eps[0]), offset=0))
    backend.fail_committed = 1  # the gap check of offset 5 fails once
    first = asyncio.create_task(stage.process(envelope(critique("t", "i1", eps[1]), offset=5)))
    rest = [
        asyncio.create_task(stage.process(envelope(critique("t", f"i{k}", eps[k]), offset=5 + k)))
        for k in range(2, 6)
    ]
    with pytest.raises(ConnectionError):
        await first
    await asyncio.sleep(0.01)
    assert not any(t.done() for t in rest)  # nobody overtakes the failed record
    retried = await stage.process(envelope(critique("t", "i1", eps[1]), offset=5, attempt=2))
    outs = [retried] + [await t for t in rest]
    # Same decisions as an uninterrupted run in offset order.
    ref_stage, _ = make_stage(rule="normalization", seed=1)
    ref = [
        await ref_stage.process(envelope(critique("t", f"i{k}", e), offset=k))
        for k, e in enumerate(eps)
    ]
    assert [decision_of(o).pi for o in outs] == [decision_of(o).pi for o in ref[1:]]


# ------------------------------------------------------------- restore


async def _feed(
    stage: SamplerStage,
    backend: FakeBackend,
    items: Iterable[int],
    partition: int = 0,
    commit: bool = True,
    eps: float | None = None,
) -> list[Sequence[Output]]:
    outs = []
    for i in items:
        c = critique("t", f"item{i}", eps if eps is not None else (i * 37 % 100) / 100)
        backend.inputs.setdefault(partition, {})[i] = c.SerializeToString()
        out = await stage.process(envelope(c, partition=partition, offset=i))
        if commit:
            backend.commit(partition, i, out)
        outs.append(out)
    return outs


async def test_restart_restores_snapshot_and_replays_to_the_exact_state() -> None:
    ref_stage, ref_backend = make_stage(snapshot_every=50, rule="exponential")
    reference = await _feed(ref_stage, ref_backend, range(300))

    backend = FakeBackend()
    stage, _ = make_stage(backend, snapshot_every=50, rule="exponential")
    await _feed(stage, backend, range(170))
    # The process dies; a new one resumes at the committed offset (170). The
    # latest snapshot is older (offset 150), so 150..169 are replayed.
    assert backend.states["t:0"].committed_offset == 151
    stage2, _ = make_stage(backend, snapshot_every=50, rule="exponential")
    resumed = await _feed(stage2, backend, range(170, 300))
    assert [decision_of(o).pi for o in resumed] == [decision_of(o).pi for o in reference[170:]]
    assert [decision_of(o).delta for o in resumed] == [
        decision_of(o).delta for o in reference[170:]
    ]
    assert backend.states["t:0"].seen == ref_backend.states["t:0"].seen


async def test_redelivery_drops_uncommitted_state() -> None:
    backend = FakeBackend()
    stage, _ = make_stage(backend, snapshot_every=10)
    await _feed(stage, backend, range(40))
    # Offsets 40..59 are processed but their transaction never commits ...
    lost = await _feed(stage, backend, range(40, 60), commit=False)
    # ... and the runner re-delivers from 40: the state must not count them twice.
    again = await _feed(stage, backend, range(40, 60))
    assert [decision_of(o).pi for o in again] == [decision_of(o).pi for o in lost]
    latest = backend.states["t:0"]
    assert latest.seen <= 60 and latest.committed_offset <= 60


async def test_gap_with_records_committed_elsewhere_triggers_a_reload() -> None:
    backend = FakeBackend()
    stage, _ = make_stage(backend, snapshot_every=10)
    await _feed(stage, backend, range(30))
    calls = len(backend.latest_calls)
    # Transaction markers: a gap, but nobody else committed (committed = 30).
    await _feed(stage, backend, range(32, 40))
    assert len(backend.latest_calls) == calls  # in-memory state trusted
    # Another replica owned the partition and committed 40..99 meanwhile.
    other, _ = make_stage(backend, snapshot_every=10)
    await _feed(other, backend, range(40, 100))
    calls = len(backend.latest_calls)
    out = await _feed(stage, backend, range(105, 110))
    assert len(backend.latest_calls) == calls + 1  # the gap check found them: reloaded
    ref_stage, ref_backend = make_stage(snapshot_every=10)
    ref = await _feed(ref_stage, ref_backend, [*range(30), *range(32, 100), *range(105, 110)])
    assert [decision_of(o).pi for o in out] == [decision_of(o).pi for o in ref[-5:]]


async def test_a_record_abandoned_in_its_retry_backoff_does_not_block_the_next_owner() -> None:
    backend = FakeBackend()
    stage, _ = make_stage(backend, snapshot_every=10, rule="normalization")
    await _feed(stage, backend, range(10))
    backend.fail_latest = 1  # record 10 (a new task) fails; the runner would retry it ...
    with pytest.raises(ConnectionError):
        await stage.process(envelope(critique("u", "u10", 0.5), offset=10))
    # ... but the partition is revoked during the backoff and another replica
    # decides 10..59. When the partition comes back, record 60 must not wait
    # behind the abandoned place of record 10.
    other, _ = make_stage(backend, snapshot_every=10, rule="normalization")
    backend.inputs[0][10] = critique("u", "u10", 0.5).SerializeToString()
    backend.commit(0, 10, await other.process(envelope(critique("u", "u10", 0.5), offset=10)))
    await _feed(other, backend, range(11, 60))
    out = await asyncio.wait_for(_feed(stage, backend, range(60, 65)), timeout=5)
    ref_stage, ref_backend = make_stage(snapshot_every=10, rule="normalization")
    await _feed(ref_stage, ref_backend, range(10))
    await ref_stage.process(envelope(critique("u", "u10", 0.5), offset=10))
    ref = await _feed(ref_stage, ref_backend, range(11, 65))
    assert [decision_of(o).pi for o in out] == [decision_of(o).pi for o in ref[-5:]]


async def test_hard_cap_is_split_over_partitions() -> None:
    stage, backend = make_stage(hard_cap=10, budget_fraction=1.0)  # 4 partitions: 3+3+2+2
    reviewed = {}
    for p in range(4):
        outs = await _feed(stage, backend, range(20), partition=p, eps=0.9)
        reviewed[p] = sum(o[0].topic == "review_requests" for o in outs)
    assert reviewed == {0: 3, 1: 3, 2: 2, 3: 2}


# ----------------------------------------------------------------- batches


async def test_batch_waits_for_all_items_then_decides_exactly() -> None:
    stage, _backend = make_stage(mode="batch", rule="threshold", budget_fraction=0.2)
    eps = [0.05, 0.9, 0.1, 0.8, 0.2, 0.3, 0.15, 0.01, 0.7, 0.02]
    tasks = [
        asyncio.create_task(
            stage.process(
                envelope(
                    critique("t", f"b{i}", e, batch=("B1", 10)), partition=i % 2, offset=i // 2
                )
            )
        )
        for i, e in enumerate(eps[:-1])
    ]
    await asyncio.sleep(0.02)
    assert not any(t.done() for t in tasks)  # 9 of 10: everyone waits, nothing commits
    last = await stage.process(
        envelope(critique("t", "b9", eps[-1], batch=("B1", 10)), partition=1, offset=4)
    )
    outs = [await t for t in tasks] + [last]
    chosen = {decision_of(o).critique.annotation.item.item_id for o in outs if decision_of(o).delta}
    assert chosen == {"b1", "b3"}  # B = floor(0.2 * 10) = 2: the two highest eps
    summaries = set()
    for o in outs:
        d = decision_of(o)
        assert d.mode == common_pb2.SAMPLING_MODE_BATCH and d.window_id == "B1"
        summary_state = state_of(o, "batch:t:B1")
        assert summary_state is not None  # every decision carries the summary
        summaries.add(summary_state.quantile_sketch)
    assert len(summaries) == 1
    summary = BatchSummary.from_bytes(summaries.pop())
    assert (summary.n, summary.budget, summary.selected, summary.rule) == (10, 2, 2, Rule.THRESHOLD)


async def test_partly_committed_batch_is_finished_from_its_summary() -> None:
    backend = FakeBackend()
    stage, _ = make_stage(backend, mode="batch", rule="normalization", budget_fraction=0.3)
    eps = [0.1, 0.9, 0.2, 0.8, 0.3, 0.7]
    outs = await asyncio.gather(
        *[
            stage.process(envelope(critique("t", f"b{i}", e, batch=("B", 6)), i % 2, offset=i))
            for i, e in enumerate(eps)
        ]
    )
    # Partition 0 committed, partition 1 did not; after a restart only partition
    # 1's items come back and the batch can never fill again.
    for i in (0, 2, 4):
        backend.commit(0, i, outs[i])
    fresh, _ = make_stage(backend, mode="batch", rule="normalization", budget_fraction=0.3)
    again = [
        await fresh.process(
            envelope(critique("t", f"b{i}", eps[i], batch=("B", 6)), partition=1, offset=i)
        )
        for i in (1, 3, 5)
    ]
    for i, o in zip((1, 3, 5), again, strict=True):
        assert decision_of(o).delta == decision_of(outs[i]).delta
        assert decision_of(o).pi == decision_of(outs[i]).pi


async def test_batch_limits_fail_clearly() -> None:
    stage, _ = make_stage(mode="batch", max_batch=5, batch_timeout_s=0.2)
    with pytest.raises(PermanentError, match="max_batch"):
        await stage.process(envelope(critique("t", "x", 0.1, batch=("big", 6))))
    with pytest.raises(PermanentError, match=r"needs Item\.batch"):
        await stage.process(envelope(critique("t", "y", 0.1), offset=1))
    waiting = [
        asyncio.create_task(
            stage.process(envelope(critique("t", f"s{i}", 0.1, batch=("short", 5)), offset=2 + i))
        )
        for i in range(3)
    ]
    for t in waiting:
        with pytest.raises(PermanentError, match="3 of 5 critiques arrived"):
            await t


# ---------------------------------------------------------------- settings


def test_settings_bound_the_batch_by_the_runner_limits() -> None:
    with pytest.raises(ValidationError, match="max_batch"):
        SamplerSettings(metrics_port=0, max_batch=300, max_in_flight=256)
    assert SamplerSettings(metrics_port=0, max_batch=300, max_in_flight=300).max_batch == 300


async def test_tasks_from_a_task_source_set_the_budget_and_reach_the_gateway() -> None:
    strict = task_pb2.Task(task_id="strict", name="strict task")
    strict.labels.add(index=0, name="ok")
    strict.labels.add(index=1, name="violence")
    strict.budget.fraction = 0.5
    strict.budget.window_items = 10
    strict.sampling.rule = common_pb2.SAMPLING_RULE_THRESHOLD
    stage = SamplerStage(
        SamplerSettings(metrics_port=0, budget_fraction=0.01),
        backend=FakeBackend(),
        tasks=StaticTaskSource([strict]),
    )
    outs = [
        await stage.process(envelope(critique("strict", f"s{i}", (i % 10) / 10), offset=i))
        for i in range(20)
    ]
    requests = [o[0].value for o in outs if o[0].topic == "review_requests"]
    assert len(requests) == 10  # the task's 50%, not the settings' 1%
    for r in requests:
        assert isinstance(r, review_pb2.ReviewRequest)
        assert r.task == strict and r.decision.budget_fraction == 0.5
    with pytest.raises(TaskNotFoundError):  # retryable: the task may not be published yet
        await stage.process(envelope(critique("unknown", "u", 0.5), offset=20))

    broken = task_pb2.Task(task_id="broken")
    broken.budget.fraction = 1.5
    stage = SamplerStage(
        SamplerSettings(metrics_port=0), backend=FakeBackend(), tasks=StaticTaskSource([broken])
    )
    with pytest.raises(PermanentError, match="outside"):  # dead-lettered at once
        await stage.process(envelope(critique("broken", "b", 0.5)))


def test_task_proto_resolves_over_defaults() -> None:
    defaults = TaskSampling.from_settings(SamplerSettings(metrics_port=0))
    task = task_pb2.Task(task_id="t")
    assert TaskSampling.from_task(task, defaults) == TaskSampling(
        rule=defaults.rule, mode=defaults.mode, budget_fraction=defaults.budget_fraction,
        alpha_method=defaults.alpha_method, window_items=defaults.window_items,
    )  # fmt: skip
    task.budget.fraction = 0.2
    task.budget.hard_cap = 500
    task.sampling.rule = common_pb2.SAMPLING_RULE_EXPONENTIAL
    task.sampling.mode = common_pb2.SAMPLING_MODE_BATCH
    task.sampling.beta = 100.0
    task.sampling.pi_min = 0.01
    task.sampling.seed = 9
    got = TaskSampling.from_task(task, defaults)
    assert (got.rule, got.mode, got.budget_fraction, got.hard_cap) == (
        Rule.EXPONENTIAL,
        "batch",
        0.2,
        500,
    )
    assert (got.beta, got.pi_min, got.seed, got.alpha, got.tau) == (100.0, 0.01, 9, None, None)
