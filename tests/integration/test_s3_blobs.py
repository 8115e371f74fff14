"""The S3 blob store against a real S3 API: moto's server over HTTP on 127.0.0.1.

Runs the shared blob store contract, then what only S3 does: multipart uploads for large blobs,
the conditional put that never overwrites, an object replaced behind the store's back, and an
unreachable endpoint failing with a StorageError after a bounded number of attempts.
"""

from __future__ import annotations

import socket
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for the shared contract

from modelward.errors import DigestMismatchError, StorageError
from modelward.storage.blobs import BlobInfo, S3BlobStore, open_blob_store
from storage_contract import BlobStoreContract, StoreHarness, sha256_hex

BUCKET = "modelward-blobs"
PART_SIZE = 5 * 1024 * 1024


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with pytest.MonkeyPatch.context() as patch:
        # Credentials moto accepts, and no shared AWS configuration from the machine.
        patch.setenv("AWS_ACCESS_KEY_ID", "modelward-test")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "modelward-test")
        patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        patch.setenv("AWS_CONFIG_FILE", "/nonexistent/modelward-aws-config")
        patch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/modelward-aws-credentials")
        patch.delenv("AWS_PROFILE", raising=False)
        patch.delenv("AWS_ENDPOINT_URL", raising=False)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            host, port = server.get_host_and_port()
            endpoint = f"http://{host}:{port}"
            boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
            yield endpoint
        finally:
            server.stop()


@pytest.fixture
def s3_client(s3_endpoint: str) -> Any:
    return boto3.client("s3", endpoint_url=s3_endpoint)


@pytest.fixture
def s3_store(s3_endpoint: str) -> S3BlobStore:
    # A fresh prefix per test keeps tests independent within the one bucket.
    return S3BlobStore(BUCKET, f"registry-{uuid.uuid4().hex}", endpoint_url=s3_endpoint)


def _open_uploads(client: Any, store: S3BlobStore) -> list[dict[str, Any]]:
    response = client.list_multipart_uploads(Bucket=BUCKET, Prefix=f"{store.prefix}/")
    return list(response.get("Uploads", []))


def _keys(client: Any, store: S3BlobStore) -> list[str]:
    response = client.list_objects_v2(Bucket=BUCKET, Prefix=f"{store.prefix}/")
    return [item["Key"] for item in response.get("Contents", [])]


class TestS3BlobStore(BlobStoreContract):
    @pytest.fixture
    def harness(self, s3_store: S3BlobStore, s3_client: Any) -> StoreHarness:
        def replace_stored_bytes(digest: str, data: bytes) -> None:
            s3_client.put_object(Bucket=BUCKET, Key=s3_store.blob_key(digest), Body=data)

        def leave_incomplete() -> None:
            # A crash between completing a large upload and copying it to its final key leaves
            # a temporary object. (Open multipart uploads: see the test below.)
            key = f"{s3_store.prefix}/tmp/{uuid.uuid4().hex}"
            s3_client.put_object(Bucket=BUCKET, Key=key, Body=b"half")

        return StoreHarness(s3_store, replace_stored_bytes, leave_incomplete)


def test_large_blobs_go_through_a_multipart_upload(s3_endpoint: str, s3_client: Any) -> None:
    store = S3BlobStore(BUCKET, uuid.uuid4().hex, endpoint_url=s3_endpoint, part_size=PART_SIZE)
    data = bytes(range(256)) * (2 * PART_SIZE // 256 + 1000)  # three parts
    info = store.put_stream(_ChunkedReader(data))
    assert info == BlobInfo(sha256_hex(data), len(data))
    assert store.get_bytes(info.digest) == data
    assert _keys(s3_client, store) == [store.blob_key(info.digest)]
    assert _open_uploads(s3_client, store) == []
    # The same bytes again: nothing new is written and the temporary object is removed.
    assert store.put_bytes(data) == info
    assert _keys(s3_client, store) == [store.blob_key(info.digest)]
    assert _open_uploads(s3_client, store) == []


def test_a_large_blob_with_the_wrong_digest_is_aborted(s3_endpoint: str, s3_client: Any) -> None:
    store = S3BlobStore(BUCKET, uuid.uuid4().hex, endpoint_url=s3_endpoint, part_size=PART_SIZE)
    data = b"\x01" * (PART_SIZE + 1)
    with pytest.raises(DigestMismatchError):
        store.put_bytes(data, expected_digest=sha256_hex(b"something else"))
    assert _keys(s3_client, store) == []
    assert _open_uploads(s3_client, store) == []


def test_open_multipart_uploads_are_listed_and_aborted(
    s3_store: S3BlobStore, s3_client: Any
) -> None:
    # A crash mid-upload leaves an open multipart upload under tmp/. (moto reports a fixed
    # initiation time in 2010, so only a zero grace period is meaningful against it.)
    key = f"{s3_store.prefix}/tmp/{uuid.uuid4().hex}"
    upload_id = s3_client.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
    name = f"{key.removeprefix(s3_store.prefix + '/')}?uploadId={upload_id}"
    assert s3_store.list_incomplete(older_than_seconds=0) == [name]
    assert s3_store.remove_incomplete(older_than_seconds=0) == [name]
    assert _open_uploads(s3_client, s3_store) == []
    assert s3_store.list_incomplete(older_than_seconds=0) == []


def test_conditional_put_never_overwrites(
    s3_store: S3BlobStore, s3_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = b"published first"
    digest = sha256_hex(data)
    s3_client.put_object(Bucket=BUCKET, Key=s3_store.blob_key(digest), Body=b"racing writer")
    # Pretend the object appeared between the existence check and the put.
    monkeypatch.setattr(s3_store, "_exists", lambda digest: False)
    assert s3_store.put_bytes(data) == BlobInfo(digest, len(data))
    stored = s3_client.get_object(Bucket=BUCKET, Key=s3_store.blob_key(digest))["Body"].read()
    assert stored == b"racing writer"


def test_object_replaced_behind_the_store_is_refused(
    s3_store: S3BlobStore, s3_client: Any, tmp_path: Path
) -> None:
    info = s3_store.put_bytes(b"reviewed weights")
    s3_client.put_object(Bucket=BUCKET, Key=s3_store.blob_key(info.digest), Body=b"x" * 16)
    with pytest.raises(DigestMismatchError, match=info.digest):
        s3_store.get_bytes(info.digest)
    with pytest.raises(DigestMismatchError):
        s3_store.copy_to(info.digest, tmp_path / "weights.bin")
    assert list(tmp_path.iterdir()) == []


def test_unreachable_endpoint_is_a_storage_error(s3_endpoint: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    store = S3BlobStore(BUCKET, "p", endpoint_url=f"http://127.0.0.1:{closed_port}")
    with pytest.raises(StorageError, match=f"127.0.0.1:{closed_port}"):
        store.exists(sha256_hex(b"x"))
    with pytest.raises(StorageError):
        store.put_bytes(b"x")


def test_open_blob_store_reads_the_endpoint_from_the_environment(
    s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELWARD_S3_ENDPOINT_URL", s3_endpoint)
    store = open_blob_store(f"s3://{BUCKET}/{uuid.uuid4().hex}")
    info = store.put_bytes(b"through the URL")
    assert store.get_bytes(info.digest) == b"through the URL"


class _ChunkedReader:
    """A readable that hands out at most 1 MiB per call, like a socket or pipe."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)

    def read(self, size: int = -1, /) -> bytes:
        size = min(size if size >= 0 else len(self._data), 1024 * 1024)
        chunk, self._data = bytes(self._data[:size]), self._data[size:]
        return chunk
