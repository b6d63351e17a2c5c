"""The durable per-task ledger of accepted item ids (table ``ingest_ledger``).

An id is recorded only after Kafka acknowledged its record (acks=all), so the
ledger never claims an item that is not on the items topic. It lives in the
review gateway's database (SQLAlchemy Core: PostgreSQL in production, SQLite
for local development, one code path), in its own table that the service
creates if missing; the gateway's migrations do not know it.

The remaining crash window: the service crashes (SIGKILL, power loss, lost
database connection) after Kafka acknowledged a chunk of records and before
the transaction that records their ids commits. Those records are on the
topic but not in the ledger; the client saw no summary for the stream and
retries it, and the retry publishes them a second time. So an item is
published at least once and, outside that window, exactly once; the window
is one chunk (at most ``max_in_flight`` items) per stream, and only a crash
of the process or of its database connection opens it (a dropped client
connection does not: the chunk in progress is finished and recorded before
the call ends, see :mod:`services.ingest.ops`).

Within one process, streams never send the same id at the same time (the
second waits for the first to record it). Across replicas nothing
coordinates them: two streams carrying the same new id that reach two
replicas at the same moment can both publish it. A retry after a dropped
connection is such a pair only if it reaches another replica while the first
one is still finishing its last chunk (milliseconds).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

from sqlalchemy import BigInteger, Column, MetaData, PrimaryKeyConstraint, String, Table, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from services.review_gateway.db import READ_ONLY_OPTION, is_sqlite
from services.review_gateway.store import now_us

_metadata = MetaData()
ledger_table = Table(
    "ingest_ledger",
    _metadata,
    Column("task_id", String(256), nullable=False),
    Column("item_id", String(256), nullable=False),
    Column("accepted_at_us", BigInteger, nullable=False),
    PrimaryKeyConstraint("task_id", "item_id", name="ingest_ledger_pk"),
)
#: Ids per statement (well below SQLite's and PostgreSQL's parameter limits).
_CHUNK = 500


class Ledger:
    """Which (task, item) ids were accepted, over an async engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def create(self) -> None:
        """Create the table if it is missing (idempotent, safe with several replicas)."""
        async with self.engine.begin() as conn:
            await conn.run_sync(_metadata.create_all, checkfirst=True)

    async def known(self, task_id: str, item_ids: Collection[str]) -> set[str]:
        """The ids among ``item_ids`` already accepted for ``task_id``."""
        found: set[str] = set()
        ids = list(item_ids)
        # Read-only: on SQLite a deferred BEGIN that never blocks the writers.
        reader = self.engine.execution_options(**{READ_ONLY_OPTION: True})
        async with reader.connect() as conn:
            for start in range(0, len(ids), _CHUNK):
                rows = await conn.execute(
                    select(ledger_table.c.item_id).where(
                        ledger_table.c.task_id == task_id,
                        ledger_table.c.item_id.in_(ids[start : start + _CHUNK]),
                    )
                )
                found.update(row[0] for row in rows)
        return found

    async def record(self, accepted: Iterable[tuple[str, str]]) -> None:
        """Record (task id, item id) pairs in one transaction; existing ones are kept."""
        at = now_us()
        rows = [{"task_id": t, "item_id": i, "accepted_at_us": at} for t, i in accepted]
        if not rows:
            return
        async with self.engine.begin() as conn:
            for start in range(0, len(rows), _CHUNK):
                await conn.execute(self._insert_ignore(), rows[start : start + _CHUNK])

    def _insert_ignore(self) -> Any:
        # A concurrent stream may have recorded the same id: keep the first.
        dialect = sqlite if is_sqlite(self.engine) else postgresql
        return dialect.insert(ledger_table).on_conflict_do_nothing()
