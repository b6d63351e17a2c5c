"""The ingest service's operations: tasks and item streams, under the gRPC edge.

:class:`IngestOps` gets every client from the factory (the shared idempotent
producer, the task registry, the ledger, the authenticator) and holds the
rules; :mod:`services.ingest.api` only authenticates, calls it and maps
:class:`~services.review_gateway.errors.GatewayError` to status codes.

An item stream is handled in chunks of at most ``max_in_flight`` valid items
(and about ``max_in_flight_bytes``):
the chunk's ids are looked up in the ledger (duplicates are not sent again),
the rest are sent to the items topic (idempotent producer, acks=all, keyed by
item id), every delivery is awaited, and only then are the delivered ids
recorded in the ledger and counted as accepted. The next item is read from
the stream only after that, so gRPC's flow control holds the client back and
memory stays bounded by one chunk per stream (and ``max_streams`` streams).

A dropped client connection cancels the call; the chunk being sent is then
finished and recorded before the call ends (it runs in its own task), and a
stream of the same ids in this process waits for it, so a retried stream
finds those ids in the ledger. Items read but not yet sent are either not
published (the call was cancelled) or, when the transport ends the request
stream instead, published and recorded like a last chunk; either way the
retry sends or counts them once. What remains is the crash window described
in :mod:`services.ingest.ledger`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field

import grpc
import structlog
from act.v1 import api_pb2, item_pb2, task_pb2
from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError

from services.cli.tasks import TaskError, finalize_task, same_definition
from services.ingest import metrics
from services.ingest.ledger import Ledger
from services.ingest.settings import IngestSettings
from services.ingest.validation import Refusal, check_ids, check_item, unknown_task
from services.review_gateway.auth import Authenticator
from services.review_gateway.errors import (
    AlreadyExists,
    GatewayError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from services.review_gateway.store import ROLE_ADMIN, ROLE_PRODUCER, Reviewer
from services.runtime.claimcheck import ClaimStore
from services.runtime.tasks import TaskNotFoundError, TaskSource

log = structlog.get_logger(__name__)

#: Roles that may call IngestService; reviewers may not.
INGEST_ROLES = frozenset({ROLE_PRODUCER, ROLE_ADMIN})
#: Task lookups a stream remembers (a stream of many task ids stays bounded).
_TASK_CACHE = 1024

Key = tuple[str, str]  # (task id, item id)


class TooManyStreams(GatewayError):
    """More Ingest calls at once than ``max_streams`` (memory stays bounded)."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


def require_producer(caller: Reviewer) -> None:
    """PermissionDenied unless the caller has the producer (or admin) role."""
    if caller.role not in INGEST_ROLES:
        raise PermissionDenied("the producer role is required")


@dataclass
class _Chunk:
    """Valid items of one stream waiting to be sent, by (task, item) id."""

    items: dict[Key, tuple[int, item_pb2.Item]] = field(default_factory=dict)
    size: int = 0

    def __len__(self) -> int:
        return len(self.items)


class TaskBook:
    """Every task read from act.tasks or created here, for GetTask and ListTasks.

    Fed by the task registry's listener, which hears every version but not
    tombstones: a retired task stays listed (as in the review gateway's copy),
    while items of it are refused (their lookup goes through the registry).
    """

    def __init__(self) -> None:
        self._tasks: dict[str, task_pb2.Task] = {}

    async def put(self, task: task_pb2.Task) -> None:
        """Keep the latest version of ``task`` (the registry's ``on_task``)."""
        self._tasks[task.task_id] = task

    def get(self, task_id: str) -> task_pb2.Task | None:
        """The task, or None."""
        return self._tasks.get(task_id)

    def page(self, size: int, token: str) -> tuple[list[task_pb2.Task], str]:
        """Tasks ordered by (created_at, task_id) after ``token``; the next token."""
        after = _decode_token(token)
        ordered = sorted(self._tasks.values(), key=_order)
        rest = [t for t in ordered if after is None or _order(t) > after]
        page = rest[:size]
        more = len(rest) > size
        return page, _encode_token(_order(page[-1])) if more and page else ""


def _order(task: task_pb2.Task) -> tuple[int, str]:
    return task.created_at.ToNanoseconds(), task.task_id


def _encode_token(key: tuple[int, str]) -> str:
    return base64.urlsafe_b64encode(f"{key[0]}:{key[1]}".encode()).decode()


def _decode_token(token: str) -> tuple[int, str] | None:
    if not token:
        return None
    try:
        nanos, _, task_id = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
        return int(nanos), task_id
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidArgument("page_token is not one this service issued") from None


class IngestOps:
    """Task definitions and item streams; every rule of the IngestService."""

    def __init__(
        self,
        settings: IngestSettings,
        *,
        producer: AIOKafkaProducer,
        tasks: TaskSource,
        book: TaskBook,
        ledger: Ledger,
        auth: Authenticator,
        items_topic: str,
        tasks_topic: str,
        claims: ClaimStore | None = None,
    ) -> None:
        self.settings = settings
        self.claims = claims
        self.producer = producer
        self.tasks = tasks
        self.book = book
        self.ledger = ledger
        self.auth = auth
        self.items_topic = items_topic
        self.tasks_topic = tasks_topic
        self._create_lock = asyncio.Lock()
        # Ids being sent by some stream of this process -> done when recorded.
        self._inflight: dict[Key, asyncio.Future[None]] = {}
        self._flushes: set[asyncio.Task[None]] = set()
        self._streams = 0

    # ----------------------------------------------------------------- tasks

    async def create_task(self, task: task_pb2.Task) -> task_pb2.Task:
        """Validate and publish a task; idempotent for an identical definition.

        InvalidArgument lists every problem; AlreadyExists when the id holds
        another definition.
        """
        try:
            final = finalize_task(task)
        except TaskError as exc:
            raise InvalidArgument(str(exc)) from None
        async with self._create_lock:  # one create per id at a time in this process
            existing = self.book.get(final.task_id)
            if existing is not None:
                if same_definition(existing, final):
                    return existing
                raise AlreadyExists(f"task {final.task_id} exists with another definition")
            # The record `act task create` publishes (services.cli.taskio.publish_task),
            # through this process's one producer.
            await self.producer.send_and_wait(
                self.tasks_topic,
                value=final.SerializeToString(),
                key=final.task_id.encode("utf-8"),
            )
            await self.book.put(final)
        log.info("task_created", task_id=final.task_id)
        return final

    def get_task(self, task_id: str) -> task_pb2.Task:
        """A task by id; NotFound if unknown."""
        if not task_id:
            raise InvalidArgument("task_id is required")
        found = self.book.get(task_id)
        if found is None:
            raise NotFound(f"task {task_id[:200]} not found")
        return found

    def list_tasks(self, page_size: int, page_token: str) -> api_pb2.ListTasksResponse:
        """One page of tasks in creation order."""
        if page_size < 0:
            raise InvalidArgument("page_size must be >= 0")
        size = min(page_size or self.settings.list_page_size, 1000)
        page, token = self.book.page(size, page_token)
        return api_pb2.ListTasksResponse(tasks=page, next_page_token=token)

    # ----------------------------------------------------------------- items

    async def ingest(self, items: AsyncIterator[item_pb2.Item]) -> api_pb2.IngestSummary:
        """Validate, publish and count a stream of items (see the module docstring)."""
        if self._streams >= self.settings.max_streams:
            raise TooManyStreams(f"more than {self.settings.max_streams} streams at once, retry")
        self._streams += 1
        try:
            return await self._ingest(items)
        finally:
            self._streams -= 1

    async def _ingest(self, items: AsyncIterator[item_pb2.Item]) -> api_pb2.IngestSummary:
        summary = api_pb2.IngestSummary()
        chunk = _Chunk()
        found: dict[str, task_pb2.Task | None] = {}
        async for item in items:
            index = summary.received
            summary.received += 1
            refusal = await self._check(item, found)
            if refusal is not None:
                self._refuse(summary, index, item.item_id, refusal)
                continue
            key = (item.task_id, item.item_id)
            if key in chunk.items:
                self._duplicate(summary)
                continue
            chunk.items[key] = (index, item)
            chunk.size += item.ByteSize()
            full = chunk.size >= self.settings.max_in_flight_bytes
            if full or len(chunk) >= self.settings.max_in_flight:
                await self._flush_to_the_end(chunk, summary)
                chunk = _Chunk()
        if chunk:
            await self._flush_to_the_end(chunk, summary)
        return summary

    async def _check(
        self, item: item_pb2.Item, found: dict[str, task_pb2.Task | None]
    ) -> Refusal | None:
        refusal = check_ids(item)
        if refusal is not None:
            return refusal
        if item.task_id not in found:
            if len(found) >= _TASK_CACHE:
                found.clear()
            try:
                found[item.task_id] = await self.tasks.get(item.task_id)
            except TaskNotFoundError:
                found[item.task_id] = None
        task = found[item.task_id]
        if task is None:
            return unknown_task(len(item.task_id))
        if item.WhichOneof("image") != "image_bytes":
            return check_item(item, task, self.settings)
        # Decoding an image takes milliseconds: keep the event loop free.
        refusal = await asyncio.to_thread(check_item, item, task, self.settings)
        if refusal is None and len(item.image_bytes) > self.settings.max_inline_image_bytes:
            refusal = await self._claim_check(item)
        return refusal

    async def _claim_check(self, item: item_pb2.Item) -> Refusal | None:
        """Store a checked image over the inline limit; the item carries its URI.

        Content-addressed, so a retried stream stores the same object again; a
        stored object whose item is then refused or a duplicate stays behind
        (harmless, and the store's lifecycle rules expire it).
        """
        if self.claims is None:  # check_item refuses first; kept for type narrowing
            return Refusal(grpc.StatusCode.FAILED_PRECONDITION, "no claim-check store")
        data, digest = bytes(item.image_bytes), item.image_sha256
        try:
            uri = await asyncio.to_thread(self.claims.put, data, digest)
        except Exception as exc:
            log.warning("claim_check_failed", error_type=type(exc).__name__)
            return Refusal(
                grpc.StatusCode.UNAVAILABLE,
                "the claim-check store did not take the image; send the item again",
            )
        item.image_uri = uri  # the oneof drops image_bytes
        metrics.CLAIM_CHECKED.inc()
        return None

    def _refuse(
        self, summary: api_pb2.IngestSummary, index: int, item_id: str, refusal: Refusal
    ) -> None:
        summary.rejected += 1
        metrics.ITEMS.labels(outcome="refused", code=refusal.code.name).inc()
        if len(summary.errors) < self.settings.max_errors_reported:
            summary.errors.add(
                index=index,
                item_id=item_id[:256],
                message=refusal.message,
                code=refusal.code_number,
            )

    @staticmethod
    def _duplicate(summary: api_pb2.IngestSummary, count: int = 1) -> None:
        summary.duplicates += count
        metrics.ITEMS.labels(outcome="duplicate", code="OK").inc(count)

    async def _flush_to_the_end(self, chunk: _Chunk, summary: api_pb2.IngestSummary) -> None:
        """Send and record a chunk; a cancelled call still waits for it to finish,
        so Kafka and the ledger agree before the call ends."""
        flush = asyncio.create_task(self._flush(chunk, summary))
        self._flushes.add(flush)
        flush.add_done_callback(self._flushes.discard)
        try:
            await asyncio.shield(flush)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await flush
            raise

    async def _flush(self, chunk: _Chunk, summary: api_pb2.IngestSummary) -> None:
        # Another stream of this process may be sending some of these ids: wait
        # until it has recorded them (asyncio.wait never cancels its futures),
        # then claim them all with no await in between, so two streams never
        # both find an id missing from the ledger and both send it.
        while busy := [self._inflight[key] for key in chunk.items if key in self._inflight]:
            await asyncio.wait(busy)
        claim: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for key in chunk.items:
            self._inflight[key] = claim
        try:
            known: set[Key] = set()
            for task_id, ids in _by_task(chunk.items):
                known.update((task_id, i) for i in await self.ledger.known(task_id, ids))
            if known:
                self._duplicate(summary, len(known))
            sending = {k: v for k, v in chunk.items.items() if k not in known}
            delivered = await self._send(sending, summary)
            await self.ledger.record(delivered)
        finally:
            for key in chunk.items:
                del self._inflight[key]
            claim.set_result(None)
        summary.accepted += len(delivered)
        metrics.ITEMS.labels(outcome="accepted", code="OK").inc(len(delivered))

    async def _send(
        self, sending: dict[Key, tuple[int, item_pb2.Item]], summary: api_pb2.IngestSummary
    ) -> list[Key]:
        """Send every item, await every delivery; the keys Kafka acknowledged."""
        pending: list[tuple[Key, int, asyncio.Future[object]]] = []
        for key, (index, item) in sending.items():
            try:
                future = await self.producer.send(
                    self.items_topic, value=item.SerializeToString(), key=item.item_id.encode()
                )
            except Exception as exc:  # e.g. MessageSizeTooLargeError before sending
                self._refuse(summary, index, item.item_id, _not_published(exc))
                continue
            pending.append((key, index, future))
        results = await asyncio.gather(*(f for _, _, f in pending), return_exceptions=True)
        delivered: list[Key] = []
        for (key, index, _), result in zip(pending, results, strict=True):
            if isinstance(result, BaseException):
                self._refuse(summary, index, key[1], _not_published(result))
            else:
                delivered.append(key)
        return delivered


def _by_task(keys: Iterable[Key]) -> list[tuple[str, list[str]]]:
    groups: dict[str, list[str]] = {}
    for task_id, item_id in keys:
        groups.setdefault(task_id, []).append(item_id)
    return list(groups.items())


def _not_published(exc: BaseException) -> Refusal:
    log.warning("item_not_published", error_type=type(exc).__name__)
    if isinstance(exc, MessageSizeTooLargeError):
        # Within max_request_bytes but over Kafka's record limit: retrying is futile.
        return Refusal(
            grpc.StatusCode.FAILED_PRECONDITION,
            "the item is larger than a Kafka record may be: claim check required for "
            "its image (send image_uri)",
        )
    # Kafka did not take the record: nothing was recorded, a retry may succeed.
    return Refusal(
        grpc.StatusCode.UNAVAILABLE,
        f"not published ({type(exc).__name__}); send the item again",
    )
