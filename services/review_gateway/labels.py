"""Pure helpers: what a review request says and what a human review becomes."""

from __future__ import annotations

from dataclasses import dataclass

from act.v1 import common_pb2, item_pb2, review_pb2, task_pb2

from services.runtime.retry import PermanentError

MAX_ID_CHARS = 200


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """The fields of a ReviewRequest the queue indexes."""

    request_id: str
    task_id: str
    item_id: str
    priority: int


def request_item(request: review_pb2.ReviewRequest) -> item_pb2.Item:
    """The item inside a review request (decision -> critique -> annotation -> item)."""
    item: item_pb2.Item = request.decision.critique.annotation.item
    return item


def embedded_task(request: review_pb2.ReviewRequest) -> task_pb2.Task | None:
    """The Task snapshot carried by the request, if the contract has one.

    ``act.v1.ReviewRequest`` has no task field today (see the gateway's
    documentation for the proposed ``Task task = 5``); the gateway learns label
    sets from ``act.tasks`` instead. This keeps the gateway ready for the field.
    """
    if "task" not in request.DESCRIPTOR.fields_by_name or not request.HasField("task"):
        return None
    task: task_pb2.Task = request.task
    return task if len(task.labels) > 0 and task.task_id else None


def validate_request(request: review_pb2.ReviewRequest) -> RequestInfo:
    """Check a consumed ReviewRequest; raise PermanentError when it can never be queued."""
    item = request_item(request)
    decision = request.decision
    fields = {"request_id": request.request_id, "task_id": item.task_id, "item_id": item.item_id}
    for name, value in fields.items():
        if not value:
            raise PermanentError(f"review request without {name}")
        if len(value) > MAX_ID_CHARS:
            raise PermanentError(f"review request {name} longer than {MAX_ID_CHARS}")
    if not decision.delta:
        raise PermanentError("review request whose decision has delta = 0")
    if not 0.0 < decision.pi <= 1.0:
        raise PermanentError(f"review request with pi = {decision.pi!r} outside (0, 1]")
    return RequestInfo(
        request_id=request.request_id,
        task_id=item.task_id,
        item_id=item.item_id,
        priority=request.priority,
    )


def machine_label(request: review_pb2.ReviewRequest) -> int | None:
    """The annotator's label of a request's item, its suspected category (None when absent)."""
    critique = request.decision.critique
    if not critique.HasField("annotation"):
        return None
    index: int = critique.annotation.label_index
    return index if index >= 0 else None


def check_label(task: task_pb2.Task, label_index: int) -> None:
    """Raise ValueError unless ``label_index`` indexes ``task.labels``."""
    if not 0 <= label_index < len(task.labels):
        raise ValueError(f"label_index {label_index} outside the task's {len(task.labels)} labels")


def label_name(task: task_pb2.Task, label_index: int) -> str:
    """Name of a label of the task ('' when the index is unknown)."""
    if 0 <= label_index < len(task.labels):
        name: str = task.labels[label_index].name
        return name
    return ""


def build_final_label(
    *,
    request: review_pb2.ReviewRequest,
    task: task_pb2.Task,
    review_id: str,
    reviewer_id: str,
    human_label: int,
    leased_at_us: int,
    submitted_at_us: int,
) -> review_pb2.FinalLabel:
    """The human-final label (delta = 1) of a submitted review.

    It carries the machine label y_m, the human label y, delta = 1, the pi and
    eps of the sampling decision (the ACT loss weights by delta / pi), who
    reviewed and when, the decision and the item, and the review id that
    consumers use to recognise a repeated record.
    """
    decision = request.decision
    annotation = decision.critique.annotation
    final = review_pb2.FinalLabel(
        item_id=annotation.item.item_id,
        task_id=annotation.item.task_id,
        label_index=human_label,
        source=common_pb2.LABEL_SOURCE_HUMAN,
        machine_label=annotation.label_index,
        human_label=human_label,
        delta=True,
        pi=decision.pi,
        eps=decision.eps,
        reviewer_id=reviewer_id,
        label_name=label_name(task, human_label),
        review_id=review_id,
    )
    final.leased_at.FromMicroseconds(leased_at_us)
    final.submitted_at.FromMicroseconds(submitted_at_us)
    final.finalized_at.FromMicroseconds(submitted_at_us)
    final.decision.CopyFrom(decision)
    final.item.CopyFrom(annotation.item)
    return final
