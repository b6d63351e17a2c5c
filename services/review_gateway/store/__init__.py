"""The review gateway's durable state: queue, leases, reviews, reviewers, outbox, audit.

Callers use one object, :class:`ReviewStore`; the modules split it by concern:

* ``base``: engine, transactions, retries, audit rows, ids and time;
* ``atomic``: a guarded write over several tables defined once, run as one
  statement on PostgreSQL and as one transaction on SQLite (Lease, Submit);
* ``tasks``: task definitions; ``queue``: enqueue, lease, extend, release,
  skip, expiry; ``reviews``: submit; ``undo``: taking a held submission
  back; ``reviewers``: accounts; ``sessions``: web sessions of the reviewer
  workspace; ``exposure``: seconds per reviewer and category, daily caps;
  ``admin``: active leases, requeue; ``adjudication``: disputed items of
  the overlap share, the admin's decision, review pairs; ``workspace``: the web workspace's
  reads (own lease, lease context, lists, reviewed items); ``stats``:
  statistics; ``outbox``: the store side of the outbox;
* ``rows``: the values handed out.

Every public method is one database transaction that also writes the audit
log. Lease and Submit have one implementation for SQLite and PostgreSQL; the
dialects differ only in statement fragments chosen in one place (how a
guarded write's steps read its anchor, in ``atomic``; ``FOR UPDATE ... SKIP
LOCKED``; ``ON CONFLICT`` in ``base``), never by a second code path. The invariants are listed in
the ``queue`` and ``reviews`` modules.
"""

from services.review_gateway.store.base import new_id, now_us
from services.review_gateway.store.review_store import ReviewStore
from services.review_gateway.store.rows import (
    OUTCOME_DISPUTED,
    OUTCOME_FINAL,
    OUTCOME_SECOND,
    ROLE_ADMIN,
    ROLE_PRODUCER,
    ROLE_REVIEWER,
    SYSTEM,
    ActiveLeaseRow,
    Adjudicated,
    DisputeReview,
    DisputeRow,
    ExposureReportRow,
    ExposureRow,
    Leased,
    OutboxRow,
    Reviewer,
    ReviewerStatsRow,
    ReviewPair,
    SessionRow,
    Submitted,
    TaskStatsRow,
)

__all__ = [
    "OUTCOME_DISPUTED",
    "OUTCOME_FINAL",
    "OUTCOME_SECOND",
    "ROLE_ADMIN",
    "ROLE_PRODUCER",
    "ROLE_REVIEWER",
    "SYSTEM",
    "ActiveLeaseRow",
    "Adjudicated",
    "DisputeReview",
    "DisputeRow",
    "ExposureReportRow",
    "ExposureRow",
    "Leased",
    "OutboxRow",
    "ReviewPair",
    "ReviewStore",
    "Reviewer",
    "ReviewerStatsRow",
    "SessionRow",
    "Submitted",
    "TaskStatsRow",
    "new_id",
    "now_us",
]
