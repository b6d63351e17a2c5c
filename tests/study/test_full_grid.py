"""The whole grid, sized to a budget, against the OpenAI stand-in (deterministic answers).

SmolLM2 is too slow for three profiles x nine strategies in a test; the
fault server (no faults) answers every strategy's format at a fixed latency,
which is what sizing needs to be checked: calibration, projection, the run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.devkit.fault_server import spawn
from services.study.driver import run_study
from services.study.insights import HELD, INCONCLUSIVE, NOT_HELD, NOT_TESTABLE
from services.study.plan import CRITIC_STRATEGIES, PROFILES, StudyConfig
from services.study.report import RunInfo, write_report


@pytest.fixture
def stand_in() -> Iterator[str]:
    proc, base_url = spawn(latency_s=0.02, fault_rate=0.0)
    try:
        yield base_url
    finally:
        proc.terminate()
        with contextlib.suppress(Exception):
            proc.wait(timeout=10)


@pytest.mark.slow
def test_sizing_fills_the_budget_with_the_whole_grid(stand_in: str, tmp_path: Path) -> None:
    config = StudyConfig(
        budget_minutes=0.25,  # 15 s
        reserve_s=0.0,
        calibration_items=2,
        chunk_items=3,
        servers={p: stand_in for p in PROFILES},
        resamples=50,
    )
    outcome = run_study(config, tmp_path, lambda _m: None)
    data, sizing = outcome.data, outcome.sizing
    n = len(data.item_ids)
    assert n == sizing.n_items and n > config.calibration_items
    assert sizing.projected_s <= sizing.budget_s
    assert outcome.wall_s < 2.0 * sizing.budget_s  # a shared 2-core machine: some slack
    # The grid is complete on every item: 3 critics x 7 strategies on the base's labels,
    # 3 models x 2 annotation strategies.
    assert len(data.labels) == 6 and all(v.shape == (n,) for v in data.labels.values())
    assert set(data.eps) == {(data.base_model, c, s) for c in PROFILES for s in CRITIC_STRATEGIES}
    assert all(v.shape == (n,) for v in data.eps.values())
    assert all(row.calls == n for row in data.usage if row.role == "critique")

    text = write_report(
        data, RunInfo(outcome.wall_s, sizing.reason, {}), tmp_path / "docs", resamples=50
    ).read_text()
    verdicts = [
        line.split("| **")[1].split("**")[0] for line in text.splitlines() if "| **" in line
    ]
    assert len(verdicts) == 7
    assert set(verdicts) <= {HELD, NOT_HELD, INCONCLUSIVE, NOT_TESTABLE}
    assert verdicts[3] == NOT_TESTABLE  # insight 4: no black-box API model offline
    # Figure 3's table: one row per critic, the base model's row is self-criticism.
    assert f"| {data.base_model} | self |" in text
