"""Tiny PNG images made in code (no image library needed)."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def grey_png(rows: Sequence[Sequence[int]]) -> bytes:
    """An 8-bit greyscale PNG of ``rows`` (values 0..255), filter type 0 on every row."""
    height, width = len(rows), len(rows[0])
    raw = b"".join(b"\x00" + bytes(r) for r in rows)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + _chunk(b"IDAT", zlib.compress(raw))
        + _chunk(b"IEND", b"")
    )


def shape_png(kind: str, size: int = 28) -> bytes:
    """A bright shape on black: "bar" (a vertical bar, like trousers) or "block" (a wide
    block, like a bag) or "ring"."""
    rows = []
    c = size // 2
    for y in range(size):
        row = []
        for x in range(size):
            if kind == "bar":
                on = abs(x - c) < size // 6 and 2 < y < size - 2
            elif kind == "block":
                on = 6 < y < size - 4 and 3 < x < size - 3
            else:
                on = (size // 4) ** 2 < (x - c) ** 2 + (y - c) ** 2 < (size // 3) ** 2
            row.append(230 if on else 0)
        rows.append(row)
    return grey_png(rows)
