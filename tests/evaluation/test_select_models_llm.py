"""`act select-models` with an OpenAI-compatible candidate (the local fake server)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.datasets import load_spam_assassin
from services.devkit.fault_server import spawn
from tests.cli.helpers import invoke


@pytest.fixture
def fake_openai() -> Iterator[str]:
    proc, base_url = spawn(latency_s=0.01, fault_rate=0.0)
    try:
        yield base_url
    finally:
        proc.terminate()
        with contextlib.suppress(Exception):
            proc.wait(timeout=10)


@pytest.mark.slow
def test_openai_compatible_candidate_runs_as_annotator_and_critic(
    fake_openai: str, tmp_path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("OPENAI_API_KEY", "test-key-not-secret")
    every = load_spam_assassin()[::20]
    records = [r for r in every if r.label == 0][:35] + [r for r in every if r.label == 1][:35]
    path = Path(tmp_path) / "labelled.jsonl"
    path.write_text(
        "".join(
            json.dumps({"id": r.id, "text": r.text[:500], "label": r.label}) + "\n" for r in records
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
            f"openai:fake-model@{fake_openai}",
            "-c",
            "fewshot:logreg-ngrams:6",
            "--json",
            "--quiet",
        ]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    names = {c["name"] for c in report["candidates"]}
    assert names == {f"openai:fake-model@{fake_openai}", "fewshot:logreg-ngrams:6"}
    assert report["n_items"] == 70 - 12
    assert len(report["pairs"]) == 4
    assert all(0 <= p["abs"] <= 1 for p in report["pairs"])
    # The fake server answers by hashing the prompt: the seed-fit model is more accurate.
    assert report["annotator"] == "fewshot:logreg-ngrams:6"
    assert report["critic"] == f"openai:fake-model@{fake_openai}"
    assert not report["errors"]
