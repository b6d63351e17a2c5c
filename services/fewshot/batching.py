"""Micro-batching of concurrent single-item calls into one CPU call in a thread.

The annotator and criticizer services call a backend once per item, with
many items in flight. For the few-shot models one call per item wastes most
of the time in per-call overhead (a transformer forward pass on one text
costs nearly as much as on 32); so concurrent calls are gathered for a short
moment and run together, off the event loop, in one worker thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


class MicroBatcher(Generic[In, Out]):
    """Runs ``fn(batch) -> results`` (same length, same order) for gathered inputs.

    A caller awaits :meth:`submit`; the first call of a quiet period starts a
    flusher that waits ``max_wait_s`` for company, then runs batches of at most
    ``max_batch`` inputs with :func:`asyncio.to_thread` until none are left.
    An exception of ``fn`` fails every call of that batch (callers validate
    their own input first, so one bad item cannot fail its neighbours).
    """

    def __init__(
        self,
        fn: Callable[[list[In]], Sequence[Out]],
        *,
        max_batch: int = 64,
        max_wait_s: float = 0.002,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        self.fn = fn
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._pending: list[tuple[In, asyncio.Future[Out]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.batches = 0  # batches run so far (for tests and metrics)

    async def submit(self, value: In) -> Out:
        """The result of ``fn`` for ``value``, computed in some batch."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a new event loop (tests): forget the old one's state
            self._loop, self._pending, self._flusher = loop, [], None
        future: asyncio.Future[Out] = loop.create_future()
        self._pending.append((value, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        await asyncio.sleep(self.max_wait_s)
        while self._pending:
            batch = self._pending[: self.max_batch]
            del self._pending[: self.max_batch]
            live = [(v, f) for v, f in batch if not f.done()]  # skip cancelled callers
            if not live:
                continue
            try:
                results = await asyncio.to_thread(self.fn, [v for v, _ in live])
                if len(results) != len(live):
                    raise RuntimeError(
                        f"batch function returned {len(results)} results for {len(live)} inputs"
                    )
            except Exception as exc:
                for _, future in live:
                    if not future.done():
                        future.set_exception(exc)
                continue
            self.batches += 1
            for (_, future), result in zip(live, results, strict=True):
                if not future.done():
                    future.set_result(result)
