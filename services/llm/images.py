"""Images of items: inline bytes or claim-check URIs, as prompt parts or as text.

A text-only model (``supports_images = False``, e.g. SmolLM2) cannot see
pixels. It gets the item's own text (a caption, when the producer sent one)
and a coarse character rendering of the image (PNG, 8-bit, non-interlaced;
grey levels as `` .:-=+*#%@``, at most 28 columns). That keeps every strategy
runnable end to end on a CPU; it is not meant to be a good image classifier.
"""

from __future__ import annotations

import functools
import hashlib
import struct
import zlib
from urllib.parse import urlparse

from act.v1 import item_pb2

from services.llm.types import ImagePart
from services.runtime.claimcheck import ClaimCheckError, ClaimStore, fetch_verified, open_store
from services.runtime.retry import PermanentError

_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)
_RAMP = " .:-=+*#%@"


def sniff_mime(data: bytes, declared: str = "") -> str:
    """The declared MIME type, else one sniffed from magic bytes, else image/png."""
    if declared:
        return declared
    for magic, mime in _MAGIC:
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "image/png"


def item_image(item: item_pb2.Item, claim_store: str = "") -> ImagePart | None:
    """The item's image as a prompt part; None when it has none.

    Claim-check references (``file://``, ``s3://``) are read only from the
    store ``claim_store`` names (:func:`services.runtime.claimcheck.open_store`)
    and checked against ``image_sha256``; ``http(s)`` URIs are passed to the
    provider, which fetches them; other schemes are refused. Every refusal is a
    PermanentError, so the record is dead-lettered, never labelled from other
    bytes than the producer sent.
    """
    which = item.WhichOneof("image")
    if which is None:
        return None
    if which == "image_bytes":
        data = bytes(item.image_bytes)
    else:
        uri = item.image_uri
        scheme = urlparse(uri).scheme.lower()
        if scheme in ("http", "https"):
            return ImagePart(url=uri, mime_type=item.image_mime_type or "image/png")
        if scheme not in ("file", "s3"):
            raise PermanentError(f"unsupported image URI scheme {scheme!r}")
        if not claim_store:
            raise PermanentError("claim-check image references need claim_store_url")
        try:
            data = fetch_verified(_store(claim_store), uri, item.image_sha256)
        except ClaimCheckError as exc:
            raise PermanentError(str(exc)) from None
    if item.image_sha256 and hashlib.sha256(data).hexdigest() != item.image_sha256.lower():
        raise PermanentError("image bytes do not match image_sha256")
    return ImagePart(data=data, mime_type=sniff_mime(data, item.image_mime_type))


@functools.lru_cache(maxsize=4)
def _store(url: str) -> ClaimStore:
    # One store (and S3 client, with its connection pool) per configured URL.
    return open_store(url)


def _png_grey(data: bytes) -> tuple[int, int, list[list[int]]] | None:
    """Width, height and grey rows of an 8-bit non-interlaced PNG; None otherwise."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return None
    pos, idat, header = 8, bytearray(), None
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
        pos += 12 + length
    if header is None:
        return None
    width, height, depth, color, _, _, interlace = header
    channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(color)
    if depth != 8 or channels is None or interlace or width * height > 4_000_000:
        return None
    try:
        raw = zlib.decompress(bytes(idat))
    except zlib.error:
        return None
    stride = width * channels
    if len(raw) < height * (stride + 1):
        return None
    rows: list[list[int]] = []
    prev = bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = prev[i]
            corner = prev[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                pred = left if pa <= pb and pa <= pc else (up if pb <= pc else corner)
                line[i] = (line[i] + pred) & 0xFF
        prev = line
        if channels >= 3:
            rows.append(
                [
                    (
                        line[x * channels] * 299
                        + line[x * channels + 1] * 587
                        + line[x * channels + 2] * 114
                    )
                    // 1000
                    for x in range(width)
                ]
            )
        else:
            rows.append([line[x * channels] for x in range(width)])
    return width, height, rows


def render_as_text(data: bytes, max_cols: int = 28) -> str | None:
    """A character rendering of a PNG (bright = dense); None when it cannot be read."""
    decoded = _png_grey(data)
    if decoded is None:
        return None
    width, height, rows = decoded
    step = max(1, -(-width // max_cols))
    lines = []
    # Characters are about twice as tall as wide: sample rows at twice the step.
    for y in range(0, height, step * 2):
        cells = []
        for x in range(0, width, step):
            block = [
                rows[yy][xx]
                for yy in range(y, min(y + step * 2, height))
                for xx in range(x, min(x + step, width))
            ]
            level = sum(block) // len(block)
            cells.append(_RAMP[level * (len(_RAMP) - 1) // 255])
        lines.append("".join(cells).rstrip())
    return "\n".join(lines)
