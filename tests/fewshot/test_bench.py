"""The few-shot benchmark functions (wired into `make bench`), on subsets."""

from __future__ import annotations

import pytest

from services.fewshot.bench import bench_fewshot


@pytest.mark.parametrize("dataset", ["fashion", pytest.param("spam", marks=pytest.mark.slow)])
def test_critic_beats_random_and_oracle_bounds_it(dataset: str):
    metrics = bench_fewshot(dataset, 400)
    assert set(metrics) == {
        f"fewshot_annotator_accuracy_{dataset}",
        f"fewshot_critic_abs_{dataset}",
        f"random_critic_abs_{dataset}",
        f"oracle_critic_abs_{dataset}",
    }
    critic = metrics[f"fewshot_critic_abs_{dataset}"]
    random = metrics[f"random_critic_abs_{dataset}"]
    assert random == pytest.approx(0.5, abs=0.05)
    assert critic > random + 0.15
    assert critic <= metrics[f"oracle_critic_abs_{dataset}"] <= 1.0
    assert metrics[f"fewshot_annotator_accuracy_{dataset}"] > 0.7


def test_unknown_dataset():
    with pytest.raises(ValueError, match="unknown bench data set"):
        bench_fewshot("cifar", 10)
