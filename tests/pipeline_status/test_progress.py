"""The read model's fold (pure): per-task counters, dead letters, budget, fits."""

from __future__ import annotations

from datetime import UTC, datetime

from act.v1 import (
    annotation_pb2,
    critique_pb2,
    dlq_pb2,
    item_pb2,
    review_pb2,
    sampling_pb2,
    task_pb2,
    training_pb2,
)

from services.pipeline_status.ops import review_budget
from services.pipeline_status.progress import Progress, apply, fold, task_of


def _item(item_id: str, task_id: str = "t1") -> item_pb2.Item:
    return item_pb2.Item(item_id=item_id, task_id=task_id)


def _critique(item_id: str, task_id: str = "t1") -> critique_pb2.Critique:
    annotation = annotation_pb2.Annotation(item=_item(item_id, task_id))
    return critique_pb2.Critique(annotation=annotation, eps=0.5)


def _label(item_id: str, delta: bool, task_id: str = "t1") -> review_pb2.FinalLabel:
    return review_pb2.FinalLabel(item_id=item_id, task_id=task_id, delta=delta)


def _request(item_id: str, task_id: str = "t1") -> review_pb2.ReviewRequest:
    # The task travels inside the request; the embedded item names it too.
    decision = sampling_pb2.SamplingDecision(critique=_critique(item_id, task_id), delta=True)
    return review_pb2.ReviewRequest(request_id=f"r-{item_id}", decision=decision)


def test_a_final_label_seen_twice_counts_once_and_human_wins():
    counts = Progress()
    for message in (
        _label("a", delta=False),
        _label("a", delta=False),  # the same item through the pipeline again
        _label("b", delta=True),
        _label("b", delta=True),
        _label("c", delta=True),
        _label("c", delta=False),  # a machine label never replaces a human one
    ):
        apply(counts, "labels", message)
    task = counts.tasks["t1"]
    assert (task.finalized, task.reviewed, task.machine_final) == (3, 2, 1)


def test_stage_records_count_per_task():
    counts = Progress()
    for i in range(5):
        apply(counts, "items", _item(f"i{i}", "t1" if i < 3 else "t2"))
    apply(counts, "annotations", annotation_pb2.Annotation(item=_item("i0")))
    apply(counts, "critiques", _critique("i0"))
    apply(counts, "review_requests", _request("i0"))
    assert counts.tasks["t1"].ingested == 3 and counts.tasks["t2"].ingested == 2
    assert counts.tasks["t1"].annotated == 1 and counts.tasks["t1"].critiqued == 1
    assert counts.tasks["t1"].sampled_for_review == 1
    assert task_of("review_requests", _request("x", "t9")) == "t9"


def test_dead_letters_are_grouped_by_stage_and_reason():
    letters = [
        ("annotator", "PermanentError", "t1"),
        ("annotator", "PermanentError", "t2"),
        ("annotator", "TaskNotFoundError", "t1"),
        ("sampler", "DecodeError", ""),  # an undecodable input has no task
        ("sampler", "", "t1"),
    ]
    counts = Progress()
    for stage, reason, task in letters:
        apply(counts, "dlq", dlq_pb2.DeadLetter(stage=stage, error_type=reason, task_id=task))
    assert counts.dead_letters == {
        "annotator": {"PermanentError": 2, "TaskNotFoundError": 1},
        "sampler": {"DecodeError": 1, "unknown": 1},
    }
    assert counts.tasks["t1"].dead_letters == 3 and counts.tasks["t2"].dead_letters == 1
    assert "" not in counts.tasks


def test_budget_spent_is_the_review_requests_and_the_budget_floors_and_caps():
    counts = fold(
        [("items", _item(f"i{i}").SerializeToString()) for i in range(25)]
        + [("review_requests", _request(f"i{i}").SerializeToString()) for i in range(4)]
        + [("labels", b"\xff\xff not a label"), ("labels", None)]
    )
    task = counts.tasks["t1"]
    assert task.sampled_for_review == 4
    assert counts.undecodable == 1  # the tombstone is no error
    assert review_budget(0.1, 0, task.ingested) == 2  # floor(0.1 * 25)
    assert review_budget(0.3, 5, task.ingested) == 5  # floor(7.5) = 7, capped at 5
    assert review_budget(0.2, 0, 10) == 2  # 0.2 * 10 is 2, not 1.999...
    assert task_pb2.Budget(fraction=0.1).hard_cap == 0


def _event(fit: str, kind: str, minute: int, **fields: object) -> training_pb2.TrainingEvent:
    event = training_pb2.TrainingEvent(task_id="t1", fit_id=fit, **fields)  # type: ignore[arg-type]
    event.at.FromDatetime(datetime(2026, 1, 1, 0, minute, tzinfo=UTC))
    if kind == "started":
        event.started.SetInParent()
    return event


def test_latest_fit_is_the_last_started_and_keeps_its_metrics():
    counts = Progress()
    done = training_pb2.FitCompleted(metrics={"accuracy": 0.9})
    for event in (
        _event("f1", "started", 1),
        _event("f1", "completed", 2, completed=done),
        _event("f2", "started", 3),
        _event("f1", "cancelled", 4, cancelled=training_pb2.FitCancelled()),  # old fit: ignored
    ):
        apply(counts, "training_events", event)
    fit = counts.tasks["t1"].latest_fit
    assert fit is not None and fit.fit_id == "f2"
    assert fit.state == training_pb2.FIT_STATE_RUNNING and fit.finished_at is None
    apply(counts, "training_events", _event("f2", "completed", 5, completed=done))
    assert fit.state == training_pb2.FIT_STATE_SUCCEEDED
    assert fit.metrics == {"accuracy": 0.9}
    assert fit.finished_at == datetime(2026, 1, 1, 0, 5)
