"""Per-partition ordering for the sampler stage: an ordered executor.

The runner processes a partition's records concurrently and commits their
outputs in offset order. Streaming state must also *change* in offset order;
that lives here, free of any sampling logic. (Who owns a partition is the
runner's business: it tells the stage with ``on_assigned``/``on_revoked``.)
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from services.runtime.retry import PermanentError, RetryableError


class Job:
    """One record's ordered work in its partition's :class:`OrderedExecutor`."""

    __slots__ = ("done", "final", "offset", "work")

    def __init__(self, offset: int) -> None:
        self.offset = offset
        #: The work, or None while it may not run (failed and waiting for its
        #: retry, or its task cancelled): the queue stops there.
        self.work: Callable[[], Awaitable[Any]] | None = None
        self.done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        #: The runner will not retry this attempt: on failure the job leaves.
        self.final = False


class OrderedExecutor:
    """Runs the records of one partition one at a time, strictly in offset order.

    A lock would do that too, but every hand-over from one waiting task to
    the next costs an event-loop iteration, so once a queue forms (behind a
    state restore, say) a partition moves at one record per iteration and the
    queue never drains. Here the task that finds nobody running becomes the
    *drainer* and runs the queued jobs back to back; the other tasks just
    await their outcome. An inline drainer hands the rest of a long queue to a
    background drain once its own job is done, so no record's handler time
    grows with the queue.

    A job whose work fails keeps its place at the head: later records wait
    for its retry (which calls :meth:`submit` again with the same offset)
    instead of overtaking it. It leaves on success, on a
    :class:`~services.runtime.retry.PermanentError` and on its last attempt.
    A job whose task is cancelled also keeps its place (work withdrawn): only
    its retry or a :meth:`reset` lets the queue past it, so no job ever runs
    for a record its runner no longer waits for.
    """

    #: An inline drainer keeps draining past its own job at most this long.
    inline_drain_s = 0.5

    def __init__(self) -> None:
        self._jobs: deque[Job] = deque()
        self._by_offset: dict[int, Job] = {}
        self._draining = False
        self._background: asyncio.Task[None] | None = None

    def submit(self, offset: int, *, final: bool) -> Job:
        """Take (or, for a retry, find) the record's place; call before any await."""
        job = self._by_offset.get(offset)
        if job is None:
            job = Job(offset)
            self._jobs.append(job)
            self._by_offset[offset] = job
        elif job.done.done():  # a retry: a fresh outcome for this attempt
            job.done = asyncio.get_running_loop().create_future()
        job.final = final
        return job

    async def run(self, job: Job, work: Callable[[], Awaitable[Any]]) -> Any:
        """Make ``job`` runnable with ``work``; its result (or exception) once run in order."""
        job.work = work
        try:
            if not self._draining:
                await self._drain(until=job)
            return await job.done
        except asyncio.CancelledError:
            if not job.done.done():
                job.work = None  # hold the place for the retry (or a reset)
            raise

    def kick(self) -> None:
        """Drain in the background (after the head changed outside a drain)."""
        if self._draining or not self._jobs or self._jobs[0].work is None:
            return
        self._background = asyncio.get_running_loop().create_task(self._drain(until=None))

    async def _drain(self, until: Job | None) -> None:
        self._draining = True
        started = time.monotonic()
        handed_over = False
        try:
            while self._jobs and self._jobs[0].work is not None:
                own_done = until is not None and until.done.done()
                if own_done and time.monotonic() - started > self.inline_drain_s:
                    handed_over = True  # the rest goes to a background drain
                    break
                job = self._jobs[0]
                work, job.work = job.work, None
                assert work is not None
                try:
                    result = await work()
                except PermanentError as exc:
                    self._pop(job)
                    job.done.set_exception(exc)
                except asyncio.CancelledError:
                    # This task is being cancelled. The job (maybe another task's)
                    # keeps its place and is retried; the cancellation goes on.
                    if not job.done.done():
                        job.done.set_exception(RetryableError("interrupted, retry"))
                    raise
                except Exception as exc:
                    if job.final:
                        self._pop(job)
                    job.done.set_exception(exc)
                    if not job.final:
                        return  # held: nothing after it runs before its retry
                else:
                    self._pop(job)
                    job.done.set_result(result)
        finally:
            self._draining = False
        if handed_over:
            self.kick()

    def _pop(self, job: Job) -> None:
        if self._jobs and self._jobs[0] is job:
            self._jobs.popleft()
        self._by_offset.pop(job.offset, None)

    def reset(self) -> None:
        """Forget every job (the partition was revoked)."""
        self._jobs.clear()
        self._by_offset.clear()
