"""Claim check end to end: an image over the inline limit is stored by the ingest
service and travels as image_uri + image_sha256; readers verify the bytes."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlparse

import grpc
import pytest
from act.v1 import api_pb2, common_pb2, item_pb2

from services.ingest.app import IngestService
from services.llm.images import item_image
from services.runtime.retry import PermanentError
from services.trainer.features import FeatureError
from services.trainer.items import read_uri
from tests.ingest import images
from tests.ingest.conftest import Env, Running, producer_auth, stream, valid_task

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

INLINE_LIMIT = 4_000


@pytest.fixture(scope="module")
def claims(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("claims")


@pytest.fixture(scope="module")
async def claim_running(env: Env, claims: Path) -> AsyncIterator[Running]:
    settings = env.settings(
        claim_store_url=str(claims),
        max_inline_image_bytes=INLINE_LIMIT,
        max_claim_image_bytes=10**6,
    )
    service = IngestService(settings, env.kafka, host="127.0.0.1")
    await service.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{service.port}")
    try:
        yield Running(service, channel)
    finally:
        await channel.close()
        await service.stop()


async def test_large_images_travel_by_claim_check(
    env: Env, claim_running: Running, claims: Path
) -> None:
    stub = claim_running.stub()
    await stub.CreateTask(
        api_pb2.CreateTaskRequest(task=valid_task("claims", common_pb2.MODALITY_IMAGE)),
        metadata=producer_auth(),
        timeout=10,
    )
    big, small = images.noisy_png(), images.png()
    assert len(big) > INLINE_LIMIT > len(small)
    items = [
        item_pb2.Item(item_id="big", task_id="claims", image_bytes=big),
        item_pb2.Item(item_id="small", task_id="claims", image_bytes=small),
        item_pb2.Item(item_id="huge", task_id="claims", image_bytes=images.noisy_png(800)),
        # A reference without its hash could not be verified by the readers.
        item_pb2.Item(item_id="unhashed", task_id="claims", image_uri="s3://claims/x"),
    ]
    summary = await stub.Ingest(stream(items), metadata=producer_auth(), timeout=30)
    assert (summary.accepted, summary.rejected) == (2, 2)
    refused = {
        e.item_id: grpc.StatusCode.INVALID_ARGUMENT.value[0] == e.code for e in summary.errors
    }
    assert refused == {"huge": True, "unhashed": True}

    published = {i.item_id: i for i in await env.items() if i.task_id == "claims"}
    assert published["small"].image_bytes == small  # under the limit: inline as before
    stored = published["big"]
    assert stored.WhichOneof("image") == "image_uri" and not stored.image_bytes
    assert stored.image_sha256 == hashlib.sha256(big).hexdigest()
    assert stored.image_mime_type == "image/png"
    path = Path(urlparse(stored.image_uri).path)
    assert claims in path.parents and path.read_bytes() == big

    # The stages read it back, verified: the LLM prompt and the trainer.
    part = item_image(stored, str(claims))
    assert part is not None and part.data == big
    assert read_uri(stored.image_uri, stored.image_sha256) == big
    # Without a configured store the LLM stages dead-letter it (PermanentError).
    with pytest.raises(PermanentError):
        item_image(stored, "")

    # A replaced object is refused: dead-lettered by the LLM stages, skipped by a fit.
    path.write_bytes(big[:-1] + b"\x00")
    with pytest.raises(PermanentError, match="image_sha256"):
        item_image(stored, str(claims))
    with pytest.raises(FeatureError):
        read_uri(stored.image_uri, stored.image_sha256)
