"""Initial schema: reviewers, tasks, queue, leases, reviews, skips, outbox, audit log.

Revision ID: 0001
Revises:
Create Date: 2025-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Create every table of the first version."""
    op.create_table(
        "reviewers",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("token_sha256", sa.String(64), nullable=False),
        sa.Column("disabled", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("created_at_us", sa.BigInteger(), nullable=False),
        sa.Column("disabled_at_us", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_reviewers"),
        sa.UniqueConstraint("token_sha256", name="uq_reviewers_token_sha256"),
    )
    op.create_table(
        "tasks",
        sa.Column("task_id", sa.String(200), nullable=False),
        sa.Column("num_labels", sa.Integer(), nullable=False),
        sa.Column("task", sa.LargeBinary(), nullable=False),
        sa.Column("updated_at_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("task_id", name="pk_tasks"),
    )
    op.create_table(
        "queue",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("request_id", sa.String(200), nullable=False),
        sa.Column("task_id", sa.String(200), nullable=False),
        sa.Column("item_id", sa.String(200), nullable=False),
        sa.Column("request", sa.LargeBinary(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("lease_id", sa.String(64), nullable=True),
        sa.Column("lease_deadline_us", sa.BigInteger(), nullable=True),
        sa.Column("enqueued_at_us", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_queue"),
        sa.UniqueConstraint("request_id", name="uq_queue_request_id"),
        sa.UniqueConstraint("task_id", "item_id", name="uq_queue_task_id_item_id"),
    )
    op.create_index("ix_queue_pick", "queue", ["state", sa.text("priority DESC"), "id"])
    op.create_index(
        "ix_queue_task_pick", "queue", ["task_id", "state", sa.text("priority DESC"), "id"]
    )
    op.create_table(
        "leases",
        sa.Column("lease_id", sa.String(64), nullable=False),
        sa.Column("queue_id", sa.BigInteger(), nullable=False),
        sa.Column("request_id", sa.String(200), nullable=False),
        sa.Column("task_id", sa.String(200), nullable=False),
        sa.Column("reviewer_id", sa.String(64), nullable=False),
        sa.Column("leased_at_us", sa.BigInteger(), nullable=False),
        sa.Column("deadline_us", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("ended_at_us", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("lease_id", name="pk_leases"),
    )
    op.create_index("ix_leases_state_deadline", "leases", ["state", "deadline_us"])
    op.create_index("ix_leases_reviewer_state", "leases", ["reviewer_id", "state"])
    op.create_index("ix_leases_task_state", "leases", ["task_id", "state"])
    op.create_table(
        "reviews",
        sa.Column("review_id", sa.String(64), nullable=False),
        sa.Column("request_id", sa.String(200), nullable=False),
        sa.Column("lease_id", sa.String(64), nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=False),
        sa.Column("task_id", sa.String(200), nullable=False),
        sa.Column("item_id", sa.String(200), nullable=False),
        sa.Column("reviewer_id", sa.String(64), nullable=False),
        sa.Column("label_index", sa.Integer(), nullable=False),
        sa.Column("leased_at_us", sa.BigInteger(), nullable=False),
        sa.Column("submitted_at_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("review_id", name="pk_reviews"),
        sa.UniqueConstraint("request_id", name="uq_reviews_request_id"),
        sa.UniqueConstraint("lease_id", name="uq_reviews_lease_id"),
        sa.UniqueConstraint("idempotency_key", name="uq_reviews_idempotency_key"),
    )
    op.create_index("ix_reviews_task_label", "reviews", ["task_id", "label_index"])
    op.create_index("ix_reviews_reviewer_submitted", "reviews", ["reviewer_id", "submitted_at_us"])
    op.create_table(
        "skips",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("request_id", sa.String(200), nullable=False),
        sa.Column("task_id", sa.String(200), nullable=False),
        sa.Column("reviewer_id", sa.String(64), nullable=False),
        sa.Column("lease_id", sa.String(64), nullable=False),
        sa.Column("reason_code", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_skips"),
        sa.UniqueConstraint("lease_id", name="uq_skips_lease_id"),
    )
    op.create_index("ix_skips_request_reviewer", "skips", ["request_id", "reviewer_id"])
    op.create_index("ix_skips_task", "skips", ["task_id"])
    op.create_table(
        "outbox",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("topic", sa.String(100), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.Column("created_at_us", sa.BigInteger(), nullable=False),
        sa.Column("batch", sa.BigInteger(), nullable=True),
        sa.Column("sent_at_us", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
    )
    op.create_index(
        "ix_outbox_unsent",
        "outbox",
        ["id"],
        postgresql_where=sa.text("sent_at_us IS NULL"),
        sqlite_where=sa.text("sent_at_us IS NULL"),
    )
    op.create_index("ix_outbox_batch", "outbox", ["batch"])
    op.create_table(
        "audit_log",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("at_us", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("request_id", sa.String(200), nullable=True),
        sa.Column("lease_id", sa.String(64), nullable=True),
        sa.Column("detail", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_request", "audit_log", ["request_id"])
    op.create_index("ix_audit_at", "audit_log", ["at_us"])


def downgrade() -> None:
    """Drop every table (data is lost)."""
    for table in (
        "audit_log",
        "outbox",
        "skips",
        "reviews",
        "leases",
        "queue",
        "tasks",
        "reviewers",
    ):
        op.drop_table(table)
