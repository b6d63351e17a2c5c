"""The report: Markdown with every section and the three PNGs."""

from __future__ import annotations

from pathlib import Path

from services.study.figures import FIG2, FIG3, FIG4
from services.study.records import CallRecord, PhaseRecord, RecordStore, prefix_hits
from services.study.report import RunInfo, write_report
from tests.study.synthetic import synthetic

PNG = b"\x89PNG\r\n\x1a\n"


def test_write_report_produces_markdown_and_pngs(tmp_path: Path) -> None:
    data = synthetic(n=60)
    info = RunInfo(
        wall_s=6546.0, sizing_reason="60 items fit", parameters={"seed": 0}, date="2026-12-07"
    )
    path = write_report(data, info, tmp_path, resamples=200, seed=0)
    text = path.read_text()
    for png in (FIG2, FIG3, FIG4):
        assert (tmp_path / png).read_bytes().startswith(PNG)
        assert f"]({png})" in text
    assert "Wall time: 109.1 min" in text
    assert "## The paper's seven insights here" in text
    assert text.count("| **") == 7  # one verdict row per insight
    assert "act select-models" in text and "recommended annotator **strong**" in text
    assert "Prompt-cache hit share: not measured" in text
    assert "60 items fit" in text
    assert "Resumed run" not in text  # a fresh run says nothing about earlier ones


def test_a_resumed_run_says_what_it_reused_and_the_model_time_of_all_runs(
    tmp_path: Path,
) -> None:
    info = RunInfo(
        wall_s=3000.0,
        sizing_reason="41 items fixed by --items",
        parameters={},
        reused_calls=699,
        model_call_s=9000.0,
    )
    text = write_report(synthetic(n=30), info, tmp_path, resamples=50, seed=0).read_text()
    assert "Wall time: 50.0 min" in text
    assert "reused 699 model calls" in text
    assert "**150.0 min** of model time" in text


def test_records_round_trip_and_resume(tmp_path: Path) -> None:
    store = RecordStore(tmp_path / "calls.jsonl")
    ok = CallRecord("annotate", "m", "cot", "i1", label=1, prompt_tokens=10)
    bad = CallRecord("annotate", "m", "cot", "i2", error="RetryableError")
    store.add_calls([ok, bad])
    store.add_phase(PhaseRecord("annotate", "m", "cot", 2, 4.0))
    again = RecordStore(tmp_path / "calls.jsonl")
    assert again.get(ok.key) == ok
    assert again.get(bad.key) is None  # failed calls are tried again
    assert again.phases == [PhaseRecord("annotate", "m", "cot", 2, 4.0)]


def test_prefix_hits_reads_a_verbose_log_and_says_none_without_one() -> None:
    verbose = (
        "Llama.generate: 120 prefix-match hit, remaining 30 prompt tokens to eval\n"
        "llama_perf_context_print: prompt eval time = 10 ms / 30 tokens\n"
        "Llama.generate: 80 prefix-match hit, remaining 5 prompt tokens to eval\n"
    )
    assert prefix_hits(verbose) == 200
    assert prefix_hits("llama_perf_context_print: prompt eval time = 9 ms\n") == 0
    assert prefix_hits('INFO: 127.0.0.1 - "POST /v1/chat/completions" 200\n') is None
