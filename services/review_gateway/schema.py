"""Tables of the review gateway (SQLAlchemy Core).

Times are integer microseconds since the Unix epoch (``*_us``): exact,
portable between SQLite and PostgreSQL, and compared as plain integers.
Protobuf payloads are stored as the serialized bytes they arrived as.

The Alembic migrations in ``migrations/versions`` create exactly these tables;
a test compares the migrated database with this metadata.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)

#: A 64-bit integer primary key that is SQLite's ROWID alias there (autoincrement).
IdType = BigInteger().with_variant(Integer(), "sqlite")

# Queue entry states.
PENDING = "pending"
LEASED = "leased"
DONE = "done"
#: An item whose two reviews disagree, waiting for an admin's adjudication.
DISPUTED = "disputed"

# Lease states.
ACTIVE = "active"
SUBMITTED = "submitted"
RELEASED = "released"
SKIPPED = "skipped"
EXPIRED = "expired"
REVOKED = "revoked"
#: A submitted lease whose review the reviewer took back (:meth:`ReviewStore.undo`);
#: the entry got a fresh lease of the same reviewer.
UNDONE = "undone"

reviewers = Table(
    "reviewers",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("role", String(16), nullable=False),  # reviewer | admin
    Column("token_sha256", String(64), nullable=False, unique=True),
    Column("disabled", Boolean, nullable=False, server_default=text("false")),
    Column("created_at_us", BigInteger, nullable=False),
    Column("disabled_at_us", BigInteger),
    # Image blur of this reviewer in CSS pixels; NULL: the server default.
    Column("blur_px", Integer),
)

tasks = Table(
    "tasks",
    metadata,
    Column("task_id", String(200), primary_key=True),
    Column("num_labels", Integer, nullable=False),
    # act.v1.Task bytes: label names and instructions for the reviewer.
    Column("task", LargeBinary, nullable=False),
    Column("updated_at_us", BigInteger, nullable=False),
)

queue = Table(
    "queue",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("request_id", String(200), nullable=False, unique=True),
    Column("task_id", String(200), nullable=False),
    Column("item_id", String(200), nullable=False),
    # act.v1.ReviewRequest bytes, as consumed.
    Column("request", LargeBinary, nullable=False),
    Column("state", String(16), nullable=False),  # pending | leased | done | disputed
    Column("priority", Integer, nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("lease_id", String(64)),
    Column("lease_deadline_us", BigInteger),
    Column("enqueued_at_us", BigInteger, nullable=False),
    Column("updated_at_us", BigInteger, nullable=False),
    # The machine label index (the suspected category) of the request; NULL: unknown.
    Column("category", Integer),
    # One human label per item of a task, whatever request ids the sampler used.
    UniqueConstraint("task_id", "item_id"),
)
# Lease order: highest priority first, then oldest (index order = scan order).
Index("ix_queue_pick", queue.c.state, queue.c.priority.desc(), queue.c.id)
Index("ix_queue_task_pick", queue.c.task_id, queue.c.state, queue.c.priority.desc(), queue.c.id)

leases = Table(
    "leases",
    metadata,
    Column("lease_id", String(64), primary_key=True),
    Column("queue_id", BigInteger, nullable=False),
    Column("request_id", String(200), nullable=False),
    Column("task_id", String(200), nullable=False),
    Column("reviewer_id", String(64), nullable=False),
    Column("leased_at_us", BigInteger, nullable=False),
    Column("deadline_us", BigInteger, nullable=False),
    # active | submitted | released | skipped | expired | revoked | undone
    Column("state", String(16), nullable=False),
    Column("ended_at_us", BigInteger),
    Index("ix_leases_state_deadline", "state", "deadline_us"),
    Index("ix_leases_reviewer_state", "reviewer_id", "state"),
    Index("ix_leases_task_state", "task_id", "state"),
)

reviews = Table(
    "reviews",
    metadata,
    Column("review_id", String(64), primary_key=True),
    Column("request_id", String(200), nullable=False),
    Column("lease_id", String(64), nullable=False, unique=True),
    Column("idempotency_key", String(200), nullable=False, unique=True),
    Column("task_id", String(200), nullable=False),
    Column("item_id", String(200), nullable=False),
    Column("reviewer_id", String(64), nullable=False),
    Column("label_index", Integer, nullable=False),
    Column("leased_at_us", BigInteger, nullable=False),
    Column("submitted_at_us", BigInteger, nullable=False),
    # 1: the item's first review; 2: the second reviewer's (the task's overlap).
    Column("round", Integer, nullable=False, server_default=text("1")),
    UniqueConstraint("request_id", "round"),
    Index("ix_reviews_task_label", "task_id", "label_index"),
    Index("ix_reviews_reviewer_submitted", "reviewer_id", "submitted_at_us"),
)

adjudications = Table(
    "adjudications",
    metadata,
    # An admin's label for an item whose two reviews disagreed; at most one
    # per request, and the source of that item's FinalLabel.
    Column("request_id", String(200), primary_key=True),
    Column("adjudication_id", String(64), nullable=False, unique=True),
    Column("task_id", String(200), nullable=False, index=True),
    Column("item_id", String(200), nullable=False),
    Column("admin_id", String(64), nullable=False),
    Column("label_index", Integer, nullable=False),
    Column("at_us", BigInteger, nullable=False),
)

skips = Table(
    "skips",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("request_id", String(200), nullable=False),
    Column("task_id", String(200), nullable=False),
    Column("reviewer_id", String(64), nullable=False),
    Column("lease_id", String(64), nullable=False, unique=True),
    Column("reason_code", Integer, nullable=False),
    Column("reason", Text, nullable=False),
    Column("at_us", BigInteger, nullable=False),
    Index("ix_skips_request_reviewer", "request_id", "reviewer_id"),
    Index("ix_skips_task", "task_id"),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("topic", String(100), nullable=False),  # topic id of the topic specification
    Column("key", String(200), nullable=False),
    Column("value", LargeBinary, nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
    # The relay's Kafka transaction that carries (or last tried to carry) the row.
    Column("batch", BigInteger),
    Column("sent_at_us", BigInteger),
    # The relay claims the row only from this time on (NULL: at once); set by
    # a submission's undo window (``hold_s``).
    Column("available_at_us", BigInteger),
    Index(
        "ix_outbox_unsent",
        "id",
        postgresql_where=text("sent_at_us IS NULL"),
        sqlite_where=text("sent_at_us IS NULL"),
    ),
    Index("ix_outbox_batch", "batch"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", IdType, primary_key=True, autoincrement=True),
    Column("at_us", BigInteger, nullable=False),
    Column("actor", String(64), nullable=False),  # reviewer id, "admin", "system"
    # enqueued | leased | submitted | released | skipped | expired | revoked | extended |
    # reviewer_created | reviewer_disabled | published | undone | requeued |
    # session_created | session_revoked | adjudicated | blur_set
    Column("action", String(32), nullable=False),
    Column("request_id", String(200)),
    Column("lease_id", String(64)),
    # Ids and numbers only, never item content or tokens.
    Column("detail", Text, nullable=False, server_default=text("''")),
    Index("ix_audit_request", "request_id"),
    Index("ix_audit_at", "at_us"),
)

web_sessions = Table(
    "web_sessions",
    metadata,
    # SHA-256 of the session cookie (a random token, never the reviewer's API token).
    Column("session_sha256", String(64), primary_key=True),
    Column("reviewer_id", String(64), nullable=False, index=True),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
    Column("expires_at_us", BigInteger, nullable=False),
    Column("last_seen_at_us", BigInteger, nullable=False),
    Column("revoked_at_us", BigInteger),
)

exposure = Table(
    "exposure",
    metadata,
    # Seconds a reviewer spent looking at items of one category (the machine
    # label) of a task on one UTC day; ``capped`` excludes that category from
    # the reviewer's leases for the rest of the day.
    Column("reviewer_id", String(64), primary_key=True),
    Column("task_id", String(200), primary_key=True),
    Column("label_index", Integer, primary_key=True),
    Column("day", String(10), primary_key=True),  # UTC 'YYYY-MM-DD'
    Column("seconds", Float, nullable=False),
    Column("capped", Boolean, nullable=False, server_default=text("false")),
    Column("updated_at_us", BigInteger, nullable=False),
    Index("ix_exposure_day", "day"),
)
