"""Turning JSONL lines and data set records into ``act.v1.Item`` messages.

One record (a JSONL line) is a JSON object with:

- content: ``text`` and/or an image given as ``image_path`` (a file, relative
  to the JSONL file's folder), ``image_b64`` (base64) or ``image_uri`` (a
  claim-check reference, passed through); ``question`` for yes/no VQA;
  ``image_mime_type`` optionally (guessed from the path or the bytes);
- ``metadata``: an object of strings (numbers and booleans are converted);
- ``id``: the item id; by default a stable hash of the task id and the line,
  so ingesting the same file twice yields the same ids;
- ``label``: the held-out reference label (a label name of the task or its
  index), stored in ``Item.reference_label`` for evaluation only.

Everything here is pure except :func:`publish_items`, which drives a producer
given as a callable. Error messages never quote item content.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import mimetypes
import sys
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from act.v1 import common_pb2, item_pb2
from tqdm import tqdm

from services.cli.kafkaio import require_topics
from services.runtime.config import KafkaSettings
from services.runtime.kafka_clients import idempotent_producer
from services.runtime.logging import get_logger

ITEM_ID_HEX_CHARS = 32
MAX_ITEM_ID_CHARS = 256
#: Default limit for inline image bytes; Kafka's default record limit is ~1 MB.
DEFAULT_MAX_INLINE_BYTES = 900_000
KNOWN_FIELDS = frozenset(
    {
        "id",
        "text",
        "image_path",
        "image_b64",
        "image_bytes",
        "image_uri",
        "image_mime_type",
        "question",
        "metadata",
        "label",
    }
)


class RecordError(ValueError):
    """A record that cannot become an item; the message never quotes content."""


@dataclass(frozen=True, slots=True)
class IngestOptions:
    """What every item of one ingest run shares."""

    task_id: str
    source: str = ""
    batch_id: str = ""
    batch_size: int = 0
    #: Folder that relative ``image_path`` values are resolved against.
    base_dir: Path = Path()
    #: The task's label names in index order; ``None`` when the task is unknown
    #: (then only integer labels are accepted).
    labels: Sequence[str] | None = None
    #: The task's modality; ``None`` when unknown (then any content goes).
    modality: int | None = None
    max_inline_bytes: int = DEFAULT_MAX_INLINE_BYTES


@dataclass(frozen=True, slots=True)
class Parsed:
    """The outcome of one input record: an item or an error."""

    lineno: int
    item: item_pb2.Item | None = None
    error: str | None = None


def stable_item_id(task_id: str, content: str) -> str:
    """A deterministic item id: truncated SHA-256 of the task id and the line."""
    digest = hashlib.sha256(f"{task_id}\n{content}".encode()).hexdigest()
    return digest[:ITEM_ID_HEX_CHARS]


def canonical_json(record: Mapping[str, Any]) -> str:
    """Stable text of a record (for the ids of data set records)."""
    return json.dumps(
        record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=repr
    )


def _str_field(record: Mapping[str, Any], name: str) -> str:
    value = record.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RecordError(f"field {name!r} must be a string, got {type(value).__name__}")
    return value


def _reference_label(value: object, labels: Sequence[str] | None) -> int:
    if isinstance(value, bool):
        raise RecordError("field 'label' must be a label name or index")
    if isinstance(value, int):
        index = value
    elif isinstance(value, str):
        stripped = value.strip()
        lowered = [name.strip().lower() for name in labels] if labels is not None else None
        if lowered is not None and stripped.lower() in lowered:
            return lowered.index(stripped.lower())
        if not stripped.lstrip("-").isdigit():
            if labels is None:
                raise RecordError(
                    "label names need the task's label set (integer labels only with "
                    "--no-check-task)"
                )
            raise RecordError(f"unknown label {stripped!r}; task labels: {', '.join(labels)}")
        index = int(stripped)
    else:
        raise RecordError("field 'label' must be a label name or index")
    if index < 0 or (labels is not None and index >= len(labels)):
        bound = f" (task has {len(labels)} labels)" if labels is not None else ""
        raise RecordError(f"label index {index} out of range{bound}")
    return index


def _image(record: Mapping[str, Any], options: IngestOptions, item: item_pb2.Item) -> None:
    given = [k for k in ("image_path", "image_b64", "image_bytes", "image_uri") if record.get(k)]
    if len(given) > 1:
        raise RecordError(f"give one image field, not {', '.join(given)}")
    if not given:
        return
    kind = given[0]
    mime = _str_field(record, "image_mime_type")
    if kind == "image_uri":
        item.image_uri = _str_field(record, "image_uri")
        item.image_mime_type = mime or (mimetypes.guess_type(item.image_uri)[0] or "")
        return
    if kind == "image_path":
        path = Path(_str_field(record, "image_path")).expanduser()
        if not path.is_absolute():
            path = options.base_dir / path
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise RecordError(
                f"cannot read image_path: {exc.strerror or type(exc).__name__}"
            ) from exc
        mime = mime or (mimetypes.guess_type(path.name)[0] or "")
    elif kind == "image_b64":
        try:
            data = base64.b64decode(_str_field(record, "image_b64"), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise RecordError("field 'image_b64' is not valid base64") from exc
    else:
        raw = record["image_bytes"]
        if not isinstance(raw, bytes | bytearray):
            raise RecordError("field 'image_bytes' must be bytes")
        data = bytes(raw)
    if not data:
        raise RecordError("the image is empty")
    if len(data) > options.max_inline_bytes:
        raise RecordError(
            f"image of {len(data)} bytes exceeds the inline limit of {options.max_inline_bytes} "
            "bytes; store it elsewhere and give image_uri"
        )
    item.image_bytes = data
    item.image_mime_type = mime or sniff_mime(data)
    item.image_sha256 = hashlib.sha256(data).hexdigest()


def sniff_mime(data: bytes) -> str:
    """The MIME type of common image formats from their magic bytes ('' if unknown)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return ""


def record_to_item(
    record: Mapping[str, Any],
    options: IngestOptions,
    *,
    id_content: str,
    now: datetime | None = None,
) -> item_pb2.Item:
    """One record -> an Item; raises :class:`RecordError`."""
    if not isinstance(record, Mapping):
        raise RecordError(f"expected a JSON object, got {type(record).__name__}")
    unknown = sorted(set(record) - KNOWN_FIELDS)
    if unknown:
        raise RecordError(f"unknown field(s): {', '.join(map(repr, unknown))}")
    item = item_pb2.Item(task_id=options.task_id, source=options.source)
    raw_id = record.get("id")
    if raw_id is None or raw_id == "":
        item.item_id = stable_item_id(options.task_id, id_content)
    elif isinstance(raw_id, str | int) and not isinstance(raw_id, bool):
        item.item_id = str(raw_id).strip()
        if not item.item_id or len(item.item_id) > MAX_ITEM_ID_CHARS:
            raise RecordError(f"field 'id' must be 1-{MAX_ITEM_ID_CHARS} characters")
    else:
        raise RecordError("field 'id' must be a string or an integer")
    item.text = _str_field(record, "text")
    item.question = _str_field(record, "question")
    _image(record, options, item)
    has_image = item.WhichOneof("image") is not None
    if not item.text.strip() and not has_image:
        raise RecordError("no content: give 'text' or an image (image_path, image_b64, image_uri)")
    if options.modality == common_pb2.MODALITY_TEXT and not item.text.strip():
        raise RecordError("the task's modality is text but the record has no 'text'")
    if options.modality in (common_pb2.MODALITY_IMAGE, common_pb2.MODALITY_VQA) and not has_image:
        raise RecordError("the task's modality needs an image (image_path, image_b64, image_uri)")
    if options.modality == common_pb2.MODALITY_VQA and not item.question.strip():
        raise RecordError("the task's modality is vqa but the record has no 'question'")
    metadata = record.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, Mapping):
            raise RecordError("field 'metadata' must be an object of strings")
        for key, value in metadata.items():
            if isinstance(value, str):
                item.metadata[str(key)] = value
            elif isinstance(value, bool):
                item.metadata[str(key)] = "true" if value else "false"
            elif isinstance(value, int | float):
                item.metadata[str(key)] = str(value)
            else:
                raise RecordError(f"metadata value of {str(key)!r} must be a string")
    if record.get("label") is not None:
        item.reference_label = _reference_label(record["label"], options.labels)
    if options.batch_id:
        item.batch.batch_id = options.batch_id
        item.batch.batch_size = options.batch_size
    item.created_at.FromDatetime(now or datetime.now(UTC))
    return item


def parse_line(
    line: str, options: IngestOptions, *, now: datetime | None = None
) -> item_pb2.Item | None:
    """One JSONL line -> an Item, ``None`` for a blank line; raises :class:`RecordError`."""
    content = line.strip().lstrip("\ufeff")
    if not content:
        return None
    try:
        record = json.loads(content)
    except json.JSONDecodeError as exc:
        raise RecordError(f"invalid JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(record, dict):
        raise RecordError(f"expected a JSON object, got {type(record).__name__}")
    return record_to_item(record, options, id_content=content, now=now)


def _dedup(parsed: Iterator[Parsed]) -> Iterator[Parsed]:
    first_line: dict[str, int] = {}
    for outcome in parsed:
        if outcome.item is not None:
            seen = first_line.setdefault(outcome.item.item_id, outcome.lineno)
            if seen != outcome.lineno:
                yield Parsed(
                    outcome.lineno,
                    error=f"duplicate item id {outcome.item.item_id!r} (first on line {seen})",
                )
                continue
        yield outcome


def parse_lines(lines: Iterable[str | bytes], options: IngestOptions) -> Iterator[Parsed]:
    """Items and errors of JSONL lines (1-based line numbers, blanks skipped).

    Byte lines are decoded as UTF-8 (a line that is not valid UTF-8 is bad).
    """

    def gen() -> Iterator[Parsed]:
        for lineno, raw in enumerate(lines, start=1):
            try:
                line = raw.decode("utf-8") if isinstance(raw, bytes) else raw
                item = parse_line(line, options)
            except UnicodeDecodeError:
                yield Parsed(lineno, error="line is not valid UTF-8")
                continue
            except RecordError as exc:
                yield Parsed(lineno, error=str(exc))
                continue
            if item is not None:
                yield Parsed(lineno, item=item)

    return _dedup(gen())


def parse_records(records: Iterable[Mapping[str, Any]], options: IngestOptions) -> Iterator[Parsed]:
    """Items and errors of data set records (numbered from 1)."""

    def gen() -> Iterator[Parsed]:
        for number, record in enumerate(records, start=1):
            try:
                yield Parsed(
                    number,
                    item=record_to_item(record, options, id_content=canonical_json(record)),
                )
            except RecordError as exc:
                yield Parsed(number, error=str(exc))

    return _dedup(gen())


def count_items(parsed: Iterable[Parsed]) -> int:
    """How many outcomes are items (for a batch size)."""
    return sum(1 for p in parsed if p.item is not None)


@dataclass(slots=True)
class IngestSummary:
    """The outcome of one ingest run."""

    topic: str = ""
    sent: int = 0
    #: (line number, reason) of records skipped.
    bad: list[tuple[int, str]] = field(default_factory=list)
    #: (item id, error) of records the broker did not accept.
    failed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.bad and not self.failed

    def describe(self) -> str:
        text = f"ingested {self.sent} items into {self.topic}"
        if self.bad:
            text += f"; skipped {len(self.bad)} bad lines"
        if self.failed:
            text += f"; {len(self.failed)} items failed to publish"
        return text


#: ``send(key, value)`` enqueues a record and returns its delivery future.
SendFn = Callable[[bytes, bytes], Awaitable["asyncio.Future[Any]"]]


async def publish_items(
    parsed: Iterable[Parsed],
    send: SendFn,
    *,
    summary: IngestSummary,
    on_bad: Callable[[int, str], None] = lambda _n, _e: None,
    on_sent: Callable[[int], None] = lambda _n: None,
    max_pending: int = 5_000,
) -> IngestSummary:
    """Send every item; collect bad records and delivery failures in ``summary``.

    ``on_bad(line, reason)`` is called for each bad record and ``on_sent(n)``
    as each delivery is confirmed (for a progress bar).
    """
    pending: list[tuple[str, asyncio.Future[Any]]] = []

    async def settle() -> None:
        results = await asyncio.gather(*(f for _, f in pending), return_exceptions=True)
        for (item_id, _), result in zip(pending, results, strict=True):
            if isinstance(result, BaseException):
                summary.failed.append((item_id, f"{type(result).__name__}: {result}"))
            else:
                summary.sent += 1
        pending.clear()

    def delivered(future: asyncio.Future[Any]) -> None:
        if not future.cancelled() and future.exception() is None:
            on_sent(1)

    for outcome in parsed:
        if outcome.item is None:
            reason = outcome.error or "unknown error"
            summary.bad.append((outcome.lineno, reason))
            on_bad(outcome.lineno, reason)
            continue
        item = outcome.item
        try:
            future = await send(item.item_id.encode("utf-8"), item.SerializeToString())
        except Exception as exc:  # e.g. MessageSizeTooLargeError before sending
            summary.failed.append((item.item_id, f"{type(exc).__name__}: {exc}"))
            continue
        future.add_done_callback(delivered)
        pending.append((item.item_id, future))
        if len(pending) >= max_pending:
            await settle()
    if pending:
        await settle()
    return summary


async def ingest_to_kafka(
    kafka: KafkaSettings,
    parsed: Iterable[Parsed],
    *,
    topic: str,
    task_id: str,
    total: int | None = None,
    progress: bool = True,
    on_bad: Callable[[int, str], None] = lambda _n, _e: None,
) -> IngestSummary:
    """Publish parsed items to ``topic`` with an idempotent producer (acks=all).

    Shows a tqdm bar on stderr when ``progress`` (``total`` = records expected,
    bad ones included); logs only counts and ids, never content.
    """
    await require_topics(kafka, [topic])
    producer = idempotent_producer(kafka)
    try:
        await producer.start()
    except BaseException:
        await producer.stop()
        raise
    bar = tqdm(total=total, unit="line", desc="ingest", file=sys.stderr, disable=not progress)
    summary = IngestSummary(topic=topic)

    def bad(lineno: int, reason: str) -> None:
        bar.update(1)
        on_bad(lineno, reason)

    try:

        async def send(key: bytes, value: bytes) -> asyncio.Future[Any]:
            future: asyncio.Future[Any] = await producer.send(topic, value=value, key=key)
            return future

        await publish_items(parsed, send, summary=summary, on_bad=bad, on_sent=bar.update)
    finally:
        bar.close()
        await producer.stop()
    get_logger().info(
        "ingest_finished",
        task_id=task_id,
        topic=topic,
        sent=summary.sent,
        bad=len(summary.bad),
        failed=len(summary.failed),
    )
    return summary
