"""The validation matrix of one streamed item: every refusal and its status code."""

from __future__ import annotations

import grpc
import pytest
from act.v1 import common_pb2, item_pb2, task_pb2

from services.ingest.settings import IngestSettings
from services.ingest.validation import check_ids, check_item, unknown_task
from tests.ingest import images

LIMITS = IngestSettings(
    max_text_bytes=100,
    max_inline_image_bytes=50_000,
    max_image_pixels=10_000,
    max_metadata_entries=3,
    max_metadata_bytes=64,
)
EVAL = LIMITS.model_copy(update={"allow_reference_labels": True})
# With a claim-check store, images over the inline limit are checked (and then
# stored by the service) up to max_claim_image_bytes.
CLAIMS = LIMITS.model_copy(
    update={"claim_store_url": "/var/lib/act/claims", "max_image_pixels": 1_000_000}
)
SMALL_CLAIMS = CLAIMS.model_copy(update={"max_claim_image_bytes": 60_000})
OK = None
SECRET = "secret-content-7f3a"
PNG = images.png()
BIG_PNG = b"\x89PNG\r\n\x1a\n" + bytes(50_000)
NOISY_PNG = images.noisy_png(200)  # a valid PNG of ~120 kB
FOUR = {str(i): "v" for i in range(4)}

INVALID = grpc.StatusCode.INVALID_ARGUMENT
PRECONDITION = PRE = grpc.StatusCode.FAILED_PRECONDITION


def task(modality: int) -> task_pb2.Task:
    labels = ["no", "yes"] if modality == common_pb2.MODALITY_VQA else ["ham", "spam"]
    return task_pb2.Task(
        task_id="t1",
        modality=modality,
        labels=[task_pb2.Label(index=i, name=n) for i, n in enumerate(labels)],
    )


TEXT, IMAGE, VQA = (
    task(common_pb2.MODALITY_TEXT),
    task(common_pb2.MODALITY_IMAGE),
    task(common_pb2.MODALITY_VQA),
)


def item(**fields: object) -> item_pb2.Item:
    values: dict[str, object] = {"item_id": "i1", "task_id": "t1"}
    values.update(fields)
    return item_pb2.Item(**values)  # type: ignore[arg-type]


CASES = [
    ("text ok", TEXT, item(text="hello"), LIMITS, OK),
    ("image ok", IMAGE, item(image_bytes=PNG), LIMITS, OK),
    ("jpeg ok", IMAGE, item(image_bytes=images.jpeg(), image_mime_type="image/jpeg"), LIMITS, OK),
    ("claim check uri ok", IMAGE, item(image_uri="s3://b/k", image_sha256="ab" * 32), LIMITS, OK),
    ("claim check uri without hash", IMAGE, item(image_uri="s3://b/k.png"), LIMITS, INVALID),
    ("http image uri", IMAGE, item(image_uri="https://example.org/k.png"), LIMITS, OK),
    ("vqa ok", VQA, item(image_bytes=PNG, question="a cat?"), LIMITS, OK),
    ("reference label in eval", TEXT, item(text=SECRET, reference_label=1), EVAL, OK),
    ("no item id", TEXT, item(item_id="", text=SECRET), LIMITS, INVALID),
    ("long item id", TEXT, item(item_id="i" * 300, text=SECRET), LIMITS, INVALID),
    ("no task id", TEXT, item(task_id="", text=SECRET), LIMITS, INVALID),
    ("empty content", TEXT, item(text="  "), LIMITS, INVALID),
    ("text over limit", TEXT, item(text=SECRET * 101), LIMITS, INVALID),
    ("question over limit", VQA, item(image_bytes=PNG, question=SECRET * 10), LIMITS, INVALID),
    ("image for text task", TEXT, item(text=SECRET, image_bytes=PNG), LIMITS, INVALID),
    ("text for image task", IMAGE, item(text=SECRET), LIMITS, INVALID),
    ("vqa without question", VQA, item(image_bytes=PNG), LIMITS, INVALID),
    ("mime mismatch", IMAGE, item(image_bytes=PNG, image_mime_type="image/jpeg"), LIMITS, INVALID),
    ("not an image", IMAGE, item(image_bytes=b"GIF-not-really"), LIMITS, INVALID),
    ("does not decode", IMAGE, item(image_bytes=images.truncated_png()), LIMITS, INVALID),
    ("over pixel budget", IMAGE, item(image_bytes=images.png(101, 100)), LIMITS, INVALID),
    ("decompression bomb", IMAGE, item(image_bytes=images.bomb_png()), LIMITS, INVALID),
    ("sha256 mismatch", IMAGE, item(image_bytes=PNG, image_sha256="00" * 32), LIMITS, INVALID),
    ("over inline limit", IMAGE, item(image_bytes=BIG_PNG), LIMITS, PRE),
    ("over inline limit with a store", IMAGE, item(image_bytes=NOISY_PNG), CLAIMS, OK),
    ("over the claim-check limit", IMAGE, item(image_bytes=NOISY_PNG), SMALL_CLAIMS, INVALID),
    ("too many metadata entries", TEXT, item(text=SECRET, metadata=FOUR), LIMITS, INVALID),
    ("metadata over limit", TEXT, item(text=SECRET, metadata={"k": "v" * 64}), LIMITS, INVALID),
    ("reference label outside eval", TEXT, item(text=SECRET, reference_label=1), LIMITS, PRE),
    ("reference label out of range", TEXT, item(text=SECRET, reference_label=2), EVAL, INVALID),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "the_task", "the_item", "limits", "expected"), CASES, ids=[c[0] for c in CASES]
)
def test_validation_matrix(
    name: str,
    the_task: task_pb2.Task,
    the_item: item_pb2.Item,
    limits: IngestSettings,
    expected: grpc.StatusCode | None,
) -> None:
    secret = the_item.text + the_item.question
    refusal = check_item(the_item, the_task, limits)
    assert (refusal.code if refusal else None) == expected, refusal
    if refusal is not None:
        assert refusal.code_number == expected.value[0]  # type: ignore[union-attr]
        # Messages never quote the item's content.
        assert not secret.strip() or secret not in refusal.message


def test_accepted_image_gets_mime_type_digest_and_time() -> None:
    accepted = item(image_bytes=images.png())
    assert check_item(accepted, IMAGE, LIMITS) is None
    assert accepted.image_mime_type == "image/png"
    assert len(accepted.image_sha256) == 64
    assert accepted.HasField("created_at")


def test_inline_limit_message_says_claim_check() -> None:
    big = item(image_bytes=BIG_PNG)
    refusal = check_item(big, IMAGE, LIMITS)
    assert refusal is not None and "claim check required" in refusal.message


def test_ids_and_unknown_task() -> None:
    assert check_ids(item()) is None
    assert unknown_task(2).code == grpc.StatusCode.NOT_FOUND
