"""The clients of a chaos run: a producer streaming through the ingest service and
the replay reviewer, both retrying through every restart.

:class:`IngestFeed` streams items in calls of ``batch`` items at a steady
rate (so the stream spans the planned kills). A call that fails (the ingest
service killed, the broker or the database down) is sent again whole: ids
the ledger already holds come back as duplicates, so nothing is published
twice outside the ledger's crash window. Items refused with UNAVAILABLE are
sent again; any other refusal is kept and reported.

:func:`review_until_stopped` runs the
:class:`~services.review_gateway.replay.ReplayReviewer` and starts it again
when a call fails for good (it retries transient codes itself); its
``accepted`` map (item id -> review id) survives the restarts.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import grpc
from act.v1 import api_pb2, api_pb2_grpc, item_pb2, task_pb2

from services.review_gateway.auth import bearer_metadata
from services.review_gateway.replay import CHANNEL_OPTIONS, RETRYABLE, ReplayReviewer

_UNAVAILABLE = grpc.StatusCode.UNAVAILABLE.value[0]


@dataclass
class IngestTally:
    """What the ingest service answered over the whole run."""

    accepted_ids: set[str] = field(default_factory=set)
    accepted: int = 0  # IngestSummary.accepted, summed
    duplicates: int = 0  # IngestSummary.duplicates, summed (retried streams)
    refused: dict[str, str] = field(default_factory=dict)  # item id -> message
    failed_calls: int = 0
    done: bool = False


async def _with_retries(what: str, call: object, deadline_s: float) -> object:
    """Await ``call()`` until it succeeds or a non-retryable code (bounded by time)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + deadline_s
    delay = 0.2
    while True:
        try:
            return await call()  # type: ignore[operator]
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in RETRYABLE or loop.time() + delay > deadline:
                raise RuntimeError(f"{what} failed: {exc.code().name} {exc.details()}") from exc
            await asyncio.sleep(delay)
            delay = min(delay * 2, 3.0)


async def create_reviewer(target: str, admin_token: str, deadline_s: float = 120.0) -> str:
    """A reviewer token from the gateway (CreateReviewer with the admin token)."""
    async with grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS) as channel:
        stub = api_pb2_grpc.ReviewServiceStub(channel)

        async def call() -> api_pb2.CreateReviewerResponse:
            return await stub.CreateReviewer(
                api_pb2.CreateReviewerRequest(name="chaos-replay"),
                metadata=bearer_metadata(admin_token),
                timeout=10,
            )

        created = await _with_retries("CreateReviewer", call, deadline_s)
    return str(created.token)  # type: ignore[attr-defined]


class IngestFeed:
    """Streams items through ``IngestService.Ingest`` (see the module docstring)."""

    def __init__(
        self, target: str, token: str, *, rate: float, batch: int, call_deadline_s: float = 600.0
    ) -> None:
        self.target = target
        self.metadata = bearer_metadata(token)
        self.rate = rate
        self.batch = batch
        self.call_deadline_s = call_deadline_s
        self.tally = IngestTally()
        self._next_at = 0.0

    async def create_task(self, task: task_pb2.Task, deadline_s: float = 120.0) -> task_pb2.Task:
        """CreateTask (idempotent for the same definition, so safe to retry)."""
        async with grpc.aio.insecure_channel(self.target, options=CHANNEL_OPTIONS) as channel:
            stub = api_pb2_grpc.IngestServiceStub(channel)

            async def call() -> task_pb2.Task:
                return await stub.CreateTask(
                    api_pb2.CreateTaskRequest(task=task), metadata=self.metadata, timeout=10
                )

            created = await _with_retries("CreateTask", call, deadline_s)
        assert isinstance(created, task_pb2.Task)
        return created

    async def _paced(self, items: Sequence[item_pb2.Item]) -> AsyncIterator[item_pb2.Item]:
        loop = asyncio.get_running_loop()
        for item in items:
            self._next_at = max(self._next_at + 1.0 / self.rate, loop.time() - 1.0)
            wait = self._next_at - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            yield item

    async def stream(self, items: Sequence[item_pb2.Item]) -> IngestTally:
        """Stream every item, one call per ``batch``, until each is accepted or refused."""
        async with grpc.aio.insecure_channel(self.target, options=CHANNEL_OPTIONS) as channel:
            stub = api_pb2_grpc.IngestServiceStub(channel)
            for start in range(0, len(items), self.batch):
                await self._send(stub, list(items[start : start + self.batch]))
        self.tally.done = True
        return self.tally

    async def _send(self, stub: api_pb2_grpc.IngestServiceStub, todo: list[item_pb2.Item]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.call_deadline_s
        delay = 0.2
        while todo:
            try:
                summary = await stub.Ingest(self._paced(todo), metadata=self.metadata, timeout=120)
            except grpc.aio.AioRpcError as exc:
                self.tally.failed_calls += 1
                if exc.code() not in RETRYABLE or loop.time() > deadline:
                    raise RuntimeError(
                        f"Ingest failed for good: {exc.code().name} {exc.details()}"
                    ) from exc
                await asyncio.sleep(delay)  # the service (or Kafka, or the database) restarts
                delay = min(delay * 2, 3.0)
                continue
            again: set[str] = set()
            for error in summary.errors:
                if error.code == _UNAVAILABLE:
                    again.add(error.item_id)
                else:
                    self.tally.refused[error.item_id] = error.message
            if summary.rejected > len(summary.errors):
                raise RuntimeError("more refusals than IngestSummary reports: raise the limit")
            self.tally.accepted += summary.accepted
            self.tally.duplicates += summary.duplicates
            for item in todo:
                if item.item_id not in again and item.item_id not in self.tally.refused:
                    self.tally.accepted_ids.add(item.item_id)
            todo = [i for i in todo if i.item_id in again]


async def review_until_stopped(reviewer: ReplayReviewer, stopping: asyncio.Event) -> int:
    """Run the replay reviewer until ``stopping`` is set; returns how often it was restarted."""
    restarts = 0
    while not stopping.is_set():
        try:
            await reviewer.run()
        except grpc.aio.AioRpcError:
            restarts += 1  # a non-transient code while the gateway or database restarts
            await asyncio.sleep(1.0)
    return restarts
