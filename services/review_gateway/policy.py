"""Per-task review policy: ``Task.review`` (``act.v1.ReviewSettings``) made usable.

Pure: imports only the generated ``task_pb2`` and the standard library, so the
command-line tool can validate a task with the very rules the gateway applies.

* :func:`validate_review_settings` lists every problem of a task's review
  settings as a readable sentence (``act task create`` rejects the task with
  them);
* :meth:`ReviewPolicy.from_task` turns the settings of a task into the
  policy the gateway applies, with the server defaults filled in for zeros.

Absent settings mean every default: nothing sensitive, machine label and
critique hidden (they anchor reviewers), no overlap, the server's exposure
limits.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from act.v1 import task_pb2

#: Server defaults for the exposure limits (seconds of revealed sensitive content).
DEFAULT_BREAK_AFTER_S = 1200
DEFAULT_DAILY_CAP_S = 7200
#: The exposure limits count seconds within one UTC day: larger values mean nothing.
MAX_EXPOSURE_S = 86_400


def overlap_selected(task_id: str, item_id: str, fraction: float) -> bool:
    """Whether an item of a task goes to a second reviewer (the task's overlap share).

    Deterministic, so every replica and every retry decides alike, and
    independent of arrival order and of the item's content: the first 8 bytes
    of SHA-256 over ``task_id``, NUL, ``item_id`` as a number in [0, 1) are
    compared with ``fraction``. The share of selected items converges to
    ``fraction`` (SHA-256 output is uniform for distinct inputs).
    """
    if fraction <= 0.0:
        return False
    if fraction >= 1.0:
        return True
    digest = hashlib.sha256(f"{task_id}\x00{item_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def validate_review_settings(task: task_pb2.Task) -> list[str]:
    """Every problem of ``task.review`` (empty = valid), one sentence each."""
    review = task.review
    problems: list[str] = []
    n_labels = len(task.labels)
    expected = f"expected 0 to {n_labels - 1}" if n_labels else "the task has no labels"
    for index in review.sensitive_labels:
        if not 0 <= index < n_labels:
            problems.append(
                f"review sensitive label index {index} is not a label of the task ({expected})"
            )
    if not 0.0 <= review.overlap_fraction <= 1.0:  # also false for NaN
        problems.append(
            f"review overlap_fraction must be in [0, 1], got {review.overlap_fraction:g}"
        )
    for field in ("exposure_break_after_s", "exposure_daily_cap_s"):
        seconds = getattr(review, field)
        if not 0 <= seconds <= MAX_EXPOSURE_S:
            problems.append(
                f"review {field} must be in [0, {MAX_EXPOSURE_S}] seconds "
                f"(0 = server default), got {seconds}"
            )
    return problems


@dataclass(frozen=True)
class ReviewPolicy:
    """How the gateway serves one task's items to reviewers."""

    #: Label indices whose content is blurred or masked until revealed.
    sensitive_labels: frozenset[int] = frozenset()
    #: Show the machine label (off by default: it anchors reviewers).
    show_machine_label: bool = False
    #: Show the critic's eps and rationale.
    show_critique: bool = False
    #: Fraction of reviewed items that also go to a second reviewer, in [0, 1].
    overlap_fraction: float = 0.0
    #: Prompt a break after this many seconds of revealed sensitive content.
    break_after_s: int = DEFAULT_BREAK_AFTER_S
    #: Per reviewer, category and UTC day: no more leases after this many seconds.
    daily_cap_s: int = DEFAULT_DAILY_CAP_S

    @classmethod
    def from_task(
        cls,
        task: task_pb2.Task,
        *,
        default_break_after_s: int = DEFAULT_BREAK_AFTER_S,
        default_daily_cap_s: int = DEFAULT_DAILY_CAP_S,
    ) -> ReviewPolicy:
        """The policy of ``task`` (zeros = the given server defaults).

        Raises :class:`ValueError` for a sensitive label index outside the
        task's label set, a non-finite overlap fraction or a negative exposure
        limit. A finite overlap fraction outside [0, 1] is clamped into it.
        """
        review = task.review
        n_labels = len(task.labels)
        bad = sorted({i for i in review.sensitive_labels if not 0 <= i < n_labels})
        if bad:
            raise ValueError(
                f"task {task.task_id!r}: sensitive label indices {bad} are outside "
                f"its {n_labels} labels"
            )
        overlap = review.overlap_fraction
        if not math.isfinite(overlap):
            raise ValueError(f"task {task.task_id!r}: overlap_fraction {overlap} is not finite")
        for field in ("exposure_break_after_s", "exposure_daily_cap_s"):
            if getattr(review, field) < 0:
                raise ValueError(
                    f"task {task.task_id!r}: {field} must be >= 0, got {getattr(review, field)}"
                )
        return cls(
            sensitive_labels=frozenset(review.sensitive_labels),
            show_machine_label=review.show_machine_label,
            show_critique=review.show_critique,
            overlap_fraction=min(1.0, max(0.0, overlap)),
            break_after_s=review.exposure_break_after_s or default_break_after_s,
            daily_cap_s=review.exposure_daily_cap_s or default_daily_cap_s,
        )

    def is_sensitive(self, label_index: int) -> bool:
        """Whether items of this (suspected) label are shown blurred or masked."""
        return label_index in self.sensitive_labels
