"""The per-task review policy (pure: no database, no broker)."""

from __future__ import annotations

import math

import pytest
from act.v1 import task_pb2

from services.review_gateway.policy import (
    DEFAULT_BREAK_AFTER_S,
    DEFAULT_DAILY_CAP_S,
    ReviewPolicy,
    validate_review_settings,
)


def make(*, names: tuple[str, ...] = ("ok", "gore", "nudity"), **review: object) -> task_pb2.Task:
    task = task_pb2.Task(task_id="t", name="t")
    for index, name in enumerate(names):
        task.labels.add(index=index, name=name)
    if review:
        task.review.CopyFrom(task_pb2.ReviewSettings(**review))  # type: ignore[arg-type]
    return task


def test_absent_settings_mean_every_default():
    task = make()
    assert validate_review_settings(task) == []
    policy = ReviewPolicy.from_task(task)
    assert policy == ReviewPolicy()
    assert policy.sensitive_labels == frozenset()
    assert not policy.show_machine_label and not policy.show_critique
    assert policy.overlap_fraction == 0.0
    assert (policy.break_after_s, policy.daily_cap_s) == (
        DEFAULT_BREAK_AFTER_S,
        DEFAULT_DAILY_CAP_S,
    )
    assert (DEFAULT_BREAK_AFTER_S, DEFAULT_DAILY_CAP_S) == (1200, 7200)
    assert not policy.is_sensitive(0)


def test_settings_are_carried_over():
    task = make(
        sensitive_labels=[2, 1, 2],
        show_machine_label=True,
        show_critique=True,
        overlap_fraction=0.25,
        exposure_break_after_s=600,
        exposure_daily_cap_s=3600,
    )
    assert validate_review_settings(task) == []
    policy = ReviewPolicy.from_task(task)
    assert policy.sensitive_labels == frozenset({1, 2})
    assert policy.is_sensitive(1) and policy.is_sensitive(2) and not policy.is_sensitive(0)
    assert not policy.is_sensitive(7)
    assert policy.show_machine_label and policy.show_critique
    assert policy.overlap_fraction == 0.25
    assert (policy.break_after_s, policy.daily_cap_s) == (600, 3600)


def test_zero_limits_take_the_server_defaults():
    task = make(exposure_break_after_s=0, exposure_daily_cap_s=0)
    policy = ReviewPolicy.from_task(task, default_break_after_s=300, default_daily_cap_s=900)
    assert (policy.break_after_s, policy.daily_cap_s) == (300, 900)
    partly = ReviewPolicy.from_task(make(exposure_daily_cap_s=60), default_daily_cap_s=900)
    assert (partly.break_after_s, partly.daily_cap_s) == (DEFAULT_BREAK_AFTER_S, 60)


def test_the_policy_is_frozen_and_hashable():
    policy = ReviewPolicy.from_task(make(sensitive_labels=[1]))
    with pytest.raises(AttributeError):
        policy.show_critique = True  # type: ignore[misc]
    assert hash(policy) == hash(ReviewPolicy.from_task(make(sensitive_labels=[1])))


@pytest.mark.parametrize("index", [3, -1, 100])
def test_sensitive_labels_outside_the_label_set(index):
    task = make(sensitive_labels=[1, index])
    problems = validate_review_settings(task)
    assert problems == [
        f"review sensitive label index {index} is not a label of the task (expected 0 to 2)"
    ]
    with pytest.raises(ValueError, match=rf"\[{index}\] are outside its 3 labels"):
        ReviewPolicy.from_task(task)


def test_a_task_without_labels_has_no_valid_sensitive_label():
    (problem,) = validate_review_settings(make(names=(), sensitive_labels=[0]))
    assert "the task has no labels" in problem


@pytest.mark.parametrize(
    ("overlap", "clamped"), [(0.0, 0.0), (1.0, 1.0), (-0.5, 0.0), (1.5, 1.0), (1e-9, 1e-9)]
)
def test_overlap_fraction_is_validated_and_clamped(overlap, clamped):
    task = make(overlap_fraction=overlap)
    problems = validate_review_settings(task)
    assert (problems == []) == (0.0 <= overlap <= 1.0)
    if problems:
        assert problems == [f"review overlap_fraction must be in [0, 1], got {overlap:g}"]
    assert ReviewPolicy.from_task(task).overlap_fraction == clamped


@pytest.mark.parametrize("overlap", [math.nan, math.inf, -math.inf])
def test_non_finite_overlap_is_rejected(overlap):
    task = make(overlap_fraction=overlap)
    assert any("overlap_fraction" in p for p in validate_review_settings(task))
    with pytest.raises(ValueError, match="overlap_fraction"):
        ReviewPolicy.from_task(task)


@pytest.mark.parametrize("field", ["exposure_break_after_s", "exposure_daily_cap_s"])
def test_exposure_limits_must_be_within_a_day(field):
    def limited(seconds: int) -> task_pb2.Task:
        task = make()
        setattr(task.review, field, seconds)
        return task

    assert validate_review_settings(limited(86_400)) == []
    (too_long,) = validate_review_settings(limited(86_401))
    assert field in too_long and "86400" in too_long
    (negative,) = validate_review_settings(limited(-1))
    assert field in negative and "got -1" in negative
    with pytest.raises(ValueError, match=field):
        ReviewPolicy.from_task(limited(-1))


def test_every_problem_is_reported_together():
    task = make(sensitive_labels=[5], overlap_fraction=2.0, exposure_daily_cap_s=-5)
    assert len(validate_review_settings(task)) == 3
