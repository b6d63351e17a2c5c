"""The replay reviewer: seeded answers, held labels, and the command line."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest
from act.v1 import api_pb2

from services.review_gateway.replay import (
    ReplayConfig,
    ReplayReviewer,
    load_held_labels,
)
from tests.review_gateway.conftest import Running
from tests.review_gateway.support import counts, make_request
from tests.support.kafkaio import REPO


def test_answers_are_seeded_and_as_accurate_as_asked():
    config = ReplayConfig(target="unused:1", token="t", accuracy=0.7, seed=3)
    first, second = ReplayReviewer(config), ReplayReviewer(config)
    truths = {f"item-{n}": n % 4 for n in range(4000)}
    answers = {i: first.answer(i, t, 4) for i, t in truths.items()}
    assert answers == {i: second.answer(i, t, 4) for i, t in truths.items()}
    right = sum(answers[i] == t for i, t in truths.items()) / len(truths)
    assert right == pytest.approx(0.7, abs=0.03)
    assert all(0 <= a < 4 for a in answers.values())
    perfect = ReplayReviewer(ReplayConfig(target="unused:1", token="t", accuracy=1.0))
    assert all(perfect.answer(i, t, 4) == t for i, t in truths.items())


def test_held_labels_file(tmp_path: Path):
    path = tmp_path / "held.jsonl"
    path.write_text('{"item_id": "a", "label": 1}\n\n{"item_id": "b", "label": 0}\n')
    assert load_held_labels(path) == {"a": 1, "b": 0}
    path.write_text('{"item": "a"}\n')
    with pytest.raises(ValueError, match=r"held\.jsonl:1"):
        load_held_labels(path)


async def test_command_line_reviews_the_queue(running: Running, tmp_path: Path):
    created = await running.admin.CreateReviewer(api_pb2.CreateReviewerRequest(name="cli"))
    for n in range(12):
        await running.store.enqueue(make_request(n, machine_label=1))
    held = tmp_path / "held.jsonl"
    held.write_text(
        "".join(json.dumps({"item_id": f"item-{n}", "label": 2}) + "\n" for n in range(6))
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.review_gateway.replay",
        "--target",
        f"127.0.0.1:{running.gateway.port}",
        "--labels",
        str(held),
        "--concurrency",
        "3",
        "--task",
        "task-1",
        "--idle-seconds",
        "1",
        "--timeout",
        "5",
        cwd=REPO,
        env={"ACT_REPLAY_TOKEN": created.token, "PYTHONPATH": str(REPO)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    summary = json.loads(out)
    assert summary["submitted"] == 12 and summary["missing_labels"] == 6
    assert (await counts(running.store.engine))["reviews"] == 12
    stats = await running.admin.GetTaskStats(api_pb2.GetTaskStatsRequest(task_id="task-1"))
    # Held labels for six items, the machine label for the rest.
    assert dict(stats.label_counts) == {2: 6, 1: 6}
