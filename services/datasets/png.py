"""Minimal PNG for 8-bit grayscale images, in numpy and the standard library.

Fashion-MNIST items travel through the pipeline as PNG bytes (``Item.image_bytes``,
``image/png``), like any uploaded image. Encoding 60,000 28x28 images and
decoding them again in the few-shot backend is on the hot path, and needs no
imaging library for the one format we produce: 8-bit grayscale, no interlace.
Any other image (colour, palette, JPEG, ...) is decoded with Pillow when it is
installed (an optional dependency), then converted to grayscale.
"""

from __future__ import annotations

import importlib
import io
import struct
import zlib
from typing import Any

import numpy as np
import numpy.typing as npt

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_GRAY = 0  # PNG colour type of 8-bit grayscale


class ImageDecodeError(ValueError):
    """Bytes that are not an image we can read."""


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_gray_png(pixels: npt.NDArray[np.uint8]) -> bytes:
    """PNG bytes of a 2-D uint8 array (height x width), grayscale, deterministic.

    Rows use filter type 0 (none); zlib level 9 keeps a 28x28 image near 400 bytes.
    """
    if pixels.ndim != 2 or pixels.dtype != np.uint8:
        raise ValueError(f"expected a 2-D uint8 array, got {pixels.ndim}-D {pixels.dtype}")
    height, width = pixels.shape
    raw = np.zeros((height, width + 1), dtype=np.uint8)  # a leading 0 = filter "none"
    raw[:, 1:] = pixels
    header = struct.pack(">IIBBBBB", width, height, 8, _GRAY, 0, 0, 0)
    return (
        PNG_SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(raw.tobytes(), 9))
        + _chunk(b"IEND", b"")
    )


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def _unfilter(data: bytes, width: int, height: int) -> npt.NDArray[np.uint8]:
    """Undo PNG's per-row filters for 1 byte per pixel (filter method 0)."""
    stride = width + 1
    if len(data) < stride * height:
        raise ImageDecodeError("truncated PNG image data")
    out = np.zeros((height, width), dtype=np.uint8)
    prev = np.zeros(width, dtype=np.int64)
    for y in range(height):
        kind = data[y * stride]
        row = np.frombuffer(data, dtype=np.uint8, count=width, offset=y * stride + 1).astype(
            np.int64
        )
        if kind == 0:
            cur = row
        elif kind == 2:  # up
            cur = (row + prev) & 0xFF
        elif kind in (1, 3, 4):  # sub, average, paeth depend on the pixel to the left
            cur = np.zeros(width, dtype=np.int64)
            left = 0
            for x in range(width):
                if kind == 1:
                    value = row[x] + left
                elif kind == 3:
                    value = row[x] + ((left + int(prev[x])) >> 1)
                else:
                    upper_left = int(prev[x - 1]) if x else 0
                    value = row[x] + _paeth(left, int(prev[x]), upper_left)
                left = int(value) & 0xFF
                cur[x] = left
        else:
            raise ImageDecodeError(f"unknown PNG filter type {kind}")
        out[y] = cur.astype(np.uint8)
        prev = cur
    return out


def _decode_gray_png(data: bytes) -> npt.NDArray[np.uint8] | None:
    """The pixels of an 8-bit grayscale non-interlaced PNG; None for other PNG kinds."""
    pos = len(PNG_SIGNATURE)
    width = height = -1
    idat = bytearray()
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if len(body) != length:
            raise ImageDecodeError("truncated PNG chunk")
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if depth != 8 or colour != _GRAY or interlace != 0:
                return None
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    if width <= 0 or height <= 0:
        raise ImageDecodeError("PNG without a valid IHDR chunk")
    try:
        raw = zlib.decompress(bytes(idat))
    except zlib.error as exc:
        raise ImageDecodeError(f"corrupt PNG image data: {exc}") from exc
    return _unfilter(raw, width, height)


def _decode_with_pillow(data: bytes) -> npt.NDArray[np.uint8]:
    try:
        # Optional dependency, imported by name so type checking does not need it.
        pil_image: Any = importlib.import_module("PIL.Image")
    except ImportError as exc:
        raise ImageDecodeError(
            "only 8-bit grayscale PNG can be decoded without Pillow; install pillow "
            "to read other image formats"
        ) from exc
    try:
        with pil_image.open(io.BytesIO(data)) as image:
            return np.asarray(image.convert("L"), dtype=np.uint8).copy()
    except (OSError, ValueError) as exc:  # UnidentifiedImageError is an OSError
        raise ImageDecodeError(f"cannot decode image: {exc}") from exc


def decode_gray(data: bytes) -> npt.NDArray[np.uint8]:
    """A 2-D uint8 grayscale array from image bytes (PNG fast path, Pillow otherwise)."""
    if not data:
        raise ImageDecodeError("empty image")
    if data.startswith(PNG_SIGNATURE):
        pixels = _decode_gray_png(data)
        if pixels is not None:
            return pixels
    return _decode_with_pillow(data)


def resize_gray(pixels: npt.NDArray[np.uint8], size: int = 28) -> npt.NDArray[np.uint8]:
    """Resize a grayscale image to ``size`` x ``size`` by area averaging (bilinear-free).

    Each output pixel averages the input pixels whose centres fall in its cell,
    which is adequate for models trained on 28x28 thumbnails. Identity when
    the image already has that size.
    """
    height, width = pixels.shape
    if (height, width) == (size, size):
        return pixels
    rows = np.minimum((np.arange(height) * size) // height, size - 1)
    cols = np.minimum((np.arange(width) * size) // width, size - 1)
    sums = np.zeros((size, size), dtype=np.float64)
    counts = np.zeros((size, size), dtype=np.float64)
    np.add.at(sums, (rows[:, None], cols[None, :]), pixels.astype(np.float64))
    np.add.at(counts, (rows[:, None], cols[None, :]), 1.0)
    # Upscaling leaves empty cells; fill them from the nearest source pixel.
    empty = counts == 0
    if empty.any():
        src_r = np.minimum((np.arange(size) * height) // size, height - 1)
        src_c = np.minimum((np.arange(size) * width) // size, width - 1)
        nearest = pixels[src_r[:, None], src_c[None, :]].astype(np.float64)
        sums[empty] = nearest[empty]
        counts[empty] = 1.0
    return np.clip(np.rint(sums / counts), 0, 255).astype(np.uint8)
