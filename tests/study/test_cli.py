"""``python -m services.study`` end to end on the OpenAI stand-in, and its flag checks."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from services.devkit.fault_server import spawn
from services.study.__main__ import config_of, main, parse_args
from services.study.driver import fill_missing, records_path
from services.study.plan import CallKey, StudyConfig


@pytest.mark.slow
def test_the_command_writes_docs_and_keeps_raw_results_apart(tmp_path: Path) -> None:
    proc, url = spawn(latency_s=0.01, fault_rate=0.0)
    try:
        code = main(
            ["--items", "4", "--calibration-items", "1", "--resamples", "50",
             "--critic", "naive", "--critic", "naive-logit",
             "--out", str(tmp_path / "docs"), "--state", str(tmp_path / "state"),
             *(f"--server={p}={url}" for p in ("smollm2", "qwen-0.5b", "qwen-1.5b"))]
        )  # fmt: skip
    finally:
        proc.terminate()
        with contextlib.suppress(Exception):
            proc.wait(timeout=10)
    assert code == 0
    text = (tmp_path / "docs" / "README.md").read_text()
    assert "| n_items | `4` |" in text and "| pairs | `base` |" in text
    assert sorted(p.name for p in (tmp_path / "docs").iterdir()) == [
        "README.md", "fig2_annotator_accuracy.png", "fig3_blackbox_abs.png",
        "fig4_black_vs_white.png",
    ]  # fmt: skip
    # Raw per-call results stay under the state directory, not next to the docs.
    assert list((tmp_path / "state").glob("calls-*.jsonl"))


def test_flags_become_a_config_with_profiles_weakest_first() -> None:
    args = parse_args(["--profile", "qwen-1.5b", "--profile", "smollm2", "--server", "smollm2=u"])
    config = config_of(args)
    assert config.profiles == ("smollm2", "qwen-1.5b")
    assert config.servers == {"smollm2": "u"}
    assert main(["--server", "smollm2"]) == 2  # PROFILE=URL is required


def test_resume_files_differ_by_what_changes_an_answer_and_gaps_are_charged_slow() -> None:
    a = records_path(Path("/s"), StudyConfig(seed=0))
    assert a == records_path(Path("/s"), StudyConfig(seed=0, budget_minutes=5))
    assert a != records_path(Path("/s"), StudyConfig(seed=1))
    assert a != records_path(Path("/s"), StudyConfig(max_text_chars=300))
    measured = {CallKey("critique", "m", "naive"): 2.0, CallKey("critique", "m", "cot"): 9.0}
    filled = fill_missing(StudyConfig(), measured, [CallKey("critique", "m", "devil")])
    assert filled[CallKey("critique", "m", "devil")] == 9.0
