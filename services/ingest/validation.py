"""Checks of one streamed item against its task and the service's limits (pure).

:func:`check_item` returns a :class:`Refusal` (a gRPC status code and a
message) or None, and fills in what the service derives (the sniffed MIME
type, the image's SHA-256, ``created_at``). Messages name fields, sizes and
limits, never the item's content: items are content-moderation data, and
refusals reach logs and summaries.

Images are checked in this order, so that a hostile image costs little: the
inline size limit (beyond it, the claim-check limit when the service has a
store: :meth:`~services.ingest.ops.IngestOps` then stores the checked bytes
and sends ``image_uri``), the magic bytes against the declared MIME type, the header
(Pillow's ``Image.open`` reads only the header) against the pixel budget, and
only then a full decode. Decoding takes milliseconds for an image within the
limits; the service runs :func:`check_item` in a worker thread for images.
"""

from __future__ import annotations

import hashlib
import io
import re
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime

import grpc
from act.v1 import common_pb2, item_pb2, task_pb2
from PIL import Image, UnidentifiedImageError

from services.cli.ingest import MAX_ITEM_ID_CHARS, sniff_mime
from services.ingest.settings import IngestLimits

#: Pillow's format name per MIME type that :func:`~services.cli.ingest.sniff_mime` knows.
PIL_FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/gif": "GIF", "image/webp": "WEBP"}
_IMAGE_MODALITIES = (common_pb2.MODALITY_IMAGE, common_pb2.MODALITY_VQA)
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why one item is not published: a gRPC status code and a content-free message."""

    code: grpc.StatusCode
    message: str

    @property
    def code_number(self) -> int:
        """The numeric google.rpc code (what ``IngestError.code`` carries)."""
        return int(self.code.value[0])


def _invalid(message: str) -> Refusal:
    return Refusal(grpc.StatusCode.INVALID_ARGUMENT, message)


def check_ids(item: item_pb2.Item) -> Refusal | None:
    """The item and task ids (before the task is looked up)."""
    if not item.item_id.strip():
        return _invalid("item_id is required")
    if len(item.item_id) > MAX_ITEM_ID_CHARS:
        return _invalid(f"item_id longer than {MAX_ITEM_ID_CHARS} characters")
    if not item.task_id:
        return _invalid("task_id is required")
    if len(item.task_id) > MAX_ITEM_ID_CHARS:
        return _invalid(f"task_id longer than {MAX_ITEM_ID_CHARS} characters")
    return None


def unknown_task(task_id_chars: int) -> Refusal:
    """The refusal of an item whose task is not (or no longer) defined."""
    return Refusal(
        grpc.StatusCode.NOT_FOUND,
        f"unknown task (task_id of {task_id_chars} characters): create it first",
    )


def check_item(item: item_pb2.Item, task: task_pb2.Task, limits: IngestLimits) -> Refusal | None:
    """Every rule for an item of a known task; None = publish it (``item`` normalised)."""
    refusal = (
        check_ids(item) or _check_content(item, task, limits) or _check_extras(item, task, limits)
    )
    if refusal is not None:
        return refusal
    if item.WhichOneof("image") == "image_bytes":
        refusal = check_image(item, limits)
        if refusal is not None:
            return refusal
    if not item.HasField("created_at"):
        item.created_at.FromDatetime(datetime.now(UTC))
    return None


def _check_content(
    item: item_pb2.Item, task: task_pb2.Task, limits: IngestLimits
) -> Refusal | None:
    kind = item.WhichOneof("image")
    has_text = bool(item.text.strip())
    if not has_text and kind is None:
        return _invalid("no content: give text or an image")
    for name, value in (("text", item.text), ("question", item.question)):
        size = len(value.encode("utf-8"))
        if size > limits.max_text_bytes:
            return _invalid(f"{name} of {size} bytes exceeds the limit of {limits.max_text_bytes}")
    if task.modality == common_pb2.MODALITY_TEXT:
        if kind is not None:
            return _invalid("the task's modality is text but the item carries an image")
        if not has_text:
            return _invalid("the task's modality is text but the item has no text")
    if task.modality in _IMAGE_MODALITIES and kind is None:
        return _invalid("the task's modality needs an image (image_bytes or image_uri)")
    if task.modality == common_pb2.MODALITY_VQA and not item.question.strip():
        return _invalid("the task's modality is vqa but the item has no question")
    if kind == "image_bytes" and not item.image_bytes:
        return _invalid("the image is empty")
    if kind == "image_uri":
        if not item.image_uri.strip():
            return _invalid("image_uri is empty")
        if len(item.image_uri) > limits.max_uri_chars:
            return _invalid(f"image_uri longer than {limits.max_uri_chars} characters")
        scheme = item.image_uri.split(":", 1)[0].lower() if ":" in item.image_uri else ""
        if scheme in ("file", "s3") and not _SHA256_HEX.match(item.image_sha256.lower()):
            # Readers verify claim-checked bytes against this hash: without it a
            # replaced object would be labelled silently.
            return _invalid("a file:// or s3:// image_uri needs image_sha256 (64 hex digits)")
    return None


def _check_extras(item: item_pb2.Item, task: task_pb2.Task, limits: IngestLimits) -> Refusal | None:
    if len(item.metadata) > limits.max_metadata_entries:
        return _invalid(
            f"metadata has {len(item.metadata)} entries, more than {limits.max_metadata_entries}"
        )
    size = sum(len(k.encode("utf-8")) + len(v.encode("utf-8")) for k, v in item.metadata.items())
    if size > limits.max_metadata_bytes:
        return _invalid(
            f"metadata of {size} bytes exceeds the limit of {limits.max_metadata_bytes}"
        )
    if item.HasField("reference_label"):
        if not limits.allow_reference_labels:
            # Task has no evaluation flag: the deployment says whether it runs an
            # evaluation (ACT_INGEST_ALLOW_REFERENCE_LABELS).
            return Refusal(
                grpc.StatusCode.FAILED_PRECONDITION,
                "reference_label is accepted only by an ingest service configured for "
                "evaluation (allow_reference_labels)",
            )
        if not 0 <= item.reference_label < len(task.labels):
            return _invalid(
                f"reference_label {item.reference_label} out of range "
                f"(task has {len(task.labels)} labels)"
            )
    return None


def check_image(item: item_pb2.Item, limits: IngestLimits) -> Refusal | None:
    """Size, type, pixel budget and decoding of inline image bytes; sets the
    MIME type when absent and the SHA-256."""
    data = item.image_bytes
    if len(data) > limits.max_inline_image_bytes:
        if not limits.claim_store_url:
            return Refusal(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"image of {len(data)} bytes exceeds the inline limit of "
                f"{limits.max_inline_image_bytes} bytes: claim check required, and this "
                "service has no claim-check store (store the image and send image_uri)",
            )
        if len(data) > limits.max_claim_image_bytes:
            return _invalid(
                f"image of {len(data)} bytes exceeds the largest accepted, "
                f"{limits.max_claim_image_bytes} bytes"
            )
    sniffed = sniff_mime(data)
    if not sniffed:
        return _invalid("image bytes are not PNG, JPEG, GIF or WebP")
    declared = item.image_mime_type.strip().lower()
    if declared and declared != sniffed:
        return _invalid(f"image_mime_type {declared[:40]!r} does not match the bytes ({sniffed})")
    digest = hashlib.sha256(data).hexdigest()
    if item.image_sha256 and item.image_sha256.lower() != digest:
        return _invalid("image_sha256 does not match the image bytes")
    refusal = _decode(data, PIL_FORMATS[sniffed], limits.max_image_pixels)
    if refusal is not None:
        return refusal
    item.image_mime_type = sniffed
    item.image_sha256 = digest
    return None


def _decode(data: bytes, expected_format: str, max_pixels: int) -> Refusal | None:
    with warnings.catch_warnings():
        # Pillow warns past its own budget and raises past twice it; ours is
        # checked from the header below, before any pixel is decoded.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data), formats=[expected_format]) as image:
                width, height = image.size
                if width * height > max_pixels:
                    return _invalid(
                        f"image of {width}x{height} pixels exceeds the budget of {max_pixels}"
                    )
                image.load()
        except Image.DecompressionBombError:
            return _invalid(f"image exceeds the pixel budget of {max_pixels}")
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
            return _invalid(f"image does not decode as {expected_format}")
    return None
