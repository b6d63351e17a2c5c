"""Claim check: images too large for a Kafka record travel as a reference.

The ingest service stores an image over its inline limit in an object store
under its SHA-256 (content-addressed, so a retried stream stores the same
object again, harmlessly) and sends ``Item.image_uri`` with
``Item.image_sha256`` instead of the bytes. Every stage that reads pixels
fetches them with :func:`fetch_verified`, which refuses bytes whose hash
differs: the caller turns that into a permanent error, so the record is
dead-lettered rather than labelled from the wrong image.

Stores, chosen by one URL (:func:`open_store`):

* a directory, ``file:///var/lib/act/claims`` or a plain path: local
  development, or a volume every reader mounts;
* ``s3://bucket/prefix``, optionally ``?endpoint_url=https://...&region=...``:
  Amazon S3 or any S3-compatible store (MinIO, Ceph, GCS's XML API) through
  boto3, with credentials from the standard AWS chain (environment, profile,
  instance or pod identity), never from the URL.

The functions are blocking (file and HTTP I/O): async callers run them in a
worker thread.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlparse

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ClaimCheckError(Exception):
    """A reference that cannot be stored or read (unknown scheme, outside the
    store, missing object). Messages name the reference, never content."""


class ClaimMismatchError(ClaimCheckError):
    """The stored bytes do not hash to the item's ``image_sha256``."""


class ClaimStore(Protocol):
    """Where claim-checked images live."""

    def put(self, data: bytes, sha256: str) -> str:
        """Store ``data`` (whose SHA-256 is ``sha256``); its URI."""

    def get(self, uri: str) -> bytes:
        """The bytes behind ``uri`` (a URI of this store)."""


def _check_digest(sha256: str) -> str:
    digest = sha256.lower()
    if not _SHA256.match(digest):
        raise ClaimCheckError("a claim-check key must be a hex SHA-256")
    return digest


@dataclass(frozen=True)
class DirectoryStore:
    """Objects as files ``<root>/<first two hex digits>/<sha256>``."""

    root: Path

    def put(self, data: bytes, sha256: str) -> str:
        """Write atomically (temporary file, then rename); an existing object is kept."""
        digest = _check_digest(sha256)
        path = self.root / digest[:2] / digest
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(data)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        return path.resolve().as_uri()

    def get(self, uri: str) -> bytes:
        """Read a ``file://`` URI below the root; anything else is refused."""
        parsed = urlparse(uri)
        if parsed.scheme != "file":
            raise ClaimCheckError(f"not a file:// reference ({parsed.scheme or 'no'} scheme)")
        root = self.root.resolve()
        path = Path(unquote(parsed.path)).resolve()
        if root not in path.parents:
            raise ClaimCheckError("image reference outside the claim-check store")
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise ClaimCheckError("claim-checked image not found") from None


class S3Store:
    """Objects ``s3://<bucket>/<prefix>/<sha256>`` in S3 or an S3-compatible store."""

    def __init__(self, bucket: str, prefix: str = "", client: Any = None, **client_args: Any):
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        if client is None:
            import boto3  # type: ignore[import-untyped]

            client = boto3.client("s3", **client_args)
        self.client = client

    def _key(self, digest: str) -> str:
        return f"{self.prefix}/{digest}" if self.prefix else digest

    def put(self, data: bytes, sha256: str) -> str:
        """Upload (overwriting the same content is harmless: the key is its hash)."""
        digest = _check_digest(sha256)
        key = self._key(digest)
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data)
        return f"s3://{self.bucket}/{key}"

    def get(self, uri: str) -> bytes:
        """Download an ``s3://`` URI of this bucket; other buckets are refused."""
        parsed = urlparse(uri)
        if parsed.scheme != "s3" or parsed.netloc != self.bucket:
            raise ClaimCheckError("image reference outside the claim-check bucket")
        key = parsed.path.lstrip("/")
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
        except self.client.exceptions.NoSuchKey:
            raise ClaimCheckError("claim-checked image not found") from None
        return bytes(response["Body"].read())


def open_store(url: str, **client_args: Any) -> ClaimStore:
    """The store a URL names: a directory (path or ``file://``) or ``s3://bucket/prefix``.

    For S3, ``endpoint_url`` and ``region`` may come from the URL's query
    (``s3://b/p?endpoint_url=http://minio:9000&region=us-east-1``);
    ``client_args`` go to ``boto3.client`` (tests pass credentials this way).
    """
    parsed = urlparse(url)
    if parsed.scheme in ("", "file"):
        path = unquote(parsed.path) if parsed.scheme else url
        if not path:
            raise ClaimCheckError("empty claim-check store path")
        return DirectoryStore(Path(path))
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ClaimCheckError("s3:// claim-check URL without a bucket")
        query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        args = dict(client_args)
        if "endpoint_url" in query:
            args.setdefault("endpoint_url", query["endpoint_url"])
        if "region" in query:
            args.setdefault("region_name", query["region"])
        return S3Store(parsed.netloc, parsed.path, **args)
    raise ClaimCheckError(f"unsupported claim-check store scheme {parsed.scheme!r}")


def store_for_reference(uri: str, **client_args: Any) -> ClaimStore:
    """A store able to read ``uri`` when the reader has no configured store
    (the trainer): the bucket of an ``s3://`` URI, or the file's own folder."""
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        return S3Store(parsed.netloc, **client_args)
    if parsed.scheme in ("", "file"):
        path = Path(unquote(parsed.path))
        return DirectoryStore(path.parent)
    raise ClaimCheckError(f"unsupported image reference scheme {parsed.scheme!r}")


def fetch_verified(store: ClaimStore, uri: str, sha256: str) -> bytes:
    """The bytes behind ``uri``, checked against ``sha256``.

    The ingest service refuses a claim-check reference without a hash; items
    written to Kafka by other producers may lack one, and are read unchecked.
    """
    data = store.get(uri)
    if sha256 and hashlib.sha256(data).hexdigest() != sha256.lower():
        raise ClaimMismatchError("image bytes do not match image_sha256")
    return data
