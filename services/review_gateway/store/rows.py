"""Values the store hands out (frozen dataclasses) and the constants they use."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ROLE_REVIEWER = "reviewer"
ROLE_ADMIN = "admin"
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


@dataclass(frozen=True, slots=True)
class Submitted:
    """Outcome of a submission (``duplicate``: an earlier submission's result)."""

    review_id: str
    submitted_at_us: int
    duplicate: bool


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
    )
