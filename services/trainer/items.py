"""Model input from stored items: image bytes, claim-check image files, text.

The store keeps each label's ``act.v1.Item`` as sent; a fit decodes it into
the raw input its model family reads (:class:`~services.trainer.networks.InputKind`).
Items that cannot be decoded raise :class:`~services.trainer.features.FeatureError`
so the fit skips them.
"""

from __future__ import annotations

from typing import Any

from act.v1 import item_pb2

from services.runtime.claimcheck import ClaimCheckError, fetch_verified, store_for_reference
from services.trainer.features import FeatureError, decode_item_image
from services.trainer.networks import InputKind


def raw_input(kind: InputKind, item: item_pb2.Item) -> Any:
    """The raw model input of an item (a 28x28 uint8 image or a text)."""
    if kind is InputKind.IMAGE28:
        which = item.WhichOneof("image")
        if which == "image_bytes":
            return decode_item_image(bytes(item.image_bytes))
        if which == "image_uri":
            return decode_item_image(read_uri(item.image_uri, item.image_sha256))
        raise FeatureError("item has no image")
    if kind in (InputKind.MINILM_EMBEDDING, InputKind.TEXT):
        if not item.text.strip():
            raise FeatureError("item has no text")
        return item.text
    raise FeatureError(f"the trainer cannot build {kind} inputs from items")


def decode_stored_item(kind: InputKind, item: bytes) -> Any:
    """:func:`raw_input` of a serialised ``act.v1.Item`` (as the store keeps it)."""
    return raw_input(kind, item_pb2.Item.FromString(item))


def read_uri(uri: str, sha256: str = "") -> bytes:
    """A claim-checked image (``file://``, a path, or ``s3://``), checked against
    ``sha256``; a mismatch or an unreadable reference is a FeatureError (the fit
    skips the item)."""
    try:
        return fetch_verified(store_for_reference(uri), uri, sha256)
    except ClaimCheckError as exc:
        raise FeatureError(f"cannot use image_uri: {exc}") from exc
    except OSError as exc:
        raise FeatureError(f"cannot read image_uri ({type(exc).__name__})") from exc
