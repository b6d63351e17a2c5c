"""A review gateway running on its own thread, for browser tests.

Playwright's sync API runs its own event loop, so the gateway (gRPC, web
workspace, store) runs on a second thread with a loop of its own; tests reach
its store through :meth:`LiveGateway.run`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from act.v1 import review_pb2, task_pb2
from sqlalchemy import func, select

from services.review_gateway import schema as s
from services.review_gateway.app import Gateway
from services.review_gateway.settings import GatewaySettings
from services.review_gateway.store import ROLE_ADMIN, ROLE_REVIEWER, ReviewStore

T = TypeVar("T")


class LiveGateway:
    """Start with :meth:`start`; ``url`` is the web workspace's base URL."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.gateway = Gateway(settings, kafka=None, host="127.0.0.1")
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> LiveGateway:
        self._thread.start()
        self.run(self.gateway.start(consume=False, relay=False, reaper=True))
        return self

    def stop(self) -> None:
        try:
            self.run(self.gateway.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        """Run ``coro`` on the gateway's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.gateway.http_port}"

    @property
    def store(self) -> ReviewStore:
        assert self.gateway.store is not None
        return self.gateway.store

    def reviewer(self, name: str, *, admin: bool = False) -> tuple[str, str]:
        """A new reviewer's (id, token)."""
        assert self.gateway.ops is not None
        caller = self.gateway.ops.auth._admin  # the bootstrap admin
        reviewer, token = self.run(
            self.gateway.ops.create_reviewer(caller, name, ROLE_ADMIN if admin else ROLE_REVIEWER)
        )
        return reviewer.id, token

    def task(self, task: task_pb2.Task) -> None:
        self.run(self.store.upsert_task(task))

    def enqueue(self, request: review_pb2.ReviewRequest) -> None:
        assert self.run(self.store.enqueue(request))

    def count(self, table: Any, *where: Any) -> int:
        """Rows of ``table`` matching ``where``."""

        async def go() -> int:
            async with self.store.engine.connect() as conn:
                stmt = select(func.count()).select_from(table)
                for clause in where:
                    stmt = stmt.where(clause)
                return int((await conn.execute(stmt)).scalar_one())

        return self.run(go())

    def reviews_of(self, item_id: str) -> list[tuple[str, int]]:
        """(reviewer id, label) of every review of ``item_id``."""

        async def go() -> list[tuple[str, int]]:
            async with self.store.engine.connect() as conn:
                rows = await conn.execute(
                    select(s.reviews.c.reviewer_id, s.reviews.c.label_index).where(
                        s.reviews.c.item_id == item_id
                    )
                )
                return [(r.reviewer_id, r.label_index) for r in rows]

        return self.run(go())

    def final_labels_of(self, item_id: str) -> int:
        """Outbox rows (FinalLabels) keyed by ``item_id``."""
        return self.count(s.outbox, s.outbox.c.key == item_id)

    def lease_states(self, reviewer_id: str) -> list[str]:
        async def go() -> list[str]:
            async with self.store.engine.connect() as conn:
                rows = await conn.execute(
                    select(s.leases.c.state).where(s.leases.c.reviewer_id == reviewer_id)
                )
                return [r.state for r in rows]

        return self.run(go())
