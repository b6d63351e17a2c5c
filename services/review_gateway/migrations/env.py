"""Alembic environment of the review gateway.

Migrations run on the connection that :func:`services.review_gateway.db.migrate`
passes in ``config.attributes["connection"]``; there is no alembic.ini and no
URL here (run them with ``python -m services.review_gateway migrate``).
"""

from __future__ import annotations

from alembic import context

from services.review_gateway.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through services.review_gateway.db.migrate")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
