"""Fits run one at a time, in the order they were queued, in one background thread.

A fit is created QUEUED in the store (idempotent by key), picked up by the
worker, and run by :class:`~services.trainer.fitrun.FitRunner`. Stopping the
queue interrupts the running fit between two batches: it stays RUNNING in
the store, and :meth:`FitQueue.start` of the next process queues it again
(with every fit still QUEUED), so it resumes from its last checkpoint.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from dataclasses import dataclass, field

import structlog
import torch
from act.v1 import training_pb2

from services.trainer.events import now_timestamp
from services.trainer.fitrun import FitRunner
from services.trainer.store import TrainerStore

log = structlog.get_logger(__name__)

#: States a fit never leaves.
TERMINAL_STATES = (
    training_pb2.FIT_STATE_SUCCEEDED,
    training_pb2.FIT_STATE_FAILED,
    training_pb2.FIT_STATE_CANCELLED,
)
_PENDING_STATES = (training_pb2.FIT_STATE_QUEUED, training_pb2.FIT_STATE_RUNNING)


class FitInterruptedError(RuntimeError):
    """The process is stopping; the fit stays RUNNING and resumes after a restart."""


@dataclass
class _Running:
    """The fit the worker runs (a :class:`~services.trainer.fitrun.FitControl`)."""

    fit_id: str
    stopping: threading.Event
    cancel: threading.Event = field(default_factory=threading.Event)
    reason: str = ""

    def cancelled(self) -> bool:
        if self.stopping.is_set():
            raise FitInterruptedError(self.fit_id)
        return self.cancel.is_set()


class FitQueue:
    """Queues fits and runs them one at a time in a worker thread; cancels and recovers them."""

    def __init__(
        self,
        store: TrainerStore,
        runner: FitRunner,
        *,
        min_new_labels: int = 0,
        torch_threads: int = 0,
    ) -> None:
        self.store = store
        self.runner = runner
        self.min_new_labels = min_new_labels
        self.torch_threads = torch_threads
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._running: _Running | None = None
        self._lock = threading.Lock()
        self._auto_lock = threading.Lock()  # one check-then-submit at a time
        self._queued: set[str] = set()

    def start(self) -> None:
        """Start the worker and re-queue fits that were queued or running at the last stop."""
        for status in self.store.list_fits(states=_PENDING_STATES):
            log.info("fit_recovered", fit_id=status.fit_id, state=status.state, epoch=status.epoch)
            self._enqueue(status.fit_id)
        self._thread = threading.Thread(target=self._work, name="act-trainer-fits", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Interrupt the running fit (it resumes after a restart) and stop the worker."""
        self._stop.set()
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout)

    def wait_idle(self, timeout: float) -> bool:
        """Block until no fit is queued or running (tests)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._queued and self._running is None:
                    return True
            time.sleep(0.05)
        return False

    def submit(
        self, task_id: str, config: training_pb2.FitConfig, idempotency_key: str = ""
    ) -> training_pb2.FitStatus:
        """Create (or return, for a known idempotency key) a fit of a resolved config; queue it."""
        now = now_timestamp()
        status = training_pb2.FitStatus(
            fit_id=f"fit-{uuid.uuid4().hex[:16]}",
            task_id=task_id,
            state=training_pb2.FIT_STATE_QUEUED,
            created_at=now,
            updated_at=now,
        )
        status.config.CopyFrom(config)
        stored, created = self.store.create_fit(status, idempotency_key or None)
        if created:
            log.info("fit_queued", fit_id=stored.fit_id, task_id=task_id, model=config.model)
            self._enqueue(stored.fit_id)
            self.runner.changed(stored)
        return stored

    def maybe_auto_fit(self, task_id: str, config: training_pb2.FitConfig) -> None:
        """Queue a fit when enough new labels arrived and none of the task's is pending."""
        n = self.min_new_labels
        with self._auto_lock:
            if n <= 0 or self.store.labels_since_last_fit(task_id) < n:
                return
            if self.store.list_fits(task_id, states=_PENDING_STATES):
                return
            self.submit(task_id, config)

    def cancel(self, fit_id: str, reason: str = "") -> training_pb2.FitStatus | None:
        """Cancel a queued or running fit; a finished one is returned unchanged."""
        # Under the lock the worker cannot pick the fit up between our check and our write.
        with self._lock:
            status = self.store.get_fit(fit_id)
            if status is None or status.state in TERMINAL_STATES:
                return status
            running = self._running if self._running and self._running.fit_id == fit_id else None
            if running is not None:
                running.reason = reason
                running.cancel.set()  # the fit stops at its next batch
            else:
                self.runner.finish_cancelled(status, reason)
        return self.store.get_fit(fit_id)

    def _enqueue(self, fit_id: str) -> None:
        with self._lock:
            if fit_id in self._queued:
                return
            self._queued.add(fit_id)
        self._queue.put(fit_id)

    def _work(self) -> None:
        if self.torch_threads:
            torch.set_num_threads(self.torch_threads)
        while not self._stop.is_set():
            fit_id = self._queue.get()
            if fit_id is None:
                break
            running = _Running(fit_id=fit_id, stopping=self._stop)
            with self._lock:  # see cancel(): read the state and claim the fit atomically
                status = self.store.get_fit(fit_id)
                if status is None or status.state in TERMINAL_STATES:
                    self._queued.discard(fit_id)
                    continue
                self._running = running
            try:
                self.runner.run(status, running)
            except FitInterruptedError:
                log.info("fit_interrupted", fit_id=fit_id)
            except Exception as exc:  # a failed fit must not kill the worker
                log.exception("fit_failed", fit_id=fit_id)
                self.runner.finish_failed(fit_id, exc)
            finally:
                with self._lock:
                    self._running = None
                    self._queued.discard(fit_id)
