"""Reviewer web workspace: web sessions, exposure, queue category, outbox hold.

* ``web_sessions``: browser sessions (the cookie's SHA-256, never the token);
* ``exposure``: seconds per reviewer, task, category and UTC day, and whether
  the daily cap was reached;
* ``queue.category``: the machine label of the request (NULL: unknown; rows
  queued before this revision stay NULL);
* ``outbox.available_at_us``: the relay claims a row only from then on
  (NULL: at once), which gives a submission its undo window.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the two tables and the two nullable columns."""
    op.create_table(
        "web_sessions",
        sa.Column("session_sha256", sa.String(64), nullable=False),
        sa.Column("reviewer_id", sa.String(64), nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("created_at_us", sa.BigInteger(), nullable=False),
        sa.Column("expires_at_us", sa.BigInteger(), nullable=False),
        sa.Column("last_seen_at_us", sa.BigInteger(), nullable=False),
        sa.Column("revoked_at_us", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("session_sha256", name="pk_web_sessions"),
    )
    op.create_index("ix_web_sessions_reviewer_id", "web_sessions", ["reviewer_id"])
    op.create_table(
        "exposure",
        sa.Column("reviewer_id", sa.String(64), nullable=False),
        sa.Column("task_id", sa.String(200), nullable=False),
        sa.Column("label_index", sa.Integer(), nullable=False),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("capped", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("updated_at_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("reviewer_id", "task_id", "label_index", "day", name="pk_exposure"),
    )
    op.create_index("ix_exposure_day", "exposure", ["day"])
    # Nullable columns without defaults: a plain ALTER TABLE ... ADD COLUMN on
    # both back ends (no table rewrite).
    op.add_column("queue", sa.Column("category", sa.Integer(), nullable=True))
    op.add_column("outbox", sa.Column("available_at_us", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    """Drop what :func:`upgrade` added (sessions and exposure are lost)."""
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("available_at_us")
    with op.batch_alter_table("queue") as batch:
        batch.drop_column("category")
    op.drop_table("exposure")
    op.drop_table("web_sessions")
