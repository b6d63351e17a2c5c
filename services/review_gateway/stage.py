"""Kafka inputs of the gateway: review requests (a Stage) and task definitions.

Review requests are consumed by :class:`ReviewRequestStage` under the runtime's
exactly-once :class:`~services.runtime.runner.StageRunner`. ``process`` inserts
the request into the queue (insert-or-ignore on ``request_id`` and on
``(task_id, item_id)``) and returns no outputs, so the input offset is committed
only after the insert has committed. A crash in between replays the record and
the insert is ignored: one queue entry per request, whatever the redeliveries.

Task definitions (label sets, instructions) come from the compacted topic
``act.tasks``: the gateway's :class:`~services.runtime.tasks.TaskRegistry` (the
same follower every stage uses) reads it from the beginning on every start and
upserts each task into the database. The gateway serves only items whose task
it knows, because it cannot validate a label otherwise; such items wait in the
queue, they are never dropped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import structlog
from act.v1 import review_pb2

from services.review_gateway import metrics
from services.review_gateway.labels import request_item
from services.review_gateway.store import ReviewStore
from services.runtime.retry import PermanentError
from services.runtime.stage import Envelope, Identity, Output, Stage

log = structlog.get_logger(__name__)


class ReviewRequestStage(Stage[review_pb2.ReviewRequest]):
    """act.review.requests -> the durable review queue (no Kafka outputs).

    A database outage must not dead-letter valid requests (a dropped request
    would bias the ACT loss), so ``process`` retries database errors itself for
    up to ``max_outage_s``; after that it calls ``on_fatal`` (the gateway exits
    non-zero and is restarted) and waits to be cancelled, so the record is
    neither committed nor dead-lettered and is consumed again after the
    restart. Only malformed requests raise PermanentError (dead letter).
    """

    name = "review-gateway"
    input_topic = "review_requests"
    input_type = review_pb2.ReviewRequest

    def __init__(
        self,
        store: ReviewStore,
        *,
        max_outage_s: float = 100.0,
        on_fatal: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.max_outage_s = max_outage_s
        self.on_fatal = on_fatal

    def identify(self, message: review_pb2.ReviewRequest) -> Identity:
        """Task and item of the request (they live inside the decision)."""
        item = request_item(message)
        return Identity(task_id=item.task_id, item_id=item.item_id)

    async def process(self, envelope: Envelope[review_pb2.ReviewRequest]) -> Sequence[Output]:
        """Queue the request once; bad requests raise PermanentError (dead letter)."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.max_outage_s
        delay = 0.1
        while True:
            try:
                inserted = await self.store.enqueue(envelope.message)
                break
            except PermanentError:
                raise
            except Exception as exc:
                if loop.time() + delay > give_up:
                    log.error("database_unavailable", error_type=type(exc).__name__)
                    if self.on_fatal is not None:
                        self.on_fatal("database unavailable")
                    await asyncio.Event().wait()  # until the shutdown cancels us
                log.warning("enqueue_retry", error_type=type(exc).__name__, delay_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        if inserted:
            metrics.ENQUEUED.inc()
        else:
            metrics.DUPLICATE_REQUESTS.inc()
        return ()
