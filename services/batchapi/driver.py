"""The batch driver: accept requests into batches, submit, poll, publish, exactly once.

One loop, one transactional id (:mod:`services.batchapi.journal`), every step
a transaction, so a SIGKILL at any point loses and re-bills nothing:

1. **Accept.** Input records of the stage kind (:mod:`services.batchapi.kinds`:
   items, or annotations) and its retries from ``batch_pending`` are read
   ``read_committed`` and held in memory until a batch is full
   (``max_requests``) or its oldest request waited ``max_wait_s``. Then, in
   ONE transaction, the batch's state record (``SUBMITTING``, its requests
   and their input records) goes to the compacted ``batch_state`` topic and
   the input offsets are committed. Before that, nothing happened (the records are
   read again); after it, Kafka offsets are never held for hours.
2. **Submit.** The provider gets the batch (custom_id per request:
   ``<output id>-<attempt>``, the output id being the annotation or critique
   id), then a transaction records ``SUBMITTED`` with the remote id. A batch
   that may already have reached the provider (restored in ``SUBMITTING``, or
   a submission whose reply was lost) is first looked up
   (:meth:`BatchProvider.find`): a submitted batch is never submitted again.
3. **Poll and publish.** Once a batch ended, ONE transaction publishes the
   outputs of succeeded requests, re-queues failed, expired or unparseable
   ones to ``batch_pending`` with the next attempt (a new custom_id) or
   dead-letters them after ``max_attempts``, and tombstones the state record.
   A crash before the commit publishes the same results again after restart
   (reading results is not billed); after it, the batch is gone.

One driver per kind is enough: a batch holds up to 50,000 requests and the
loop's work per request is small. A second instance with the same group fences
the first (the transactional id), so a zombie is harmless. Drivers of both
kinds may run side by side (different groups): they share ``batch_pending``
and ``batch_state``, so each takes only its own kind's retries (the
``act-batch-stage`` header; none means the annotator, as before the header
existed) and restores only its own kind's batches (``BatchState.stage``).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from act.v1 import batch_pb2
from aiokafka import ConsumerRecord, TopicPartition
from google.protobuf.message import DecodeError

from services.backend_api.protocols import CallUsage
from services.batchapi import metrics
from services.batchapi.journal import Journal, Record
from services.batchapi.kinds import PENDING_TOPIC, StageKind
from services.batchapi.providers import BatchProvider, ProviderRequest, RequestResult
from services.batchapi.settings import BatchSettings
from services.llm.outputs import OutputParseError
from services.runtime.dlq import build_dead_letter
from services.runtime.stage import Identity
from services.runtime.tasks import TaskSource

log = structlog.get_logger(__name__)

#: Header of a ``batch_pending`` record: the attempt it is (inputs are attempt 1).
ATTEMPT_HEADER = "act-batch-attempt"
#: Header of a ``batch_pending`` record: why the previous attempt failed.
ERROR_HEADER = "act-batch-error"
#: Header of a ``batch_pending`` record: the stage kind whose retry it is
#: (absent: the annotator, whose retries predate the header).
STAGE_HEADER = "act-batch-stage"
#: The kind of a ``batch_pending`` record without :data:`STAGE_HEADER`.
LEGACY_STAGE = "annotator"
SUBMITTING, SUBMITTED = batch_pb2.BATCH_PHASE_SUBMITTING, batch_pb2.BATCH_PHASE_SUBMITTED


class BatchRequestFailed(Exception):
    """A request failed at the provider, expired or did not parse, on its last attempt."""


def custom_id(key: str, attempt: int) -> str:
    """The provider's custom_id of one attempt (unique per attempt: billed once each)."""
    return f"{key}-{attempt}"


@dataclass
class OpenBatch:
    """A batch between acceptance and publication, and when to look at it next."""

    state: batch_pb2.BatchState
    next_at: float = 0.0
    #: It may already exist remotely (restored, or a submission's reply was lost).
    may_exist: bool = False


@dataclass
class Accepted:
    """A consumed input record: a request for the next batch, a dead letter, or
    neither (another kind's retry: only its offset moves on)."""

    tp: TopicPartition
    offset: int
    request: batch_pb2.BatchRequest | None = None
    dead: Record | None = None


class BatchDriver:
    """The loop of the module docstring over a journal, a provider and a stage kind."""

    def __init__(
        self,
        settings: BatchSettings,
        journal: Journal,
        provider: BatchProvider,
        kind: StageKind[Any],
        tasks: TaskSource,
    ) -> None:
        self.s = settings
        self.journal = journal
        self.provider = provider
        self.kind = kind
        self.tasks = tasks
        self.open: dict[str, OpenBatch] = {}
        self._buffer: list[Accepted] = []
        self._buffer_since = 0.0
        self._stopping = asyncio.Event()
        self._p = provider.name

    async def restore(self) -> None:
        """Open the journal and take over the batches it records."""
        others = 0
        for batch_id, state in (await self.journal.open()).items():
            if (state.stage or LEGACY_STAGE) != self.kind.name:
                others += 1  # another kind's driver shares the state topic: its batch
                continue
            self.open[batch_id] = OpenBatch(state, may_exist=state.phase == SUBMITTING)
        log.info("batch_driver_restored", open_batches=len(self.open), other_kinds=others)
        self._gauge()

    def stop(self) -> None:
        """Finish the current step, then return from :meth:`run`."""
        self._stopping.set()

    async def run(self) -> None:
        """Accept, submit, poll and publish until :meth:`stop`; errors propagate (exit 1)."""
        while not self._stopping.is_set():
            await self._accept()
            now = time.monotonic()
            if self._buffer and (
                len(self._buffer) >= self.s.max_requests
                or now - self._buffer_since >= self.s.max_wait_s
            ):
                await self._form()
            for batch in list(self.open.values()):
                if self._stopping.is_set():
                    break
                if batch.next_at <= time.monotonic():
                    await self._advance(batch)

    # ------------------------------------------------------------- accept

    async def _accept(self) -> None:
        room = self.s.max_requests - len(self._buffer)
        if room <= 0:
            return
        records = await self.journal.fetch(room, timeout_ms=200)
        if records and not self._buffer:
            self._buffer_since = time.monotonic()
        for record in records:
            self._buffer.append(await self._accepted(record))

    async def _accepted(self, record: ConsumerRecord[bytes, bytes]) -> Accepted:
        tp = TopicPartition(record.topic, record.partition)
        headers = {k: v.decode("utf-8", "replace") for k, v in record.headers or ()}
        if (
            record.topic == self.journal.name(PENDING_TOPIC)
            and headers.get(STAGE_HEADER, LEGACY_STAGE) != self.kind.name
        ):
            return Accepted(tp, record.offset)  # another kind's retry, not ours to take
        identity = Identity("", (record.key or b"").decode("utf-8", "replace"))
        try:
            message = self.kind.parse_input(record.value or b"")
            identity = self.kind.identify(message)
            task = await self.tasks.get(identity.task_id)
            self.kind.build(task, message)  # refuse what can never be asked now, not in hours
            attempt = int(headers.get(ATTEMPT_HEADER, "1"))
        except Exception as exc:  # undecodable, unknown task, refused: a dead letter now
            error = exc if not isinstance(exc, DecodeError) else BatchRequestFailed("undecodable")
            letter = build_dead_letter(
                stage=f"batch-{self.kind.name}", error=error, attempts=1, topic=record.topic,
                partition=record.partition, offset=record.offset, key=record.key,
                value=record.value, headers=dict(record.headers or ()), identity=identity,
            )  # fmt: skip
            dead = Record(self.journal.name("dlq"), identity.item_id, letter.SerializeToString())
            return Accepted(tp, record.offset, dead=dead)
        request = batch_pb2.BatchRequest(
            custom_id=custom_id(self.kind.request_key(task, message), attempt),
            attempt=attempt,
            last_error=headers.get(ERROR_HEADER, ""),
        )
        self.kind.store(request, message)
        return Accepted(tp, record.offset, request=request)

    async def _form(self) -> None:
        """One transaction: the new batch's state record and the input offsets."""
        taken, self._buffer = self._buffer, []
        open_ids = {r.custom_id for b in self.open.values() for r in b.state.requests}
        state = batch_pb2.BatchState(
            batch_id=uuid.uuid4().hex, phase=SUBMITTING, provider=self._p, stage=self.kind.name
        )
        state.formed_at.GetCurrentTime()
        records, offsets = [], {}
        for a in taken:
            offsets[a.tp] = a.offset + 1  # in fetch order: the last one per partition wins
            if a.dead is not None:
                records.append(a.dead)
            elif a.request is not None and a.request.custom_id not in open_ids:
                # A duplicate of a request already batched would be billed twice.
                open_ids.add(a.request.custom_id)
                state.requests.append(a.request)
        if state.requests:
            records.append(self._state_record(state))
        await self.journal.commit(records, offsets)
        if state.requests:
            self.open[state.batch_id] = OpenBatch(state)
            log.info("batch_formed", batch_id=state.batch_id, requests=len(state.requests))
        self._gauge()

    # ------------------------------------------------------- submit, poll

    async def _advance(self, batch: OpenBatch) -> None:
        state = batch.state
        try:
            if state.phase == SUBMITTING:
                await self._submit(batch)
            else:
                status = await self.provider.poll(state.remote_id)
                if not status.ended:
                    batch.next_at = time.monotonic() + self.s.poll_s
                    return
                results = await self.provider.results(state.remote_id)
                await self._publish(batch, status.status, results)
        except Exception as exc:
            if not _is_provider_error(exc):
                raise  # Kafka or a bug: exit, and let the restart recover
            metrics.SUBMIT_FAILURES.labels(provider=self._p).inc()
            log.warning(
                "batch_provider_call_failed", batch_id=state.batch_id, error_type=type(exc).__name__
            )
            batch.next_at = time.monotonic() + self.s.submit_backoff_s
            if state.phase == SUBMITTING:
                batch.may_exist = True  # the reply may be what was lost

    async def _submit(self, batch: OpenBatch) -> None:
        state = batch.state
        remote_id = None
        if batch.may_exist:
            claimed = {b.state.remote_id for b in self.open.values() if b.state.remote_id}
            remote_id = await self.provider.find(
                state.batch_id, state.formed_at.ToSeconds(), len(state.requests), claimed
            )
        adopted = remote_id is not None
        if remote_id is None:
            requests = [await self._provider_request(r) for r in state.requests]
            remote_id = await self.provider.submit(state.batch_id, requests)
        submitted = batch_pb2.BatchState()
        submitted.CopyFrom(state)
        submitted.phase = SUBMITTED
        submitted.remote_id = remote_id
        submitted.submitted_at.GetCurrentTime()
        await self.journal.commit([self._state_record(submitted)])
        batch.state, batch.next_at = submitted, time.monotonic() + self.s.poll_s
        if not adopted:
            metrics.REQUESTS_SUBMITTED.labels(provider=self._p).inc(len(state.requests))
        log.info("batch_submitted", batch_id=state.batch_id, remote_id=remote_id, adopted=adopted)
        self._gauge()

    async def _provider_request(self, request: batch_pb2.BatchRequest) -> ProviderRequest:
        message = self.kind.load(request)
        task = await self.tasks.get(self.kind.identify(message).task_id)
        built = self.kind.build(task, message)
        body = self.provider.body(built.prompt, built.model, built.max_tokens, built.temperature)
        return ProviderRequest(request.custom_id, body)

    # ------------------------------------------------------------ publish

    async def _publish(
        self, batch: OpenBatch, status: str, results: Sequence[RequestResult]
    ) -> None:
        """One transaction: outputs, retries, dead letters and the state's tombstone."""
        state = batch.state
        by_id = {r.custom_id: r for r in results}
        records: list[Record] = []
        outcomes: dict[str, int] = {}
        items: dict[str, int] = {}
        cost, tokens = 0.0, [0, 0]
        for request in state.requests:
            result = by_id.get(request.custom_id) or RequestResult(
                request.custom_id, "expired", error=f"missing from the results (batch {status})"
            )
            message, raw = self.kind.load(request), ""
            identity = self.kind.identify(message)
            outcome: str = result.outcome
            if result.outcome == "succeeded":
                usage = self._priced(result.usage)
                try:
                    task = await self.tasks.get(identity.task_id)
                    output = self.kind.output(task, message, result.text, usage, request.attempt)
                except OutputParseError as exc:
                    reason, raw, outcome = f"unparseable answer: {exc}", result.text, "unparseable"
                except Exception as exc:  # the task is gone or refuses the record now
                    reason, raw, outcome = f"{type(exc).__name__}: {exc}", result.text, "failed"
                else:
                    records.append(
                        Record(
                            self.journal.name(output.topic),
                            output.key,
                            output.value.SerializeToString(),
                        )
                    )
                    cost += usage.cost_usd
                    tokens[0] += usage.prompt_tokens
                    tokens[1] += usage.completion_tokens
                    outcomes["succeeded"] = outcomes.get("succeeded", 0) + 1
                    done = self.kind.done_outcome
                    items[done] = items.get(done, 0) + 1
                    continue
            else:
                reason = result.error or result.outcome
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            if request.attempt < self.s.max_attempts:
                headers = {
                    ATTEMPT_HEADER: str(request.attempt + 1),
                    ERROR_HEADER: reason[:500],
                    STAGE_HEADER: self.kind.name,
                }
                records.append(
                    Record(
                        self.journal.name(PENDING_TOPIC),
                        identity.item_id,
                        message.SerializeToString(),
                        headers,
                    )
                )
                items["retried"] = items.get("retried", 0) + 1
            else:
                records.append(self._dead_letter(request, reason, raw))
                items["dead_lettered"] = items.get("dead_lettered", 0) + 1
        records.append(Record(self.journal.state_topic, state.batch_id, None))
        await self.journal.commit(records)
        del self.open[state.batch_id]
        p = self._p
        metrics.BATCHES_ENDED.labels(provider=p, status=status).inc()
        for name, n in outcomes.items():
            metrics.RESULTS.labels(provider=p, outcome=name).inc(n)
        for name, n in items.items():
            metrics.ITEMS.labels(provider=p, outcome=name).inc(n)
        metrics.COST.labels(provider=p, model=self.s.llm.model or "task").inc(cost)
        metrics.TOKENS.labels(provider=p, kind="prompt").inc(tokens[0])
        metrics.TOKENS.labels(provider=p, kind="completion").inc(tokens[1])
        log.info("batch_published", batch_id=state.batch_id, status=status, **items)
        self._gauge()

    def _priced(self, usage: CallUsage) -> CallUsage:
        o = self.s.llm
        full = (
            usage.prompt_tokens * o.price_input_per_mtok
            + usage.completion_tokens * o.price_output_per_mtok
        )
        return CallUsage(usage.prompt_tokens, usage.completion_tokens, full / 1e6 * self.s.discount)

    def _dead_letter(self, request: batch_pb2.BatchRequest, reason: str, raw: str) -> Record:
        message = self.kind.load(request)
        identity = self.kind.identify(message)
        letter = build_dead_letter(
            stage=f"batch-{self.kind.name}", error=BatchRequestFailed(reason),
            attempts=request.attempt, topic=self.journal.name(PENDING_TOPIC), partition=-1,
            offset=-1, key=identity.item_id.encode(), value=message.SerializeToString(),
            headers={}, identity=identity, raw_model_output=raw,
        )  # fmt: skip
        return Record(self.journal.name("dlq"), identity.item_id, letter.SerializeToString())

    def _state_record(self, state: batch_pb2.BatchState) -> Record:
        return Record(self.journal.state_topic, state.batch_id, state.SerializeToString())

    def _gauge(self) -> None:
        phases = {SUBMITTING: 0, SUBMITTED: 0}
        for b in self.open.values():
            phases[b.state.phase] = phases.get(b.state.phase, 0) + 1
        for phase, n in phases.items():
            name = batch_pb2.BatchPhase.Name(phase).removeprefix("BATCH_PHASE_").lower()
            metrics.BATCHES.labels(provider=self._p, phase=name).set(n)


def _is_provider_error(exc: Exception) -> bool:
    """An error of a provider call (HTTP, SDK, a malformed reply), not of Kafka or our code."""
    module = type(exc).__module__.split(".")[0]
    return module in ("openai", "anthropic", "httpx2", "httpx", "json") or isinstance(
        exc, OSError | TimeoutError | ValueError
    )
