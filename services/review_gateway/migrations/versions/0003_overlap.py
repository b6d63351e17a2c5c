"""Overlap and adjudication; per-reviewer blur.

* ``reviews.round``: 1 for the first review of an item, 2 for the second
  reviewer's (the task's overlap share). ``(request_id, round)`` is unique in
  place of ``request_id``: at most two reviews per item, one per round.
* ``adjudications``: an admin's decision on an item whose two reviews
  disagreed (at most one per request), the source of its FinalLabel.
* ``reviewers.blur_px``: the reviewer's image blur (NULL: the server default).

Existing reviews become round 1, which they are.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the round, the adjudications table and the blur column."""
    with op.batch_alter_table("reviews") as batch:
        batch.add_column(
            sa.Column("round", sa.Integer(), server_default=sa.text("1"), nullable=False)
        )
        batch.drop_constraint("uq_reviews_request_id", type_="unique")
        batch.create_unique_constraint("uq_reviews_request_id_round", ["request_id", "round"])
    op.create_table(
        "adjudications",
        sa.Column("request_id", sa.String(200), nullable=False),
        sa.Column("adjudication_id", sa.String(64), nullable=False),
        sa.Column("task_id", sa.String(200), nullable=False),
        sa.Column("item_id", sa.String(200), nullable=False),
        sa.Column("admin_id", sa.String(64), nullable=False),
        sa.Column("label_index", sa.Integer(), nullable=False),
        sa.Column("at_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("request_id", name="pk_adjudications"),
        sa.UniqueConstraint("adjudication_id", name="uq_adjudications_adjudication_id"),
    )
    op.create_index("ix_adjudications_task_id", "adjudications", ["task_id"])
    op.add_column("reviewers", sa.Column("blur_px", sa.Integer(), nullable=True))


def downgrade() -> None:
    """Drop what :func:`upgrade` added; refused while an item has two reviews."""
    with op.batch_alter_table("reviewers") as batch:
        batch.drop_column("blur_px")
    op.drop_table("adjudications")
    with op.batch_alter_table("reviews") as batch:
        batch.drop_constraint("uq_reviews_request_id_round", type_="unique")
        batch.create_unique_constraint("uq_reviews_request_id", ["request_id"])
        batch.drop_column("round")
