"""Table 3 machinery on a small synthetic task: rows, gaps, report files, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from services.experiments.__main__ import parse_args
from services.experiments.methods import TableConfig
from services.experiments.report import write_report
from services.experiments.table import compute_table, table_result
from services.trainer.sampling import Rule, SamplingParams, sample_reviews
from tests.experiments.support import synthetic_annotations, synthetic_data

KEYS = (
    "gap_human_act_thre",
    "gap_human_act_exp",
    "gap_human_act_norm",
    "gap_human_machine",
    "budget",
    "annotator_accuracy",
)


def test_table_report_and_plots(tmp_path: Path) -> None:
    data = synthetic_data()
    ann = synthetic_annotations(data)
    cfg = TableConfig(
        epochs=2,
        lambdas=(0.6, 1.0),
        curve_budgets=(0.1, 0.5),
        curve_seeds=1,
        curve_methods=("act_thre",),
    )
    result = compute_table(data, ann, seeds=2, config=cfg)
    # The ideal budget is the annotator's error rate (section 5.2).
    assert result.budget == pytest.approx(1 - np.mean(ann.labels == data.train.labels))
    assert [m.key for m in result.methods] == [
        "human_only",
        "machine_only",
        "act_data_ce",
        "act_norm",
        "act_exp",
        "act_thre",
        "reviewed_only",
    ]
    table_runs = [r for r in result.runs if r.budget == result.budget]
    assert len(table_runs) == 2 * 7
    # Seed 0 searched lambda, seed 1 reused the choice.
    for key in ("act_norm", "act_exp", "act_thre"):
        s0, s1 = (r for r in table_runs if r.method == key)
        assert s0.searched and not s1.searched
        assert s0.power_lambda == s1.power_lambda and s0.power_lambda in (0.6, 1.0)
    # Thresholding reviews exactly B items; human-only "reviews" all of them.
    b_items = int(np.floor(result.budget * result.n_train + 1e-9))
    assert {r.reviewed for r in table_runs if r.method == "act_thre"} == {b_items}
    assert {r.reviewed for r in table_runs if r.method == "human_only"} == {result.n_train}
    assert {r.reviewed for r in table_runs if r.method == "machine_only"} == {0}
    assert len([r for r in result.runs if r.budget != result.budget]) == 2  # the curve
    summary = result.summary()
    for key in KEYS:
        assert f"fashion_{key}" in summary
    assert summary["fashion_gap_human_machine"] == pytest.approx(
        result.mean("human_only") - result.mean("machine_only")
    )
    assert summary["fashion_gap_human_reviewed_only"] == pytest.approx(
        result.mean("human_only") - result.mean("reviewed_only")
    )
    assert summary["fashion_budget"] == pytest.approx(100 * result.budget)
    paths = write_report(result, tmp_path / "fashion")
    text = paths["table"].read_text()
    assert "| Human only - Cross-entropy loss |" in text
    assert "| ACT data - ACT thre. loss (Ours) |" in text
    assert "ACT human budget (%)" in text and "±" in text
    for key in ("aqg_plot", "accuracy_plot"):
        assert paths[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert paths[key].stat().st_size > 10_000
    doc = json.loads(paths["results"].read_text())
    assert len(doc["runs"]) == len(result.runs)


def test_table_result_returns_the_bench_keys_and_writes_the_report(tmp_path: Path) -> None:
    data = synthetic_data(200)
    ann = synthetic_annotations(data)
    result = table_result(
        "fashion",
        seeds=2,
        budget=0.3,
        data=data,
        annotations=ann,
        config=TableConfig(epochs=1, lambdas=(1.0,), include_reviewed_only=False),
    )
    write_report(result, tmp_path / result.dataset)
    out = result.summary()
    for key in KEYS:
        assert np.isfinite(out[f"fashion_{key}"])
    assert "fashion_gap_human_reviewed_only" not in out  # not in this table: no number
    assert out["fashion_budget"] == pytest.approx(30.0)
    assert (tmp_path / "fashion" / "table.md").is_file()


def test_normalization_draws_independently_unless_trimmed() -> None:
    """Paper/active M-estimation: E[sum delta] = B; the service's trim enforces <= B."""
    eps = np.random.default_rng(0).beta(1, 4, 2000)
    budget = 0.05
    b = int(budget * eps.size)
    totals = [
        sample_reviews(eps, SamplingParams(Rule.NORMALIZATION, budget, seed=s), trim=False).reviewed
        for s in range(40)
    ]
    assert abs(np.mean(totals) - b) < 4 * np.sqrt(b / 40)
    assert max(totals) > b  # independent draws exceed B about half the time
    trimmed = [
        sample_reviews(eps, SamplingParams(Rule.NORMALIZATION, budget, seed=s)).reviewed
        for s in range(10)
    ]
    assert max(trimmed) <= b
    thre = sample_reviews(eps, SamplingParams(Rule.THRESHOLD, budget), trim=False)
    assert thre.reviewed == b and thre.min_pi_reviewed == 1.0


def test_cli_arguments() -> None:
    args = parse_args(
        [
            "--dataset",
            "fashion",
            "--dataset",
            "spam",
            "--seeds",
            "3",
            "--lambdas",
            "0.6,1.0",
            "--out",
            "x",
        ]
    )
    assert args.dataset == ["fashion", "spam"] and args.seeds == 3
    assert args.extra_rows is None
    rows = parse_args(["--dataset", "spam", "--extra-rows", "random_subset,act_thre_agree"])
    assert rows.extra_rows == ("random_subset", "act_thre_agree")
    assert parse_args(["--dataset", "spam", "--extra-rows", ""]).extra_rows == ()
    focused = parse_args(["--dataset", "spam", "--rows", "human_only,act_thre", "--betas", "10"])
    assert focused.rows == ("human_only", "act_thre") and focused.betas == (10.0,)
    assert args.lambdas == (0.6, 1.0) and args.out == Path("x")
