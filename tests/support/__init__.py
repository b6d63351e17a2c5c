"""Helpers for the test suite (local Kafka broker and PostgreSQL, see ``stack``)."""

from tests.support.stack import LocalBroker, LocalPostgres, StackCommandError, free_port

__all__ = ["LocalBroker", "LocalPostgres", "StackCommandError", "free_port"]
