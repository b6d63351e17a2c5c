"""The minimal grayscale PNG codec used for Fashion-MNIST items."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from services.datasets import ImageDecodeError, decode_gray, encode_gray_png, resize_gray
from services.datasets.png import PNG_SIGNATURE, _chunk


def test_round_trip_random_images():
    rng = np.random.default_rng(0)
    for shape in [(28, 28), (1, 1), (5, 13)]:
        pixels = rng.integers(0, 256, shape, dtype=np.uint8)
        png = encode_gray_png(pixels)
        assert png.startswith(PNG_SIGNATURE)
        assert np.array_equal(decode_gray(png), pixels)
    assert encode_gray_png(pixels) == encode_gray_png(pixels.copy())  # deterministic


def _png_with_filters(pixels: np.ndarray, filters: list[int]) -> bytes:
    """Encode with the given per-row PNG filter types (to test the decoder)."""
    h, w = pixels.shape
    rows = []
    prev = np.zeros(w, dtype=np.int64)
    for y in range(h):
        cur = pixels[y].astype(np.int64)
        kind = filters[y % len(filters)]
        left = np.concatenate(([0], cur[:-1]))
        upper_left = np.concatenate(([0], prev[:-1]))
        if kind == 0:
            enc = cur
        elif kind == 1:
            enc = cur - left
        elif kind == 2:
            enc = cur - prev
        elif kind == 3:
            enc = cur - (left + prev) // 2
        else:
            pred = []
            for a, b, c in zip(left, prev, upper_left, strict=True):
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred.append(a if pa <= pb and pa <= pc else b if pb <= pc else c)
            enc = cur - np.array(pred)
        rows.append(bytes([kind]) + bytes((enc & 0xFF).astype(np.uint8)))
        prev = cur
    header = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return (
        PNG_SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(b"".join(rows)))
        + _chunk(b"IEND", b"")
    )


def test_decoder_handles_every_filter_type():
    pixels = np.random.default_rng(1).integers(0, 256, (10, 9), dtype=np.uint8)
    png = _png_with_filters(pixels, [0, 1, 2, 3, 4])
    assert np.array_equal(decode_gray(png), pixels)


def test_bad_inputs():
    with pytest.raises(ImageDecodeError):
        decode_gray(b"")
    with pytest.raises(ValueError):
        encode_gray_png(np.zeros((2, 2, 3), dtype=np.uint8))
    truncated = encode_gray_png(np.zeros((28, 28), dtype=np.uint8))[:40]
    with pytest.raises(ImageDecodeError):
        decode_gray(truncated)


def test_resize():
    image = np.arange(56 * 56, dtype=np.int64).reshape(56, 56) % 256
    small = resize_gray(image.astype(np.uint8), 28)
    assert small.shape == (28, 28)
    assert small[0, 0] == round(np.mean(image[:2, :2]))
    big = resize_gray(np.full((7, 7), 200, dtype=np.uint8), 28)
    assert big.shape == (28, 28) and (big == 200).all()
    same = np.zeros((28, 28), dtype=np.uint8)
    assert resize_gray(same) is same
