"""Domain errors of the review gateway, each tied to one gRPC status code."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc
import psycopg
import structlog
from prometheus_client import Counter, Histogram
from sqlalchemy import exc as sa_exc

T = TypeVar("T")

log = structlog.get_logger(__name__)


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


async def answer_rpc(
    method: str,
    context: grpc.aio.ServicerContext,
    call: Callable[[], Awaitable[T]],
    *,
    calls: Counter,
    latency: Histogram,
    unavailable: Callable[[BaseException], bool] = is_unavailable,
    unavailable_message: str = "database unavailable, retry",
) -> T:
    """Run one RPC of a gRPC edge (the gateway's, the ingest service's) and map its outcome.

    A :class:`GatewayError` aborts with its own code and message; ``TimeoutError``
    with DEADLINE_EXCEEDED; an error ``unavailable`` recognises with UNAVAILABLE
    (the client may retry); anything else with INTERNAL and a log line that
    names only the error's type (messages can quote SQL parameters, i.e. item
    content). Every call is counted in ``calls`` by method and code and timed in
    ``latency``.
    """
    started = time.perf_counter()
    code = grpc.StatusCode.OK
    try:
        return await call()
    except GatewayError as exc:
        code = exc.code
        await context.abort(exc.code, str(exc))
        raise AssertionError("abort returned") from None
    except TimeoutError:
        code = grpc.StatusCode.DEADLINE_EXCEEDED
        await context.abort(code, "deadline exceeded")
        raise AssertionError("abort returned") from None
    except asyncio.CancelledError:
        code = grpc.StatusCode.CANCELLED
        raise
    except Exception as exc:
        if isinstance(exc, grpc.aio.AbortError):
            raise
        if unavailable(exc):
            code = grpc.StatusCode.UNAVAILABLE
            log.warning("rpc_unavailable", method=method, error_type=type(exc).__name__)
            await context.abort(code, unavailable_message)
        code = grpc.StatusCode.INTERNAL
        log.error("rpc_failed", method=method, error_type=type(exc).__name__)
        await context.abort(code, "internal error")
        raise AssertionError("abort returned") from None
    finally:
        calls.labels(method=method, code=code.name).inc()
        latency.labels(method=method).observe(time.perf_counter() - started)
