"""The store side of the transactional outbox (the relay is ``review_gateway.relay``).

:meth:`~.reviews.Reviews.submit` inserts each FinalLabel as an ``outbox`` row
in the submission's transaction. The relay claims unsent rows under a batch
number, publishes them in one Kafka transaction and marks them sent
afterwards; :meth:`Outbox.outbox_mark_batch_sent` finishes a batch whose Kafka
commit happened before a crash.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, or_, select, update

from services.review_gateway import schema as s
from services.review_gateway.store.base import StoreCore, audit_row, now_us, write_audit
from services.review_gateway.store.rows import SYSTEM, OutboxRow

_o = s.outbox


class Outbox:
    """Claiming and marking outbox rows."""

    def __init__(self, core: StoreCore) -> None:
        self._core = core

    async def outbox_claim(self, batch: int, limit: int) -> list[OutboxRow]:
        """Tag up to ``limit`` unsent rows (oldest first) with ``batch``; return them.

        A row held for an undo window (``available_at_us`` in the future) is
        left alone until then. Claiming locks the rows it tags, and
        :meth:`~.undo.Undo.undo` deletes a row only while it is untagged, so a
        claim and an undo of the same row never both win.
        """
        at = now_us()
        async with self._core.tx() as conn:
            rows = (
                await conn.execute(
                    select(_o.c.id, _o.c.topic, _o.c.key, _o.c.value)
                    .where(
                        _o.c.sent_at_us.is_(None),
                        or_(_o.c.available_at_us.is_(None), _o.c.available_at_us <= at),
                    )
                    .order_by(_o.c.id)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if rows:
                await conn.execute(
                    update(_o).where(_o.c.id.in_([r.id for r in rows])).values(batch=batch)
                )
        return [OutboxRow(id=r.id, topic=r.topic, key=r.key, value=r.value) for r in rows]

    async def outbox_mark_sent(self, ids: Sequence[int], batch: int) -> int:
        """Record that rows ``ids`` were committed to Kafka in transaction ``batch``."""
        if not ids:
            return 0
        at = now_us()
        async with self._core.tx() as conn:
            result = await conn.execute(
                update(_o)
                .where(_o.c.id.in_(list(ids)), _o.c.sent_at_us.is_(None))
                .values(sent_at_us=at, batch=batch)
            )
            await write_audit(
                conn,
                [audit_row(at, SYSTEM, "published", detail=f"batch={batch} rows={len(ids)}")],
            )
        return int(result.rowcount)

    async def outbox_mark_batch_sent(self, batch: int) -> int:
        """Recovery: mark every unsent row tagged ``batch`` as sent; returns how many."""
        at = now_us()
        async with self._core.tx() as conn:
            result = await conn.execute(
                update(_o)
                .where(_o.c.batch == batch, _o.c.sent_at_us.is_(None))
                .values(sent_at_us=at)
            )
            count = int(result.rowcount)
            if count:
                await write_audit(
                    conn,
                    [
                        audit_row(
                            at,
                            SYSTEM,
                            "published",
                            detail=f"batch={batch} rows={count} recovered=1",
                        )
                    ],
                )
        return count

    async def outbox_next_available_us(self) -> int | None:
        """When the earliest held unsent row becomes claimable (None: no row is held).

        The relay may sleep until then instead of polling for held rows.
        """
        async with self._core.reader.connect() as conn:
            found = (
                await conn.execute(
                    select(func.min(_o.c.available_at_us)).where(
                        _o.c.sent_at_us.is_(None), _o.c.available_at_us.is_not(None)
                    )
                )
            ).scalar_one_or_none()
        return None if found is None else int(found)

    async def outbox_unsent(self) -> int:
        """Rows not yet published (a gauge and a test hook)."""
        async with self._core.reader.connect() as conn:
            return int(
                (
                    await conn.execute(
                        select(func.count()).select_from(_o).where(_o.c.sent_at_us.is_(None))
                    )
                ).scalar_one()
            )
