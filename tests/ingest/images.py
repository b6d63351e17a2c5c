"""Image bytes for the ingest tests: valid, truncated, and a decompression bomb header."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def png(width: int = 8, height: int = 8) -> bytes:
    """A valid RGB PNG."""
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def noisy_png(side: int = 96) -> bytes:
    """A PNG that barely compresses (seeded noise): about 3 x side^2 bytes."""
    pixels = np.random.default_rng(7).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg() -> bytes:
    """A valid JPEG."""
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (0, 90, 200)).save(buffer, format="JPEG")
    return buffer.getvalue()


def truncated_png() -> bytes:
    """PNG magic and header, pixel data cut off: does not decode."""
    data = png(64, 64)
    return data[: len(data) // 2]


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A small PNG whose header claims ``width`` x ``height`` pixels."""
    data = bytearray(png())
    # IHDR: 8 bytes signature, 4 length, 4 type, then width and height.
    data[16:24] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF
    data[29:33] = struct.pack(">I", crc)
    return bytes(data)
