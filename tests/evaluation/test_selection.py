"""Model selection (paper, section 4.3): ranking, recommendation, budgets, report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from services.core.selection import render_report, select_models


def _labels_with_accuracy(human: np.ndarray, acc: float, rng: np.random.Generator) -> np.ndarray:
    out = human.copy()
    wrong = rng.choice(human.size, round((1 - acc) * human.size), replace=False)
    out[wrong] = (human[wrong] + 1) % 3
    return out


def test_best_annotates_second_best_criticises_and_budgets_follow():
    rng = np.random.default_rng(0)
    human = rng.integers(0, 3, 200)
    labels = {
        "mid": _labels_with_accuracy(human, 0.80, rng),
        "best": _labels_with_accuracy(human, 0.90, rng),
        "worst": _labels_with_accuracy(human, 0.70, rng),
    }
    eps = {
        ("best", "mid"): (labels["best"] != human) * 0.8 + rng.random(200) * 0.2,
        ("best", "best"): rng.random(200),
    }
    report = select_models(labels, human, eps)
    assert [c.name for c in report.candidates] == ["best", "mid", "worst"]
    assert report.annotator == "best" and report.critic == "mid"
    assert report.ideal_budget == pytest.approx(0.10)
    assert report.recommended_budget == pytest.approx(0.20)
    assert report.pairs[0].annotator == "best" and report.pairs[0].critic == "mid"
    assert report.recommended_pair_abs == pytest.approx(report.pairs[0].abs)
    assert not report.pairs[0].self_criticism and report.pairs[1].self_criticism
    text = render_report(report)
    assert "Recommended annotator:  best" in text
    assert "Recommended criticizer: mid" in text
    assert "Ideal budget:       10.00%" in text and "Recommended budget: 20.00%" in text
    payload = json.loads(json.dumps(report.to_dict()))
    assert payload["annotator"] == "best" and payload["pairs"][0]["self_criticism"] is False


def test_single_candidate_and_ties():
    human = np.array([0, 1, 1, 0])
    report = select_models({"only": np.array([0, 1, 0, 0])}, human)
    assert report.annotator == "only" and report.critic is None
    assert report.ideal_budget == pytest.approx(0.25)
    assert any("one candidate" in n for n in report.notes)
    tied = select_models({"a": human, "b": human}, human)
    assert (tied.annotator, tied.critic) == ("a", "b")  # ties keep the given order


def test_failures_count_as_wrong():
    human = np.array([0, 1, 1, 0])
    report = select_models(
        {"flaky": np.array([0, -1, -1, 0]), "steady": np.array([0, 1, 0, 0])},
        human,
        failures={"flaky": 2},
    )
    assert report.annotator == "steady"
    assert report.candidates[1].failures == 2
