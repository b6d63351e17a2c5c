"""Model input from stored items: image bytes, claim-check image files, text.

The store keeps each label's ``act.v1.Item`` as sent; a fit decodes it into
the raw input its model family reads (:class:`~services.trainer.models.InputKind`).
Items that cannot be decoded raise :class:`~services.trainer.features.FeatureError`
so the fit skips them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from act.v1 import item_pb2

from services.trainer.features import FeatureError, decode_item_image
from services.trainer.models import InputKind


def raw_input(kind: InputKind, item: item_pb2.Item) -> Any:
    """The raw model input of an item (a 28x28 uint8 image or a text)."""
    if kind is InputKind.IMAGE28:
        which = item.WhichOneof("image")
        if which == "image_bytes":
            return decode_item_image(bytes(item.image_bytes))
        if which == "image_uri":
            return decode_item_image(read_uri(item.image_uri))
        raise FeatureError("item has no image")
    if kind in (InputKind.MINILM_EMBEDDING, InputKind.TEXT):
        if not item.text.strip():
            raise FeatureError("item has no text")
        return item.text
    raise FeatureError(f"the trainer cannot build {kind} inputs from items")


def decode_stored_item(kind: InputKind, item: bytes) -> Any:
    """:func:`raw_input` of a serialised ``act.v1.Item`` (as the store keeps it)."""
    return raw_input(kind, item_pb2.Item.FromString(item))


def read_uri(uri: str) -> bytes:
    """Resolve a claim-check reference on the local store (``file://`` or a path)."""
    parsed = urlparse(uri)
    if parsed.scheme not in ("", "file"):
        raise FeatureError(f"unsupported image_uri scheme {parsed.scheme!r}")
    try:
        return Path(unquote(parsed.path)).read_bytes()
    except OSError as exc:
        raise FeatureError(f"cannot read {uri}: {exc}") from exc
