"""The claim-check stores: a directory, and S3 through boto3.

S3 cannot run here, so its protocol is served by moto's server (a stand-in,
named as one: an HTTP server speaking the S3 REST API that boto3 talks to
unchanged, the way it talks to MinIO or AWS).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.runtime.claimcheck import (
    ClaimCheckError,
    ClaimMismatchError,
    DirectoryStore,
    S3Store,
    fetch_verified,
    open_store,
    store_for_reference,
)

DATA = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40
SHA = hashlib.sha256(DATA).hexdigest()
CREDENTIALS = {
    "aws_access_key_id": "stand-in",
    "aws_secret_access_key": "stand-in",
    "region_name": "us-east-1",
}


def test_directory_store_is_content_addressed_and_idempotent(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path / "claims")
    uri = store.put(DATA, SHA)
    assert uri.startswith("file://") and uri.endswith(f"/{SHA[:2]}/{SHA}")
    assert store.put(DATA, SHA.upper()) == uri  # again: same object, no error
    assert fetch_verified(store, uri, SHA) == DATA
    assert [p.name for p in (tmp_path / "claims" / SHA[:2]).iterdir()] == [SHA]  # no temp left


def test_directory_store_refuses_references_outside_it(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path / "claims")
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"not an image")
    for uri in (secret.as_uri(), f"file://{tmp_path}/claims/../secret.txt", "s3://b/k"):
        with pytest.raises(ClaimCheckError):
            store.get(uri)
    with pytest.raises(ClaimCheckError, match="not found"):
        store.get((tmp_path / "claims" / "ab" / ("ab" + "0" * 62)).as_uri())
    with pytest.raises(ClaimCheckError, match="SHA-256"):
        store.put(DATA, "../../etc/passwd")


def test_a_replaced_object_is_a_mismatch(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path)
    uri = store.put(DATA, SHA)
    (tmp_path / SHA[:2] / SHA).write_bytes(DATA[:-1] + b"x")
    with pytest.raises(ClaimMismatchError):
        fetch_verified(store, uri, SHA)
    # The reader without a configured store (the trainer) checks just as well.
    with pytest.raises(ClaimMismatchError):
        fetch_verified(store_for_reference(uri), uri, SHA)


def test_open_store_by_url(tmp_path: Path) -> None:
    assert open_store(str(tmp_path)) == DirectoryStore(tmp_path)
    assert open_store(tmp_path.as_uri()) == DirectoryStore(tmp_path)
    s3 = open_store("s3://bucket/some/prefix?endpoint_url=http://127.0.0.1:1&region=eu-west-1")
    assert isinstance(s3, S3Store) and (s3.bucket, s3.prefix) == ("bucket", "some/prefix")
    assert s3.client.meta.endpoint_url == "http://127.0.0.1:1"
    assert s3.client.meta.region_name == "eu-west-1"
    for bad in ("ftp://x/y", "s3:///prefix"):
        with pytest.raises(ClaimCheckError):
            open_store(bad)


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on a free port (the stand-in) with one bucket."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=endpoint, **CREDENTIALS).create_bucket(Bucket="claims")
    try:
        yield endpoint
    finally:
        server.stop()


def test_s3_store_round_trip_through_the_protocol(s3_endpoint: str) -> None:
    store = open_store(f"s3://claims/act/images?endpoint_url={s3_endpoint}", **CREDENTIALS)
    uri = store.put(DATA, SHA)
    assert uri == f"s3://claims/act/images/{SHA}"
    assert fetch_verified(store, uri, SHA) == DATA
    with pytest.raises(ClaimMismatchError):
        fetch_verified(store, uri, "0" * 64)
    with pytest.raises(ClaimCheckError, match="not found"):
        store.get(f"s3://claims/act/images/{'1' * 64}")
    with pytest.raises(ClaimCheckError, match="outside"):
        store.get(f"s3://other-bucket/act/images/{SHA}")
