"""The sampler stage without a broker: outputs, ordering, partition state, batches.

Records go in through :class:`~tests.support.harness.StageHarness`; the
runner's side (partition hooks, committed changelog, commits of a prefix) is
played by :class:`~tests.support.harness.MemoryRuntime`.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterable, Sequence

import pytest
from act.v1 import common_pb2, critique_pb2, dlq_pb2, review_pb2, sampling_pb2, task_pb2

from services.core.batch import BatchSummary
from services.core.sampling import Rule, bernoulli_draw
from services.runtime.retry import PermanentError
from services.runtime.stage import Output
from services.runtime.tasks import StaticTaskSource, TaskNotFoundError
from services.sampler.ordering import OrderedExecutor
from services.sampler.service import SamplerSettings, SamplerStage, SamplingParams, request_id
from services.trainer.sampling import sample_reviews
from tests.support.harness import MemoryRuntime, StageHarness

from .support import critique


def make_stage(**settings: object) -> SamplerStage:
    base: dict[str, object] = {
        "metrics_port": 0, "budget_fraction": 0.1, "window_items": 100, "rule": "normalization",
    }  # fmt: skip
    base.update(settings)
    return SamplerStage(SamplerSettings(**base))  # type: ignore[arg-type]


class FlakyTasks:
    """A task source whose lookup of ``task_id`` fails ``failures`` times (a broker hiccup)."""

    def __init__(self, task_id: str, failures: int = 1) -> None:
        self.task_id = task_id
        self.failures = failures
        self.defaults = task_pb2.Task(task_id=task_id)

    async def get(self, task_id: str) -> task_pb2.Task:
        if task_id == self.task_id and self.failures:
            self.failures -= 1
            raise ConnectionError("broker unavailable")
        return task_pb2.Task(task_id=task_id)


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
    stage = make_stage(rule="threshold", seed=5, pi_min=0.0)
    low = await StageHarness(stage).process(critique("task", "a", 0.0, label=3), offset=0)
    assert [o.topic for o in low] == ["labels"]  # the state goes with the commit:
    (write,) = stage.changelog(0, 0)
    assert (write.topic, write.key, write.partition) == ("sampler_state", "task:0", 0)
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
        await StageHarness(stage).process(critique("task", f"x{i}", 0.01), offset=i)
    high = await StageHarness(stage).process(critique("task", "z", 0.99), offset=50)
    request = high[0].value
    assert high[0].topic == "review_requests" and isinstance(request, review_pb2.ReviewRequest)
    assert request.request_id == request_id("task", "z")
    assert request.decision.delta and request.decision.pi == 1.0
    assert request.priority == 990_000 and request.HasField("requested_at")


async def test_invalid_critiques_fail_permanently() -> None:
    stage = make_stage(rule="normalization")
    with pytest.raises(PermanentError, match="outside"):
        await StageHarness(stage).process(critique("task", "a", 1.5), offset=0)
    with pytest.raises(PermanentError, match="task_id"):
        await StageHarness(stage).process(critique("", "b", 0.5), offset=1)
    perplexity = critique("task", "c", 0.5)
    perplexity.strategy = common_pb2.CRITIQUE_STRATEGY_COT_PERPLEXITY
    with pytest.raises(PermanentError, match="only the threshold"):
        await StageHarness(stage).process(perplexity, offset=2)
    # The partition is not blocked by them.
    ok = await StageHarness(stage).process(critique("task", "d", 0.5), offset=3)
    assert ok[0].topic in ("labels", "review_requests")


# --------------------------------------------------------------- ordering


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


async def test_records_decide_in_offset_order_across_a_failed_record() -> None:
    stage = make_stage(rule="normalization", seed=1)
    stage.tasks = FlakyTasks("t", failures=0)
    eps = [0.1, 0.9, 0.2, 0.8, 0.3, 0.7]
    await StageHarness(stage).process(critique("t", "i0", eps[0]), offset=0)
    stage.tasks.failures = 1  # the record at offset 5 (after a gap) fails once
    first = asyncio.create_task(StageHarness(stage).process(critique("t", "i1", eps[1]), offset=5))
    rest = [
        asyncio.create_task(
            StageHarness(stage).process(critique("t", f"i{k}", eps[k]), offset=5 + k)
        )
        for k in range(2, 6)
    ]
    with pytest.raises(ConnectionError):
        await first
    await asyncio.sleep(0.01)
    assert not any(t.done() for t in rest)  # nobody overtakes the failed record
    retried = await StageHarness(stage).process(critique("t", "i1", eps[1]), offset=5, attempt=2)
    outs = [retried] + [await t for t in rest]
    # Same decisions as an uninterrupted run in offset order.
    ref_stage = make_stage(rule="normalization", seed=1)
    ref_stage.tasks = FlakyTasks("t", failures=0)
    ref = [
        await StageHarness(ref_stage).process(critique("t", f"i{k}", e), offset=k)
        for k, e in enumerate(eps)
    ]
    assert [decision_of(o).pi for o in outs] == [decision_of(o).pi for o in ref[1:]]


# ------------------------------------------------- partition state, changelog


def items(offsets: Iterable[int], task: str = "t") -> list[tuple[int, critique_pb2.Critique]]:
    return [(i, critique(task, f"item{i}", (i * 37 % 100) / 100)) for i in offsets]


def committed_state(rt: MemoryRuntime, key: str, partition: int = 0) -> sampling_pb2.SamplerState:
    return sampling_pb2.SamplerState.FromString(rt.changelogs[partition][key])


async def test_changelog_of_a_prefix_is_the_state_after_exactly_that_prefix() -> None:
    stage = make_stage(rule="exponential")
    for i, c in items(range(10)):
        await StageHarness(stage).process(c, offset=i)
    # Decided up to 9; the runner commits the finished prefix up to 4 only.
    writes = stage.changelog(0, 4)
    again = stage.changelog(0, 4)  # a failed transaction asks again: same answer
    ref = make_stage(rule="exponential")
    for i, c in items(range(5)):
        await StageHarness(ref).process(c, offset=i)
    (want,) = ref.changelog(0, 4)
    for w in (writes, again):
        (got,) = w
        assert isinstance(got.value, sampling_pb2.SamplerState)
        assert isinstance(want.value, sampling_pb2.SamplerState)
        got.value.ClearField("updated_at")
        want.value.ClearField("updated_at")
        assert got.value == want.value and got.value.seen == 5
    stage.on_committed(0, 4)
    (rest,) = stage.changelog(0, 9)
    assert isinstance(rest.value, sampling_pb2.SamplerState) and rest.value.seen == 10
    stage.on_committed(0, 9)
    assert stage.changelog(0, 9) == []  # nothing decided since: nothing to write


async def test_restart_resumes_from_the_committed_changelog_exactly() -> None:
    ref_rt = MemoryRuntime()
    ref_stage = make_stage(rule="exponential")
    await ref_rt.assign(ref_stage, 0)
    reference = await ref_rt.feed(ref_stage, items(range(300)), commit_every=7)

    rt = MemoryRuntime()
    stage = make_stage(rule="exponential")
    await rt.assign(stage, 0)
    await rt.feed(stage, items(range(170)), commit_every=7)
    # Decided past the commit, never committed: the process dies here.
    await rt.feed(stage, items(range(170, 190)), commit_every=None)
    assert rt.committed[0] == 170
    stage2 = make_stage(rule="exponential")  # a new process: nothing but the changelog
    await rt.assign(stage2, 0)
    resumed = await rt.feed(stage2, items(range(170, 300)), commit_every=7)
    assert [decision_of(o).pi for o in resumed] == [decision_of(o).pi for o in reference[170:]]
    assert [decision_of(o).delta for o in resumed] == [
        decision_of(o).delta for o in reference[170:]
    ]
    assert committed_state(rt, "t:0") == committed_state(ref_rt, "t:0") or (
        committed_state(rt, "t:0").seen == committed_state(ref_rt, "t:0").seen == 300
    )


async def test_uncommitted_decisions_are_not_counted() -> None:
    rt = MemoryRuntime()
    stage = make_stage()
    await rt.assign(stage, 0)
    await rt.feed(stage, items(range(40)))
    # Offsets 40..59 are decided but their transaction never commits ...
    lost = await rt.feed(stage, items(range(40, 60)), commit_every=None)
    # ... the runner hands the partition back (revoke, assign) and re-delivers from 40:
    await rt.revoke(stage, 0)
    await rt.assign(stage, 0)
    again = await rt.feed(stage, items(range(40, 60)))
    assert [decision_of(o).pi for o in again] == [decision_of(o).pi for o in lost]
    latest = committed_state(rt, "t:0")
    assert latest.seen == 60 and latest.committed_offset == 60


async def test_a_reassigned_partition_continues_from_the_other_owners_commits() -> None:
    rt = MemoryRuntime()
    stage = make_stage()
    await rt.assign(stage, 0)
    await rt.feed(stage, items(range(30)))
    # Transaction markers leave gaps: nothing to tell apart any more.
    await rt.feed(stage, items(range(32, 40)))
    # A rebalance: another replica owns the partition and commits 40..99 ...
    await rt.revoke(stage, 0)
    other = make_stage()
    await rt.assign(other, 0)
    await rt.feed(other, items(range(40, 100)), commit_every=9)
    await rt.revoke(other, 0)
    # ... and gives it back: this process resumes from the changelog.
    await rt.assign(stage, 0)
    out = await rt.feed(stage, items(range(105, 110)))
    ref_stage = make_stage()
    ref = [
        await StageHarness(ref_stage).process(c, offset=i)
        for i, c in items([*range(30), *range(32, 100), *range(105, 110)])
    ]
    assert [decision_of(o).pi for o in out] == [decision_of(o).pi for o in ref[-5:]]


async def test_a_record_abandoned_in_its_retry_backoff_does_not_block_the_next_owner() -> None:
    rt = MemoryRuntime()
    stage = make_stage(rule="normalization")
    stage.tasks = FlakyTasks("u")
    await rt.assign(stage, 0)
    await rt.feed(stage, items(range(10)))
    # Record 10 (a new task) fails; the runner would retry it ...
    with pytest.raises(ConnectionError):
        await StageHarness(stage).process(critique("u", "u10", 0.5), offset=10)
    # ... but the partition is revoked during the backoff and another replica
    # decides 10..59. When the partition comes back, record 60 must not wait
    # behind the abandoned place of record 10.
    await rt.revoke(stage, 0)
    other = make_stage(rule="normalization")
    await rt.assign(other, 0)
    out10 = await StageHarness(other).process(critique("u", "u10", 0.5), offset=10)
    rt.commit(other, 0, 10, out10)
    await rt.feed(other, items(range(11, 60)))
    await rt.revoke(other, 0)
    await rt.assign(stage, 0)
    out = await asyncio.wait_for(rt.feed(stage, items(range(60, 65))), timeout=5)
    ref_stage = make_stage(rule="normalization")
    ref = [await StageHarness(ref_stage).process(c, offset=i) for i, c in items(range(10))]
    await StageHarness(ref_stage).process(critique("u", "u10", 0.5), offset=10)
    ref = [await StageHarness(ref_stage).process(c, offset=i) for i, c in items(range(11, 65))]
    assert [decision_of(o).pi for o in out] == [decision_of(o).pi for o in ref[-5:]]


async def test_a_retry_of_a_decided_record_gets_the_same_decision_counted_once() -> None:
    stage = make_stage()
    for i, c in items(range(5)):
        await StageHarness(stage).process(c, offset=i)
    # The handler timed out after the decision was made; the runner retries it.
    retried = await StageHarness(stage).process(items([4])[0][1], offset=4, attempt=2)
    (write,) = stage.changelog(0, 4)
    assert isinstance(write.value, sampling_pb2.SamplerState) and write.value.seen == 5
    assert decision_of(retried).critique.annotation.item.item_id == "item4"


async def test_work_of_a_revoked_partition_does_not_touch_the_next_ownership() -> None:
    rt = MemoryRuntime()
    stage = make_stage()
    stage.tasks = FlakyTasks("t", failures=0)
    gate = asyncio.Event()
    original = stage.tasks.get

    async def slow(task_id: str) -> task_pb2.Task:
        await gate.wait()
        return await original(task_id)

    await rt.assign(stage, 0)
    stage.tasks.get = slow  # type: ignore[method-assign]
    stuck = asyncio.create_task(StageHarness(stage).process(items([0])[0][1], offset=0))
    queued = asyncio.create_task(StageHarness(stage).process(items([1])[0][1], offset=1))
    await asyncio.sleep(0.01)
    # The runner cancels the partition's handlers (one is stuck in its task
    # lookup), calls on_revoked, and later gets the partition back.
    queued.cancel()
    await rt.revoke(stage, 0)
    await rt.assign(stage, 0)
    stage.tasks.get = original  # type: ignore[method-assign]
    out = await rt.feed(stage, items(range(3)))
    gate.set()
    await asyncio.gather(stuck, queued, return_exceptions=True)
    ref_stage = make_stage()
    ref_stage.tasks = FlakyTasks("t", failures=0)
    ref = [await StageHarness(ref_stage).process(c, offset=i) for i, c in items(range(3))]
    assert [decision_of(o).pi for o in out] == [decision_of(o).pi for o in ref]
    assert committed_state(rt, "t:0").seen == 3
    assert stage.changelog(0, 10) == []  # the stale decision left nothing behind


async def test_hard_cap_is_split_over_partitions() -> None:
    rt = MemoryRuntime(input_partitions=4)
    stage = make_stage(hard_cap=10, budget_fraction=1.0)  # 4 partitions: 3+3+2+2
    await rt.assign(stage, 0, 1, 2, 3)
    reviewed = {}
    for p in range(4):
        msgs = [(i, critique("t", f"item{i}", 0.9)) for i in range(20)]
        outs = await rt.feed(stage, msgs, partition=p)
        reviewed[p] = sum(o[0].topic == "review_requests" for o in outs)
    assert reviewed == {0: 3, 1: 3, 2: 2, 3: 2}


# ----------------------------------------------------------------- batches


def _decisions(outputs: Iterable[Output]) -> dict[str, sampling_pb2.SamplingDecision]:
    """item id -> decision, from review requests and labels (each item at most once)."""
    out: dict[str, sampling_pb2.SamplingDecision] = {}
    for o in outputs:
        if o.topic in ("review_requests", "labels"):
            assert isinstance(o.value, review_pb2.ReviewRequest | review_pb2.FinalLabel)
            item_id = o.value.decision.critique.annotation.item.item_id
            assert item_id not in out, f"{item_id} decided twice"
            out[item_id] = o.value.decision
    return out


async def _accept(
    rt: MemoryRuntime, stage: SamplerStage, eps: Sequence[float], batch: tuple[str, int]
) -> list[Sequence[Output]]:
    """Feed the batch's critiques over partitions 0 and 1 (b<i> on partition i % 2),
    committing each record."""
    outs = []
    for i, e in enumerate(eps):
        (out,) = await rt.feed(
            stage, [(i // 2, critique("t", f"b{i}", e, batch=batch))], partition=i % 2
        )
        outs.append(out)
    return outs


async def test_batch_items_are_accepted_at_once_and_decided_when_all_are_committed() -> None:
    rt = MemoryRuntime()
    stage = make_stage(mode="batch", rule="threshold", budget_fraction=0.2)
    await rt.assign(stage, 0, 1)
    eps = [0.05, 0.9, 0.1, 0.8, 0.2, 0.3, 0.15, 0.01, 0.7, 0.02]
    outs = await _accept(rt, stage, eps[:-1], ("B1", 10))
    # Nothing waits: each record's only output is its entry in its partition's changelog.
    for i, out in enumerate(outs):
        (entry,) = out
        assert (entry.topic, entry.key, entry.partition) == (
            "sampler_state",
            f"batchm:t:B1:b{i}",
            i % 2,
        )
    assert rt.flush(stage) == [] and stage.batches.open_batches == 1
    assert sum(k.startswith("batchm:") for log in rt.changelogs.values() for k in log) == 9

    (last,) = await rt.feed(
        stage, [(4, critique("t", "b9", eps[-1], batch=("B1", 10)))], partition=1
    )
    assert [o.topic for o in last] == ["sampler_state"]
    decided = _decisions(rt.flush(stage))  # both partitions write their members' decisions
    assert set(decided) == {f"b{i}" for i in range(10)}
    assert {i for i, d in decided.items() if d.delta} == {"b1", "b3"}  # B = 2: the top two eps
    assert all(
        d.mode == common_pb2.SAMPLING_MODE_BATCH and d.window_id == "B1" for d in decided.values()
    )
    for p in (0, 1):  # entries gone, the summary in both changelogs
        log = rt.changelogs[p]
        assert not any(k.startswith("batchm:") for k in log)
        summary = BatchSummary.from_bytes(
            sampling_pb2.SamplerState.FromString(log["batch:t:B1"]).quantile_sketch
        )
        assert (summary.n, summary.budget, summary.selected, summary.rule) == (
            10,
            2,
            2,
            Rule.THRESHOLD,
        )
    assert rt.flush(stage) == [] and stage.batches.open_batches == 0
    # An item of the decided batch ingested again is decided at once, the same way.
    again = await StageHarness(stage).process(
        critique("t", "b1", eps[1], batch=("B1", 10)), offset=9
    )
    assert decision_of(again).delta and decision_of(again).pi == decided["b1"].pi


async def test_a_batch_larger_than_the_runners_limits_is_decided() -> None:
    rt = MemoryRuntime()
    stage = make_stage(
        mode="batch", rule="normalization", budget_fraction=0.1, max_in_flight=8, max_buffered=8
    )
    await rt.assign(stage, 0, 1)
    eps = [((i * 37) % 100) / 100 for i in range(50)]
    await _accept(rt, stage, eps, ("big", 50))
    decided = _decisions(rt.flush(stage))
    assert len(decided) == 50 and sum(d.delta for d in decided.values()) <= 5


@pytest.mark.parametrize("crash", ["before_decision", "between_partitions"])
async def test_a_batch_survives_a_crash_at_any_point_exactly_once(crash: str) -> None:
    """Restart from the committed changelogs: every item is decided once, as without the crash."""
    eps = [0.1, 0.9, 0.2, 0.8, 0.3, 0.7]
    ref_rt = MemoryRuntime()
    ref = make_stage(mode="batch", rule="normalization", budget_fraction=0.3)
    await ref_rt.assign(ref, 0, 1)
    await _accept(ref_rt, ref, eps, ("B", 6))
    reference = _decisions(ref_rt.flush(ref))

    rt = MemoryRuntime()
    stage = make_stage(mode="batch", rule="normalization", budget_fraction=0.3)
    await rt.assign(stage, 0, 1)
    await _accept(rt, stage, eps, ("B", 6))
    before: list[Output] = []
    if crash == "between_partitions":
        # Partition 0 wrote its members' decisions; the process died before partition 1's.
        rt.requested.discard(1)
        before = rt.flush(stage)
        assert set(_decisions(before)) == {"b0", "b2", "b4"}
    rt.requested.clear()  # the process dies: what it asked for dies with it
    fresh = make_stage(mode="batch", rule="normalization", budget_fraction=0.3)
    await rt.assign(fresh, 0, 1)
    after = rt.flush(fresh)
    decided = _decisions([*before, *after])  # raises on a second decision of an item
    assert set(decided) == set(reference)
    for item_id, d in reference.items():
        assert (decided[item_id].delta, decided[item_id].pi) == (d.delta, d.pi)


async def test_members_are_decided_only_once_committed() -> None:
    rt = MemoryRuntime()
    stage = make_stage(mode="batch", rule="threshold", budget_fraction=0.5)
    await rt.assign(stage, 0, 1)
    h = StageHarness(stage)
    first = await h.process(critique("t", "a", 0.9, batch=("B", 2)), partition=0, offset=0)
    second = await h.process(critique("t", "b", 0.1, batch=("B", 2)), partition=1, offset=0)
    rt.commit(stage, 0, 0, first)
    assert rt.flush(stage) == []  # b's record is not committed: it could go to another owner
    rt.commit(stage, 1, 0, second)
    assert set(_decisions(rt.flush(stage))) == {"a", "b"}


@pytest.mark.parametrize("rule", ["normalization", "exponential", "threshold"])
async def test_offline_draws_are_the_batch_modes_with_the_same_params(rule: str) -> None:
    """One SamplingParams: the trainer's and experiments' draws are the sampler's decisions."""
    stage = make_stage(
        mode="batch", rule=rule, budget_fraction=0.3, seed=7, pi_min=0.02, alpha_method="quantile"
    )
    rt = MemoryRuntime()
    await rt.assign(stage, 0, 1)
    params = stage.settings.sampling_params()
    eps = [(i * 37 % 100) / 100 for i in range(40)]
    ids = [f"b{i}" for i in range(len(eps))]
    await _accept(rt, stage, eps, ("B", len(eps)))
    decided = _decisions(rt.flush(stage))
    offline = sample_reviews(eps, params, ids=ids, task_id="t")
    assert [decided[i].delta for i in ids] == offline.delta.tolist()
    assert [decided[i].pi for i in ids] == offline.pi.tolist()
    assert offline.params == params and offline.rule is Rule(rule)


async def test_batch_limits_fail_clearly() -> None:
    rt = MemoryRuntime()
    stage = make_stage(mode="batch", max_batch=5, batch_timeout_s=0.2)
    await rt.assign(stage, 0, 1)
    with pytest.raises(PermanentError, match="max_batch"):
        await StageHarness(stage).process(critique("t", "x", 0.1, batch=("big", 6)))
    with pytest.raises(PermanentError, match=r"needs Item\.batch"):
        await StageHarness(stage).process(critique("t", "y", 0.1), offset=1)
    await rt.feed(
        stage, [(2 + i, critique("t", f"s{i}", 0.1, batch=("short", 5))) for i in range(3)]
    )
    try:
        await asyncio.sleep(0.5)  # past the timeout: the expiry check fails the batch
        letters = rt.flush(stage)
    finally:
        await stage.stop()
    assert [o.topic for o in letters] == ["dlq"] * 3
    for o in letters:
        assert isinstance(o.value, dlq_pb2.DeadLetter)
        assert "3 of 5 critiques arrived" in o.value.error_message
        assert o.value.original_offset in (2, 3, 4) and o.value.original_value
    assert not any(k.startswith("batchm:") for k in rt.changelogs[0])
    with pytest.raises(PermanentError, match="3 of 5 critiques arrived"):  # a late item
        await StageHarness(stage).process(critique("t", "s3", 0.1, batch=("short", 5)), offset=5)


# ---------------------------------------------------------------- settings


def test_batch_size_no_longer_depends_on_the_runners_limits() -> None:
    settings = SamplerSettings(metrics_port=0, max_batch=50_000, max_in_flight=256)
    assert settings.max_batch > settings.max_in_flight


async def test_tasks_from_a_task_source_set_the_budget_and_reach_the_gateway() -> None:
    strict = task_pb2.Task(task_id="strict", name="strict task")
    strict.labels.add(index=0, name="ok")
    strict.labels.add(index=1, name="violence")
    strict.budget.fraction = 0.5
    strict.budget.window_items = 10
    strict.sampling.rule = common_pb2.SAMPLING_RULE_THRESHOLD
    stage = SamplerStage(
        SamplerSettings(metrics_port=0, budget_fraction=0.01),
        tasks=StaticTaskSource([strict]),
    )
    outs = [
        await StageHarness(stage).process(critique("strict", f"s{i}", (i % 10) / 10), offset=i)
        for i in range(20)
    ]
    requests = [o[0].value for o in outs if o[0].topic == "review_requests"]
    assert len(requests) == 10  # the task's 50%, not the settings' 1%
    for r in requests:
        assert isinstance(r, review_pb2.ReviewRequest)
        assert r.task == strict and r.decision.budget_fraction == 0.5
    with pytest.raises(TaskNotFoundError):  # retryable: the task may not be published yet
        await StageHarness(stage).process(critique("unknown", "u", 0.5), offset=20)

    broken = task_pb2.Task(task_id="broken")
    broken.budget.fraction = 1.5
    stage = SamplerStage(SamplerSettings(metrics_port=0), tasks=StaticTaskSource([broken]))
    with pytest.raises(PermanentError, match="outside"):  # dead-lettered at once
        await StageHarness(stage).process(critique("broken", "b", 0.5))


def test_task_proto_resolves_over_defaults() -> None:
    defaults = SamplerSettings(metrics_port=0).sampling_params()
    task = task_pb2.Task(task_id="t")
    assert SamplingParams.from_task(task, defaults) == SamplingParams(
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
    got = SamplingParams.from_task(task, defaults)
    assert (got.rule, got.mode, got.budget_fraction, got.hard_cap) == (
        Rule.EXPONENTIAL,
        "batch",
        0.2,
        500,
    )
    assert (got.beta, got.pi_min, got.seed, got.alpha, got.tau) == (100.0, 0.01, 9, None, None)
