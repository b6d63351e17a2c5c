"""What every part of the store shares: engine, transactions, retries, audit, ids, time.

Concurrency: PostgreSQL runs at READ COMMITTED and serialises on row locks
(taken by ``UPDATE`` and ``SELECT ... FOR UPDATE``; leasing and the reaper
use ``SKIP LOCKED`` so concurrent reviewers never wait for each other). Locks
are always taken lease first, then queue entry. SQLite serialises whole write transactions
(``BEGIN IMMEDIATE`` plus an in-process lock): it is the single-replica
embedded default.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg.rows import dict_row
from sqlalchemy import Table, insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.review_gateway import schema as s
from services.review_gateway.db import READ_ONLY_OPTION
from services.review_gateway.pgpool import PgConnectionPool
from services.review_gateway.store.atomic import AtomicWrite, Params, Row, Statement, pg_sql

T = TypeVar("T")

#: Errors worth running a transaction again for: a unique-key race lost to a
#: concurrent writer, or a lock/connection timeout.
RETRYABLE = (IntegrityError, OperationalError, psycopg.IntegrityError, psycopg.OperationalError)
#: A unique key taken by a concurrent writer (either driver layer).
INTEGRITY_ERRORS = (IntegrityError, psycopg.IntegrityError)


def now_us() -> int:
    """Wall-clock time in integer microseconds since the epoch."""
    return time.time_ns() // 1000


def new_id(prefix: str) -> str:
    """A random id with a readable prefix (``ls_``, ``rev_``, ``usr_``)."""
    return f"{prefix}{uuid.uuid4().hex}"


def audit_row(
    at_us: int,
    actor: str,
    action: str,
    request_id: str | None = None,
    lease_id: str | None = None,
    detail: str = "",
) -> dict[str, Any]:
    """One ``audit_log`` row (ids and numbers only, never content or tokens)."""
    return {
        "at_us": at_us,
        "actor": actor,
        "action": action,
        "request_id": request_id,
        "lease_id": lease_id,
        "detail": detail,
    }


async def write_audit(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    """Insert audit rows in the transaction of the change they record."""
    if rows:
        await conn.execute(insert(s.audit_log), list(rows))


class StoreCore:
    """The database handles and change signals shared by the store's parts."""

    def __init__(self, engine: AsyncEngine, *, schema: str = "", hot_pool_size: int = 20) -> None:
        self.engine = engine
        self.sqlite = engine.dialect.name == "sqlite"
        #: Read-only work (statistics, token lookups): a plain deferred BEGIN on SQLite.
        self.reader = engine.execution_options(**{READ_ONLY_OPTION: True})
        #: Raw psycopg connections for Lease and Submit on PostgreSQL (see atomic).
        self._hot: PgConnectionPool | None = None
        if not self.sqlite:
            conninfo = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
            self._hot = PgConnectionPool(conninfo, hot_pool_size, schema)
        self._write_lock = asyncio.Lock() if self.sqlite else None
        #: Set whenever an entry may have become leasable (long polls wait on it).
        self.queue_changed = asyncio.Event()
        #: Set whenever an outbox row was added (wakes the relay early).
        self.outbox_changed = asyncio.Event()

    async def close(self) -> None:
        """Close the connection pools."""
        if self._hot is not None:
            await self._hot.close()
        await self.engine.dispose()

    @contextlib.asynccontextmanager
    async def tx(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction through SQLAlchemy (serialised in-process on SQLite)."""
        if self._write_lock is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self._write_lock, self.engine.begin() as conn:
            yield conn

    async def read(self, stmt: Statement, params: Params) -> Sequence[Row]:
        """Rows of a query of the hot calls (one autocommit statement on PostgreSQL)."""
        if self._hot is None:
            async with self.reader.connect() as conn:
                return (await conn.execute(stmt, dict(params))).mappings().all()
        return await self._pg(stmt, params)

    async def execute(self, stmt: Statement, params: Params) -> None:
        """One single-table write without results: autocommit on PostgreSQL's fast
        path, one write transaction on SQLite. ``stmt`` must be a module-level
        statement with bind parameters (its compiled SQL is cached per object)."""
        if self._hot is None:
            async with self.tx() as conn:
                await conn.execute(stmt, dict(params))
            return
        sql, constants = pg_sql(stmt)
        async with self._hot.connection() as conn:
            await conn.execute(sql, {**constants, **params})

    async def write(self, write: AtomicWrite, params: Params) -> Sequence[Row]:
        """Run a guarded write atomically; its result rows (none: the guard failed).

        One statement on PostgreSQL; one write transaction on SQLite.
        """
        if self._hot is not None:
            return await self._pg(write.postgresql, params)
        anchor, steps = write.sqlite
        values = dict(params)
        async with self.tx() as conn:
            rows = (await conn.execute(anchor, values)).mappings().all()
            if not rows:
                return rows
            for index, stmt in enumerate(steps):
                result = await conn.execute(stmt, values)
                if index == write.result:
                    rows = result.mappings().all()
        return rows

    async def _pg(self, stmt: Statement, params: Params) -> Sequence[Row]:
        assert self._hot is not None
        sql, constants = pg_sql(stmt)
        async with self._hot.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(sql, {**constants, **params})
            return await cursor.fetchall()

    async def retrying(self, attempts: int, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run a transaction, retrying on unique-key races and lock timeouts."""
        for attempt in range(1, attempts + 1):
            try:
                return await fn(*args)
            except RETRYABLE:
                if attempt == attempts:
                    raise
                await asyncio.sleep(0.01 * attempt)
        raise AssertionError("unreachable")

    def dialect_insert(self, table: Table) -> Any:
        """The back end's INSERT construct (both offer ``on_conflict_do_*``)."""
        if self.sqlite:
            return sqlite.insert(table)
        return postgresql.insert(table)

    def insert_ignore(self, table: Table) -> Any:
        """``INSERT ... ON CONFLICT DO NOTHING`` for the back end."""
        return self.dialect_insert(table).on_conflict_do_nothing()

    def notify_queue(self) -> None:
        """Wake long polls: an entry may have become leasable."""
        self.queue_changed.set()
