"""The replay reviewer: seeded answers, held labels, and the command line."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest
from act.v1 import api_pb2
from sqlalchemy import select

from services.review_gateway import schema as s
from services.review_gateway.replay import (
    LEFT_FOR_PEOPLE_REASON,
    ReplayConfig,
    ReplayReviewer,
    load_held_labels,
)
from tests.review_gateway.conftest import Running
from tests.review_gateway.support import counts, make_request, queue_states
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
    # The critic's calibration on those reviews (all eps 0.75, pi 0.25): half wrong.
    cal = stats.calibration
    assert cal.reviews == 12 and cal.machine_error_rate == pytest.approx(0.5)
    assert cal.eps_mean == pytest.approx(0.75)
    assert cal.expected_calibration_error == pytest.approx(0.25)
    assert cal.method == "identity"  # fewer than 20 reviews: eps is left as it is
    assert [(p.eps, p.calibrated) for p in cal.points] == [
        pytest.approx((e, e)) for e in (0.1, 0.3, 0.5, 0.7, 0.9)
    ]


@pytest.mark.parametrize(("items", "leave"), [(12, 3), (4, 6)])
async def test_leaves_the_first_n_items_for_people(running: Running, items: int, leave: int):
    created = await running.admin.CreateReviewer(api_pb2.CreateReviewerRequest(name="replay"))
    for n in range(items):
        await running.store.enqueue(make_request(n, machine_label=1))
    reviewer = ReplayReviewer(
        ReplayConfig(
            target=f"127.0.0.1:{running.gateway.port}",
            token=created.token,
            task_id="task-1",
            held_labels={f"item-{n}": 2 for n in range(items)},
            concurrency=3,
            idle_seconds=1,
            call_timeout_s=5,
            leave_for_people=leave,
            record=True,
        )
    )
    summary = await asyncio.wait_for(reviewer.run(), 60)
    left = min(leave, items)
    assert summary.left_for_people == len(reviewer.left_for_people) == left
    assert summary.skipped == left and summary.submitted == items - left
    # The first N distinct items leased are the ones left.
    leased = list(dict.fromkeys(i for e, i, _, _ in reviewer.history if e == "leased"))
    assert set(leased[:left]) == reviewer.left_for_people
    assert set(reviewer.accepted).isdisjoint(reviewer.left_for_people)
    assert len(reviewer.accepted) == items - left

    states = await queue_states(running.store.engine)
    pending = {f"item-{r.removeprefix('req-')}" for r, st in states.items() if st == s.PENDING}
    assert pending == reviewer.left_for_people
    assert sum(st == s.DONE for st in states.values()) == items - left
    async with running.store.engine.connect() as conn:
        skips = (await conn.execute(select(s.skips))).all()
    assert len(skips) == left
    assert {r.request_id.replace("req-", "item-") for r in skips} == reviewer.left_for_people
    assert {(r.reviewer_id, r.reason, r.reason_code) for r in skips} == {
        (created.reviewer_id, LEFT_FOR_PEOPLE_REASON, api_pb2.SKIP_REASON_OTHER)
    }
    stats = await running.admin.GetTaskStats(api_pb2.GetTaskStatsRequest(task_id="task-1"))
    assert (stats.pending, stats.completed, stats.skipped) == (left, items - left, left)
    assert dict(stats.label_counts) == ({2: items - left} if items > left else {})
    assert stats.HasField("calibration") == (items > left)  # absent before any review

    # A person gets exactly the items left, and can label them.
    _, person = await running.reviewer("person")
    for _ in range(left):
        lease = await person.lease(task_id="task-1")
        assert lease.request.decision.critique.annotation.item.item_id in reviewer.left_for_people
        await person.submit(lease.lease_id, 0)
    assert not (await person.lease(task_id="task-1")).lease_id
    stats = await running.admin.GetTaskStats(api_pb2.GetTaskStatsRequest(task_id="task-1"))
    assert (stats.pending, stats.completed) == (0, items)


def test_leave_for_people_must_not_be_negative():
    with pytest.raises(ValueError, match="leave_for_people"):
        ReplayReviewer(ReplayConfig(target="unused:1", token="t", leave_for_people=-1))
