"""The main job's pure steps: which items stream, the budget guideline, the task, progress."""

from __future__ import annotations

import numpy as np
import pytest
from act.v1 import common_pb2

from services.core.metrics import recommended_budget
from services.demo import plan as steps
from services.demo.clients import describe_cleaning, describe_second_critic
from services.demo.progress import STAGES, Progress
from services.fewshot.pair import build_pair
from services.fewshot.pools import builtin_pool


@pytest.fixture(scope="module")
def spam():
    pool = builtin_pool("spam-assassin")
    return pool, build_pair(pool, per_class=8, seed=0)


def config(**kw) -> steps.DemoConfig:
    values = dict(dataset=steps.DATASETS["spam"], items=300, out=None, bootstrap="x:1",
                  database_url="postgresql://x")  # fmt: skip
    values.update(kw)
    return steps.DemoConfig(**values)


def test_streamed_items_avoid_the_seed_and_the_selection_set(spam) -> None:
    pool, pair = spam
    plan = steps.plan_items(pool, 300, 200, pair)
    seed = set(pair.selection.indices.tolist())
    assert len(plan.streamed) == 300 and len(plan.selection) == 200
    assert seed.isdisjoint(plan.streamed.tolist()) and seed.isdisjoint(plan.selection.tolist())
    assert set(plan.streamed.tolist()).isdisjoint(plan.selection.tolist())
    again = steps.plan_items(pool, 300, 200, pair)
    assert np.array_equal(plan.streamed, again.streamed)  # seeded: a rerun streams the same
    with pytest.raises(ValueError, match="outside the seed"):
        steps.plan_items(pool, len(pool), 1, pair)


def test_budget_guideline_is_error_rate_plus_ten_points(spam) -> None:
    pool, pair = spam
    plan = steps.plan_items(pool, 10, 300, pair)
    task = steps.make_task(config(), pool, budget=0.5)
    sel = steps.select_budget(pair, task, plan)
    assert 0.5 < sel.accuracy < 1.0
    assert sel.ideal_budget == pytest.approx(1.0 - sel.accuracy)
    assert sel.recommended_budget == pytest.approx(recommended_budget(sel.ideal_budget))
    assert sel.recommended_budget == pytest.approx(min(1.0, sel.ideal_budget + 0.10))
    assert sel.critic_abs > 0.5  # better than a random critic's expected 0.5


def test_task_names_the_fewshot_models_rule_and_budget(spam) -> None:
    pool, _ = spam
    task = steps.make_task(config(rule="threshold"), pool, budget=0.3)
    assert [label.name for label in task.labels] == list(pool.label_names)
    assert task.annotator_model.provider == "local-fewshot"
    assert task.annotator_model.params["dataset"] == "spam-assassin"
    assert task.sampling.rule == common_pb2.SAMPLING_RULE_THRESHOLD
    assert task.sampling.mode == common_pb2.SAMPLING_MODE_STREAMING
    assert task.budget.fraction == pytest.approx(0.3)


def test_progress_line_shows_every_stage() -> None:
    progress = Progress({s: i * 10 for i, s in enumerate(STAGES)}, 2, 7)
    line = progress.line(100, 3.0)
    for stage in STAGES:
        assert stage in line
    assert "trainer    40" in line and "reviews 7" in line and "dead letters 2" in line


def test_the_cleaning_line_says_what_the_fit_chose_and_why() -> None:
    scores = {
        "search/cleaning=none/lambda=1/val_accuracy": 0.81,
        "search/cleaning=none/lambda=0.6/val_accuracy": 0.84,
        "search/cleaning=agreement/lambda=1/val_accuracy": 0.88,
        "cleaning_dropped": 37.0,
    }
    applied = describe_cleaning({**scores, "cleaning_applied": 1.0})
    assert "dropped 37 unreviewed" in applied and "0.880 with the filter, 0.840 without" in applied
    kept = describe_cleaning({**scores, "cleaning_applied": 0.0})
    assert kept.startswith("label cleaning: kept every label")
    assert describe_cleaning({"cleaning_applied": 0.0, "cleaning_skipped": 1.0}).endswith(
        "(nothing to judge it on)"
    )
    assert describe_cleaning({"val_accuracy": 0.9}) == ""  # not an AUTO fit


def test_the_feedback_line_says_whether_the_sampler_uses_the_model_and_why() -> None:
    base = {"second_critic_fusion_reviews": 90.0}
    losses = {"second_critic_fusion_cv_log_loss": 0.31, "second_critic_critic_cv_log_loss": 0.42}
    on = describe_second_critic({**base, **losses, "second_critic_used": 1.0})
    assert on.startswith("feedback loop: on") and "0.310 fused, 0.420 for the critic" in on
    assert "90 validation reviews" in on
    no_gain = describe_second_critic({**base, **losses, "second_critic_used": 0.0})
    assert no_gain.startswith("feedback loop: off for now, no gain")
    assert "recalibrated" not in no_gain
    recalibrated = describe_second_critic(
        {**base, **losses, "second_critic_used": 0.0, "second_critic_calibrates_critic": 1.0}
    )
    assert recalibrated.endswith("the sampler uses the critic's eps recalibrated on them")
    few = describe_second_critic({**base, "second_critic_used": 0.0})
    assert "too few validation reviews" in few
    assert describe_second_critic({"val_accuracy": 0.9}).endswith("not published")
