"""The main job end to end: five service processes over the real broker and PostgreSQL."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
METHODS = ("human_only", "machine_only", "act_data_ce", "act_norm", "act_exp", "act_thre")

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]


def test_demo_streams_trains_and_writes_table_3(
    kafka_bootstrap: str, postgres_dsn: str, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "ACT_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "ACT_DEMO_DATABASE_URL": postgres_dsn,
    }
    items = 400
    done = subprocess.run(
        [sys.executable, "-m", "services.demo", "--dataset", "fashion", "--items", str(items),
         "--seeds", "1", "--out", str(tmp_path)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    # Live progress: one line per change, the trainer's count reaching every item.
    lines = [line for line in out.splitlines() if re.match(r"\[\s*[\d.]+ s\] items", line)]
    assert len(lines) >= 2 and f"trainer   {items}" in lines[-1]
    recommended = float(re.search(r"recommended ([\d.]+)%", out).group(1)) / 100
    reviewed = int(re.search(r"done in \d+ s: (\d+) human reviews", out).group(1))
    # The sampler holds the stream to its budget (paced per window).
    assert abs(reviewed / items - recommended) < 0.08
    # Two waves with a fit between them; the fit's model is published and the
    # demo says whether the sampler uses it (200 items: too few reviews yet).
    assert re.search(r"wave 1: 200 items published", out) and "wave 2: 200 items" in out
    loop = re.search(r"feedback loop: (on|off for now)", out)
    used = re.search(r"the second critic scored (\d+) of the 200 second-wave items", out)
    assert loop is not None and used is not None
    # The sampler fuses exactly when the trainer said the model helps.
    assert (int(used.group(1)) > 0) == (loop.group(1) == "on")
    fit = re.search(r"fit fit-\w+: (\d+) labels \((\d+) human\)", out)
    assert fit is not None and int(fit.group(2)) > 0
    # The fit chose the agreement filter on validation, and says what it chose.
    assert re.search(r"label cleaning: (the agreement filter dropped \d+|kept every label)", out)
    # The service's own ACT-loss model, evaluated on the table's test items.
    service = re.search(r"trainer service's model .* test accuracy ([\d.]+)%", out)
    assert service is not None and 30.0 < float(service.group(1)) <= 100.0
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    results = json.loads((run_dir / "table" / "results.json").read_text())
    table = (run_dir / "table" / "table.md").read_text()
    assert "Human-ACT performance gap" in table
    summary = results["summary"]
    for method in METHODS:
        assert 30.0 < summary[f"fashion_acc_{method}_mean"] <= 100.0  # ten classes: chance 10
    assert results["annotator"].startswith("logreg-pixels@") and results["seed_size"] == 600
    assert results["n_train"] == items
    for name in ("aqg_vs_budget.png", "accuracy_vs_budget.png"):
        assert (run_dir / "table" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    logs = run_dir / "logs"
    assert {p.stem for p in logs.iterdir()} == {
        "annotator", "criticizer", "sampler", "review-gateway", "trainer",
    }  # fmt: skip
    # The web workspace's pages, with demo-only tokens on the terminal.
    admin = re.search(
        r"admin page +(http://127\.0\.0\.1:\d+/admin) +token of demo-admin: +(\S+)", out
    )
    review = re.search(r"reviewer page +(http://\S+/review) +token of demo-reviewer: +(\S+)", out)
    assert admin is not None and review is not None
    tokens = (admin.group(2), review.group(2))
    # Item content never reaches a log: no PNG bytes, no base64 of them; nor do the tokens.
    for log in logs.iterdir():
        text = log.read_text(errors="replace")
        assert "iVBORw0KGgo" not in text and "image_bytes" not in text
        assert not any(token in text for token in tokens)
