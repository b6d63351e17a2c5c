"""Alembic migrations of the review gateway's database."""
