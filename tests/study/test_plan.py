"""Sizing the run from measured speeds, and the grid's pairs."""

from __future__ import annotations

import pytest

from services.study.plan import (
    CRITIC_STRATEGIES,
    CallKey,
    StudyConfig,
    chunk_fits,
    critique_pairs,
    seconds_per_item,
    size_run,
)


def _speeds(config: StudyConfig, annotate: float, critique: float) -> dict[CallKey, float]:
    out = {
        CallKey("annotate", m, a): annotate
        for m in config.profiles
        for a in config.annotation_strategies
    }
    out.update(
        {
            CallKey("critique", m, c): critique
            for m in config.profiles
            for c in config.critic_strategies
        }
    )
    return out


def test_seconds_per_item_counts_every_cell_of_the_grid() -> None:
    config = StudyConfig()
    # 3 models x (2 annotations x 1 s + 7 strategies x 1 annotator x 2 s) = 48 s.
    assert seconds_per_item(config, _speeds(config, 1.0, 2.0)) == pytest.approx(48.0)
    every = StudyConfig(pairs="all")
    # Each critic judges all 3 models' labels: 3 x (2 + 7 x 3 x 2) = 132 s.
    assert seconds_per_item(every, _speeds(every, 1.0, 2.0)) == pytest.approx(132.0)


def test_size_run_takes_the_largest_subset_that_fits_the_budget() -> None:
    config = StudyConfig(budget_minutes=10.0, calibration_items=3)
    speeds = _speeds(config, 1.0, 2.0)  # 48 s per item, 42 s of it critiques
    sizing = size_run(config, speeds, elapsed_s=100.0, overhead_s=20.0, available=6000)
    # 600 s budget - 100 elapsed - 20 overhead - 3 x 42 calibration critiques = 354 s
    # left -> floor(354 / 48) = 7 more items beyond the 3 calibration items.
    assert sizing.n_items == 10
    assert sizing.projected_s <= sizing.budget_s
    assert sizing.projected_s + 48.0 > sizing.budget_s  # one more item would not fit
    assert "10 items fit" in sizing.reason


def test_size_run_keeps_the_calibration_items_when_nothing_else_fits() -> None:
    config = StudyConfig(budget_minutes=1.0, calibration_items=3)
    sizing = size_run(
        config, _speeds(config, 5.0, 5.0), elapsed_s=300.0, overhead_s=0.0, available=6000
    )
    assert sizing.n_items == 3
    assert "over the" in sizing.reason


def test_items_override_and_the_pool_size_cap() -> None:
    config = StudyConfig(items=40)
    speeds = _speeds(config, 1.0, 1.0)
    fixed = size_run(config, speeds, elapsed_s=0.0, overhead_s=0.0, available=6000)
    assert fixed.n_items == 40 and "--items" in fixed.reason
    huge = StudyConfig(budget_minutes=10_000.0)
    capped = size_run(huge, _speeds(huge, 0.1, 0.1), elapsed_s=0, overhead_s=0, available=25)
    assert capped.n_items == 25


def test_pairs_are_self_and_cross_criticism_of_the_base_or_of_everyone() -> None:
    assert critique_pairs(StudyConfig(), "qwen-1.5b") == [
        ("qwen-1.5b", "smollm2"),
        ("qwen-1.5b", "qwen-0.5b"),
        ("qwen-1.5b", "qwen-1.5b"),
    ]
    assert len(critique_pairs(StudyConfig(pairs="all"), "qwen-1.5b")) == 9


def test_config_refuses_unknown_strategies_and_models() -> None:
    assert len(CRITIC_STRATEGIES) == 7
    assert sum(s.white_box for s in CRITIC_STRATEGIES.values()) == 3
    with pytest.raises(ValueError):
        StudyConfig(critic_strategies=("nope",))
    with pytest.raises(ValueError):
        StudyConfig(base_model="gpt-4o")


def test_a_chunk_is_started_only_if_it_ends_inside_the_budget() -> None:
    # 6,000 s budget, 120 s reserve: at 5,000 s elapsed 5 items x 150 s end at 5,870 s.
    assert chunk_fits(5000.0, 5, 150.0, 6000.0, 120.0)
    # With measured 200 s per item they would end at 6,120 s: not started.
    assert not chunk_fits(5000.0, 5, 200.0, 6000.0, 120.0)
