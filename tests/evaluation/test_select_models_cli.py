"""`act select-models` end to end with few-shot candidates (no network)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.datasets import load_spam_assassin
from tests.cli.helpers import invoke


def test_recommends_the_most_accurate_image_model_as_annotator():
    result = invoke(
        [
            "select-models",
            "--dataset",
            "fashion-mnist",
            "--n",
            "300",
            "-c",
            "fewshot:centroid-pixels:3",
            "-c",
            "fewshot:logreg-pixels:30",
            "-c",
            "fewshot:knn-hog:10",
            "--json",
            "--quiet",
        ]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    accuracies = {c["name"]: c["accuracy"] for c in report["candidates"]}
    ranked = sorted(accuracies, key=lambda n: -accuracies[n])
    assert report["n_items"] == 300
    assert report["annotator"] == ranked[0]
    assert report["critic"] == ranked[1]
    assert report["ideal_budget"] == pytest.approx(1 - accuracies[ranked[0]])
    assert report["recommended_budget"] == pytest.approx(min(1, report["ideal_budget"] + 0.1))
    assert len(report["pairs"]) == 9  # every annotator x critic
    assert all(0.0 <= p["abs"] <= 1.0 for p in report["pairs"])
    # Seed-fit models score far above chance (10 classes).
    assert accuracies[ranked[0]] > 0.6


def test_labelled_jsonl_file_and_table_output(tmp_path: Path):
    records = [r for r in load_spam_assassin() if r.text.strip()][::30][:160]
    path = tmp_path / "labelled.jsonl"
    path.write_text(
        "".join(
            json.dumps({"id": r.id, "text": r.text, "label": ["ham", "spam"][r.label]}) + "\n"
            for r in records
        )
    )
    result = invoke(
        [
            "select-models",
            "--file",
            str(path),
            "--labels",
            "ham,spam",
            "-c",
            "fewshot:logreg-ngrams:8",
            "-c",
            "fewshot:centroid-ngrams:8",
            "--pairs",
            "recommended",
            "--quiet",
        ]
    )
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Annotation accuracy on 144 human-labelled items" in out  # 160 - 2 x 8 seed
    assert "Recommended annotator:" in out and "Recommended budget:" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-c", "fewshot:logreg-pixels"], "exactly one of --dataset and --file"),
        (["--dataset", "spam-assassin", "-c", "bogus"], "bad candidate"),
        (["--dataset", "spam-assassin", "-c", "fewshot:nope"], "unknown few-shot model"),
        (
            ["--dataset", "spam-assassin", "-c", "fewshot:logreg-pixels"],
            "is a model for image data",
        ),
        (["--dataset", "nope", "-c", "fewshot:logreg-pixels"], "no built-in labelled pool"),
    ],
)
def test_usage_errors(args: list[str], message: str):
    result = invoke(["select-models", *args])
    assert result.exit_code == 2
    assert message in result.output
