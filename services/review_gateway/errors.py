"""Domain errors of the review gateway, each tied to one gRPC status code."""

from __future__ import annotations

import grpc
import psycopg
from sqlalchemy import exc as sa_exc


class GatewayError(Exception):
    """A refused operation; ``code`` is the gRPC status the API answers with.

    Messages name ids and numbers only, never item content or tokens.
    """

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL


class InvalidArgument(GatewayError):
    """Malformed input, e.g. a label index outside the task's label set."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(GatewayError):
    """Unknown lease, reviewer or task."""

    code = grpc.StatusCode.NOT_FOUND


class FailedPrecondition(GatewayError):
    """The lease is no longer active (expired, released, skipped or revoked)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class AlreadyExists(GatewayError):
    """An idempotency key or lease was already used for a different submission."""

    code = grpc.StatusCode.ALREADY_EXISTS


class Unauthenticated(GatewayError):
    """No bearer token, an unknown token, or a disabled reviewer's token."""

    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(GatewayError):
    """Authenticated, but not allowed: another reviewer's lease, or an admin RPC."""

    code = grpc.StatusCode.PERMISSION_DENIED


def describe_error(exc: BaseException) -> str:
    """A log-safe description of an unexpected error.

    SQLAlchemy statement errors render their SQL parameters, which can hold
    item content (request and label bytes): only their types are kept.
    """
    from sqlalchemy.exc import StatementError

    if isinstance(exc, StatementError):
        return f"{type(exc).__name__}({type(exc.orig).__name__})"
    return f"{type(exc).__name__}: {exc}"[:300]


def is_unavailable(exc: BaseException) -> bool:
    """Connection-level database errors (the caller should retry)."""
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(
        exc,
        sa_exc.OperationalError
        | sa_exc.InterfaceError
        | sa_exc.TimeoutError
        | psycopg.OperationalError
        | psycopg.InterfaceError
        | OSError,
    )
