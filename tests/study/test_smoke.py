"""One small end-to-end study against the real SmolLM2 server (~4 items)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from services.study.driver import records_path, run_study
from services.study.figures import FIG2, FIG3, FIG4
from services.study.plan import StudyConfig
from services.study.report import RunInfo, write_report


@pytest.mark.slow
def test_a_small_study_on_smollm2_records_every_call_and_writes_the_report(
    smollm2_base_url: str, tmp_path: Path
) -> None:
    config = StudyConfig(
        profiles=("smollm2",),
        critic_strategies=("naive", "cot", "naive-logit"),
        items=4,
        calibration_items=2,
        servers={"smollm2": smollm2_base_url},
        resamples=200,
    )
    messages: list[str] = []
    outcome = run_study(config, tmp_path / "state", messages.append)
    data = outcome.data
    assert len(data.item_ids) == 4 and outcome.sizing.n_items == 4
    assert set(data.labels) == {("smollm2", "naive"), ("smollm2", "cot")}
    for row in data.labels.values():
        assert row.shape == (4,) and set(row.tolist()) <= {-1, 0, 1}
    assert set(data.eps) == {("smollm2", "smollm2", s) for s in ("naive", "cot", "naive-logit")}
    for eps in data.eps.values():
        assert np.all((eps >= 0) & (eps <= 1))
    assert data.base_model == "smollm2"

    lines = [
        json.loads(x) for x in records_path(tmp_path / "state", config).read_text().splitlines()
    ]
    calls = [x for x in lines if x["kind"] == "call"]
    phases = [x for x in lines if x["kind"] == "phase"]
    # 4 items x 2 annotations; critiques of the labels that parsed, per strategy.
    assert sum(c["role"] == "annotate" for c in calls) == 8
    assert sum(c["role"] == "critique" for c in calls) <= 12
    good = [c for c in calls if not c["error"]]
    assert good and all(c["prompt_tokens"] > 0 and c["completion_tokens"] > 0 for c in good)
    assert all(c["latency_ms"] > 0 for c in good)
    assert {p["phase"] for p in phases} == {"calibration", "run"}
    assert all(p["wall_s"] > 0 and p["cache_hit_tokens"] is None for p in phases)
    # Progress messages never carry item text.
    assert not any("Subject" in m for m in messages)

    # A rerun resumes: every call is already recorded, none is made again.
    before = len(lines)
    run_study(config, tmp_path / "state", messages.append)
    after = records_path(tmp_path / "state", config).read_text().splitlines()
    failed = sum(1 for c in calls if c["error"])
    assert len(after) - before <= 2 * failed  # only failed calls (and their phase) again

    info = RunInfo(outcome.wall_s, outcome.sizing.reason, {"items": 4})
    out = write_report(data, info, tmp_path / "docs", resamples=200)
    text = out.read_text()
    assert "## The paper's seven insights here" in text
    for png in (FIG2, FIG3, FIG4):
        assert (tmp_path / "docs" / png).stat().st_size > 1000
