"""A small pool of raw psycopg connections for the gateway's hot statements.

Lease and Submit on PostgreSQL are one or two SQL statements each (see
``store.atomic``). Sent through SQLAlchemy's asyncio layer they cost about
2.2 ms of CPU per lease + submit round trip on the reference machine; through
psycopg directly about 0.7 ms, which is what lets one gateway process serve
well over 300 round trips per second. Everything else (migrations, the
transactional slow paths, statistics) stays on SQLAlchemy.

Connections run in autocommit mode: every statement is its own transaction.
A connection is reused after an exception only if it is open and outside a
transaction (a domain error raised between statements); otherwise closed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import psycopg


class PgConnectionPool:
    """At most ``size`` autocommit connections, opened lazily, reused LIFO."""

    def __init__(self, conninfo: str, size: int, schema: str = "") -> None:
        self._conninfo = conninfo
        self._options = f"-csearch_path={schema}" if schema else ""
        self._idle: list[psycopg.AsyncConnection[tuple[object, ...]]] = []
        self._slots = asyncio.Semaphore(size)
        self._closed = False

    async def _open(self) -> psycopg.AsyncConnection[tuple[object, ...]]:
        kwargs: dict[str, object] = {"autocommit": True}
        if self._options:
            kwargs["options"] = self._options
        return await psycopg.AsyncConnection.connect(self._conninfo, **kwargs)  # type: ignore[arg-type]

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[tuple[object, ...]]]:
        """Borrow a connection for a few statements."""
        if self._closed:
            raise RuntimeError("pool closed")
        async with self._slots:
            conn = self._idle.pop() if self._idle else await self._open()
            try:
                yield conn
            finally:
                idle = (
                    not conn.closed
                    and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
                )
                if idle and not self._closed:
                    self._idle.append(conn)
                else:
                    with contextlib.suppress(Exception):
                        await conn.close()

    async def close(self) -> None:
        """Close idle connections; borrowed ones close when given back."""
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            with contextlib.suppress(Exception):
                await conn.close()
