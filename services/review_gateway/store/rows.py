"""Values the store hands out (frozen dataclasses) and the constants they use."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ROLE_REVIEWER = "reviewer"
ROLE_ADMIN = "admin"
#: May call the ingest service (define tasks, stream items); the ingest service
#: accepts it and admins, and refuses reviewers.
ROLE_PRODUCER = "producer"
#: Actor of the audit rows the gateway writes on its own (enqueue, reaper, relay).
SYSTEM = "system"


@dataclass(frozen=True, slots=True)
class Reviewer:
    """A reviewer account (the token itself is never stored)."""

    id: str
    name: str
    role: str
    disabled: bool
    created_at_us: int
    #: Blur of sensitive images in CSS pixels; None: the server default.
    blur_px: int | None = None

    @property
    def is_admin(self) -> bool:
        """Admins manage reviewers and read every statistic."""
        return self.role == ROLE_ADMIN


@dataclass(frozen=True, slots=True)
class Leased:
    """A granted lease and what the reviewer needs to label the item."""

    lease_id: str
    request_id: str
    item_id: str
    task_id: str
    request: bytes
    task: bytes
    leased_at_us: int
    deadline_us: int


#: A submission's outcome: the item's FinalLabel is written (or held for undo).
OUTCOME_FINAL = "final"
#: The first of two reviews (the task's overlap): the item waits for a second reviewer.
OUTCOME_SECOND = "awaiting_second"
#: The second review disagrees with the first: the item waits for an admin.
OUTCOME_DISPUTED = "disputed"


@dataclass(frozen=True, slots=True)
class Submitted:
    """Outcome of a submission (``duplicate``: an earlier submission's result).

    ``outcome`` is one of :data:`OUTCOME_FINAL`, :data:`OUTCOME_SECOND`,
    :data:`OUTCOME_DISPUTED`.
    """

    review_id: str
    submitted_at_us: int
    duplicate: bool
    outcome: str = OUTCOME_FINAL


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One record waiting to be published."""

    id: int
    topic: str
    key: str
    value: bytes


@dataclass(frozen=True, slots=True)
class TaskStatsRow:
    """Queue statistics of one task."""

    task_id: str
    pending: int
    leased: int
    completed: int
    skipped: int
    expired: int
    label_counts: dict[int, int]
    #: Items whose two reviews disagree, waiting for an admin.
    disputed: int = 0


@dataclass(frozen=True, slots=True)
class ReviewerStatsRow:
    """Statistics of one reviewer."""

    reviewer: Reviewer
    completed: int
    skipped: int
    active_leases: int
    expired_leases: int
    median_seconds_per_review: float
    last_submitted_at_us: int | None
    #: Reviews submitted in the last hour (throughput).
    reviews_last_hour: int


@dataclass(frozen=True, slots=True)
class SessionRow:
    """A live web session: whose it is and the CSRF token its forms must echo."""

    reviewer: Reviewer
    csrf_token: str
    expires_at_us: int


@dataclass(frozen=True, slots=True)
class ExposureRow:
    """A reviewer's exposure to one category (machine label) of a task on one UTC day."""

    reviewer_id: str
    task_id: str
    label_index: int
    day: str
    seconds_today: float
    capped: bool


@dataclass(frozen=True, slots=True)
class ExposureReportRow:
    """One line of the admin exposure report: a reviewer and a category on a day."""

    reviewer_id: str
    reviewer_name: str
    task_id: str
    label_index: int
    seconds: float
    capped: bool


@dataclass(frozen=True, slots=True)
class ActiveLeaseRow:
    """An active lease as the admin page lists it (for a forced release)."""

    lease_id: str
    request_id: str
    task_id: str
    item_id: str
    reviewer_id: str
    reviewer_name: str
    leased_at_us: int
    deadline_us: int


@dataclass(frozen=True, slots=True)
class LeaseRow:
    """A ``leases`` row as the store's checks read it."""

    lease_id: str
    queue_id: int
    request_id: str
    task_id: str
    reviewer_id: str
    leased_at_us: int
    deadline_us: int
    state: str


def lease_row(row: Mapping[Any, Any]) -> LeaseRow:
    """A :class:`LeaseRow` from a selected ``leases`` row (a SQLAlchemy ``row._mapping``
    or a psycopg dict row)."""
    return LeaseRow(
        lease_id=row["lease_id"],
        queue_id=row["queue_id"],
        request_id=row["request_id"],
        task_id=row["task_id"],
        reviewer_id=row["reviewer_id"],
        leased_at_us=row["leased_at_us"],
        deadline_us=row["deadline_us"],
        state=row["state"],
    )


def reviewer_row(row: Any) -> Reviewer:
    """A :class:`Reviewer` from a selected ``reviewers`` row."""
    return Reviewer(
        id=row.id,
        name=row.name,
        role=row.role,
        disabled=bool(row.disabled),
        created_at_us=row.created_at_us,
        blur_px=row.blur_px,
    )


@dataclass(frozen=True, slots=True)
class DisputeReview:
    """One of the two disagreeing reviews of a disputed item."""

    review_id: str
    reviewer_id: str
    reviewer_name: str
    label_index: int
    submitted_at_us: int
    round: int


@dataclass(frozen=True, slots=True)
class DisputeRow:
    """An item whose two reviews disagree, waiting for an admin."""

    request_id: str
    task_id: str
    item_id: str
    reviews: tuple[DisputeReview, ...]


@dataclass(frozen=True, slots=True)
class Adjudicated:
    """Outcome of an adjudication (``duplicate``: the same decision made before)."""

    adjudication_id: str
    at_us: int
    duplicate: bool


@dataclass(frozen=True, slots=True)
class ReviewPair:
    """The two reviews of an item of the overlap share, in round order."""

    request_id: str
    first_reviewer: str
    first_label: int
    second_reviewer: str
    second_label: int
