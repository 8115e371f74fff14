"""The S3 blob store (`s3://bucket/prefix`), for registries shared by several servers.

Keys under the prefix:

    sha256/ab/cd/abcd…  a blob, named by its full hex digest under two 2-character fan-out levels
    tmp/<uuid>          a large write in progress: an open multipart upload, or (briefly) the
                        completed temporary object being copied to its final key

A blob smaller than one part is buffered in memory and written with a single conditional
`PutObject` (`If-None-Match: *`, with its SHA-256 checksum so S3 checks the bytes it received)
only after its digest checks. A larger one is streamed as a multipart upload to `tmp/<uuid>`,
completed after the digest checks, copied to its final key if that key does not exist yet
(head-then-copy: racing writers copy identical bytes), and the temporary object deleted.
A crash leaves only `tmp/` objects or open uploads, which `list_incomplete`/`remove_incomplete`
find by age; configure a bucket lifecycle rule that aborts incomplete multipart uploads as well.

boto3 is an extra (`pip install 'modelward[s3]'`), imported when the first request is made.
Every request uses a bounded retry budget and short connect timeouts; an unreachable endpoint or
any other S3 failure becomes a StorageError. This module does not create buckets.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modelward.errors import DependencyError, InputError, StorageError
from modelward.storage.blobs.base import (
    DEFAULT_CHUNK_SIZE,
    BlobStore,
    IncompleteUpload,
    RawBlob,
    not_found,
    record_not_found,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MIN_PART_SIZE = 5 * 1024 * 1024
DEFAULT_PART_SIZE = 8 * 1024 * 1024
_MAX_SINGLE_COPY = 5 * 1024**3
_UPLOAD_MARKER = "?uploadId="
_NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
_ALREADY_EXISTS_CODES = frozenset({"412", "PreconditionFailed"})
_CONFLICT_CODES = frozenset({"409", "ConditionalRequestConflict"})
_INSTALL_HINT = "the S3 blob store needs boto3: pip install 'modelward[s3]'"


@dataclass
class _BufferedTemp:
    data: bytes


@dataclass
class _MultipartTemp:
    key: str
    upload_id: str
    parts: list[dict[str, Any]] = field(default_factory=list)
    completed: bool = False
    size: int = 0


def _error_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    error = response.get("Error", {})
    code = error.get("Code") if isinstance(error, dict) else None
    return str(code) if code is not None else None


def _is_boto_error(exc: BaseException) -> bool:
    module = type(exc).__module__
    return module.startswith(("botocore", "boto3", "s3transfer", "urllib3"))


class S3BlobStore(BlobStore):
    """Blobs as objects under `s3://bucket/prefix`; see the module docstring."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        client: Any = None,
        max_attempts: int = 3,
        connect_timeout: float = 2.0,
        read_timeout: float = 30.0,
        part_size: int = DEFAULT_PART_SIZE,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        super().__init__(chunk_size=chunk_size)
        if not bucket or "/" in bucket:
            raise InputError(f"not an S3 bucket name: {bucket!r}")
        if part_size < MIN_PART_SIZE:
            raise InputError(f"S3 part size must be at least {MIN_PART_SIZE} bytes")
        if max_attempts < 1:
            raise InputError("S3 max_attempts must be at least 1")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url
        self.part_size = part_size
        self._region_name = region_name
        self._max_attempts = max_attempts
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._client_instance: S3Client | None = client

    def __repr__(self) -> str:
        return (
            f"S3BlobStore('s3://{self.bucket}/{self.prefix}', endpoint_url={self.endpoint_url!r})"
        )

    @property
    def _client(self) -> S3Client:
        if self._client_instance is None:
            try:
                import boto3
                from botocore.config import Config
            except ImportError as exc:
                raise DependencyError(_INSTALL_HINT) from exc
            config = Config(
                connect_timeout=self._connect_timeout,
                read_timeout=self._read_timeout,
                retries={"max_attempts": self._max_attempts, "mode": "standard"},
            )
            try:
                self._client_instance = boto3.client(
                    "s3",
                    endpoint_url=self.endpoint_url,
                    region_name=self._region_name,
                    config=config,
                )
            except Exception as exc:
                raise StorageError(f"cannot set up the S3 client: {exc}") from exc
        return self._client_instance

    def _key(self, relative: str) -> str:
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def _relative(self, key: str) -> str:
        return key[len(self.prefix) + 1 :] if self.prefix else key

    def blob_key(self, digest: str) -> str:
        """The object key of the blob named `digest` (whether or not it exists)."""
        return self._key(f"sha256/{digest[0:2]}/{digest[2:4]}/{digest}")

    def _failure(self, exc: BaseException, action: str) -> StorageError:
        where = f"s3://{self.bucket}/{self.prefix}"
        if self.endpoint_url:
            where += f" at {self.endpoint_url}"
        return StorageError(f"S3 failed while {action} ({where}): {exc}")

    # ------------------------------------------------------------------------------ writes

    def _write_temp(self, chunks: Iterator[bytes]) -> _BufferedTemp | _MultipartTemp:
        buffer = bytearray()
        upload: _MultipartTemp | None = None
        try:
            for chunk in chunks:
                buffer += chunk
                if len(buffer) >= self._next_part_size(upload):
                    if upload is None:
                        upload = self._start_upload()
                    self._upload_part(upload, bytes(buffer))
                    buffer.clear()
            if upload is None:
                return _BufferedTemp(bytes(buffer))
            if buffer:
                self._upload_part(upload, bytes(buffer))
            return upload
        except BaseException:
            if upload is not None:
                self._discard_temp(upload)
            raise

    def _next_part_size(self, upload: _MultipartTemp | None) -> int:
        # S3 allows 10,000 parts. Growing the part size by `part_size` every 1,000 parts lifts
        # the largest blob from 10,000 × part_size (78 GiB at 8 MiB) to 55,000 × (430 GiB).
        parts_done = 0 if upload is None else len(upload.parts)
        return self.part_size * (1 + parts_done // 1000)

    def _start_upload(self) -> _MultipartTemp:
        key = self._key(f"tmp/{uuid.uuid4().hex}")
        try:
            response = self._client.create_multipart_upload(Bucket=self.bucket, Key=key)
        except Exception as exc:
            if _is_boto_error(exc):
                raise self._failure(exc, "starting a multipart upload") from exc
            raise
        return _MultipartTemp(key=key, upload_id=response["UploadId"])

    def _upload_part(self, upload: _MultipartTemp, data: bytes) -> None:
        number = len(upload.parts) + 1
        try:
            response = self._client.upload_part(
                Bucket=self.bucket,
                Key=upload.key,
                UploadId=upload.upload_id,
                PartNumber=number,
                Body=data,
            )
        except Exception as exc:
            if _is_boto_error(exc):
                raise self._failure(exc, f"uploading part {number}") from exc
            raise
        upload.parts.append({"PartNumber": number, "ETag": response["ETag"]})
        upload.size += len(data)

    def _publish(self, temp: _BufferedTemp | _MultipartTemp, digest: str) -> None:
        final = self.blob_key(digest)
        try:
            if isinstance(temp, _BufferedTemp):
                self._put_if_absent(final, temp.data, digest)
                return
            self._client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=temp.key,
                UploadId=temp.upload_id,
                MultipartUpload={"Parts": temp.parts},  # type: ignore[typeddict-item]
            )
            temp.completed = True
            if not self._exists(digest):
                source = {"Bucket": self.bucket, "Key": temp.key}
                if temp.size <= _MAX_SINGLE_COPY:
                    self._client.copy_object(Bucket=self.bucket, Key=final, CopySource=source)  # type: ignore[arg-type]
                else:
                    self._client.copy(source, self.bucket, final)  # type: ignore[arg-type]
        except StorageError:
            raise
        except Exception as exc:
            if _is_boto_error(exc):
                raise self._failure(exc, f"publishing blob sha256:{digest}") from exc
            raise

    def _put_if_absent(self, key: str, data: bytes, digest: str) -> None:
        checksum = base64.b64encode(bytes.fromhex(digest)).decode("ascii")
        try:
            self._client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=data,
                IfNoneMatch="*",
                ChecksumSHA256=checksum,
            )
        except Exception as exc:
            code = _error_code(exc)
            if code in _ALREADY_EXISTS_CODES:
                return  # a concurrent writer published the same digest first
            if code in _CONFLICT_CODES and self._exists(digest):
                return
            if _is_boto_error(exc):
                raise self._failure(exc, f"publishing blob sha256:{digest}") from exc
            raise

    def _discard_temp(self, temp: _BufferedTemp | _MultipartTemp) -> None:
        if isinstance(temp, _BufferedTemp):
            temp.data = b""
            return
        try:
            if temp.completed:
                self._client.delete_object(Bucket=self.bucket, Key=temp.key)
            else:
                self._client.abort_multipart_upload(
                    Bucket=self.bucket, Key=temp.key, UploadId=temp.upload_id
                )
        except Exception as exc:
            if not _is_boto_error(exc):
                raise
            # Best effort: the caller is finishing or failing already; fsck removes what is left.
        temp.completed = False
        temp.upload_id = ""

    # ------------------------------------------------------------------------------- reads

    def _head(self, digest: str) -> dict[str, Any] | None:
        try:
            response = self._client.head_object(Bucket=self.bucket, Key=self.blob_key(digest))
        except Exception as exc:
            if _error_code(exc) in _NOT_FOUND_CODES:
                return None
            if _is_boto_error(exc):
                raise self._failure(exc, f"looking up blob sha256:{digest}") from exc
            raise
        return dict(response)

    def _exists(self, digest: str) -> bool:
        return self._head(digest) is not None

    def _size(self, digest: str) -> int:
        head = self._head(digest)
        if head is None:
            raise not_found(digest)
        return int(head["ContentLength"])

    def _modified_at(self, digest: str) -> float | None:
        head = self._head(digest)
        if head is None or "LastModified" not in head:
            return None
        return float(head["LastModified"].timestamp())

    def _read_stream(self, digest: str) -> RawBlob:
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=self.blob_key(digest))
        except Exception as exc:
            if _error_code(exc) in _NOT_FOUND_CODES:
                raise not_found(digest) from exc
            if _is_boto_error(exc):
                raise self._failure(exc, f"reading blob sha256:{digest}") from exc
            raise
        body = response["Body"]

        def chunks() -> Iterator[bytes]:
            try:
                yield from body.iter_chunks(self.chunk_size)
            except Exception as exc:
                if _is_boto_error(exc):
                    raise self._failure(exc, f"reading blob sha256:{digest}") from exc
                raise

        return RawBlob(chunks=chunks(), close=body.close)

    # --------------------------------------------------------------------- listing and fsck

    def _list_keys(self, relative_prefix: str) -> Iterator[dict[str, Any]]:
        paginator = self._client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(relative_prefix)):
                yield from (dict(item) for item in page.get("Contents", []))
        except Exception as exc:
            if _is_boto_error(exc):
                raise self._failure(exc, f"listing {relative_prefix}") from exc
            raise

    def _list(self) -> Iterable[str]:
        for item in self._list_keys("sha256/"):
            parts = self._relative(item["Key"]).split("/")
            if len(parts) != 4:
                continue
            _, first, second, name = parts
            if name[0:2] == first and name[2:4] == second:
                yield name

    def _list_incomplete(self) -> list[IncompleteUpload]:
        found = [
            IncompleteUpload(self._relative(item["Key"]), item["LastModified"].timestamp())
            for item in self._list_keys("tmp/")
        ]
        paginator = self._client.get_paginator("list_multipart_uploads")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key("tmp/")):
                for upload in page.get("Uploads", []):
                    name = f"{self._relative(upload['Key'])}{_UPLOAD_MARKER}{upload['UploadId']}"
                    found.append(IncompleteUpload(name, upload["Initiated"].timestamp()))
        except Exception as exc:
            if _is_boto_error(exc):
                raise self._failure(exc, "listing multipart uploads") from exc
            raise
        return found

    def _remove_incomplete(self, upload: IncompleteUpload) -> None:
        relative, marker, upload_id = upload.name.partition(_UPLOAD_MARKER)
        try:
            if marker:
                self._client.abort_multipart_upload(
                    Bucket=self.bucket, Key=self._key(relative), UploadId=upload_id
                )
            else:
                self._client.delete_object(Bucket=self.bucket, Key=self._key(relative))
        except Exception as exc:
            if _error_code(exc) in {*_NOT_FOUND_CODES, "NoSuchUpload"}:
                return
            if _is_boto_error(exc):
                raise self._failure(exc, f"removing {upload.name}") from exc
            raise

    def _put_pending(self, token: str, record: bytes) -> None:
        try:
            self._client.put_object(
                Bucket=self.bucket, Key=self._key(f"pending/{token}"), Body=record
            )
        except Exception as exc:
            if _is_boto_error(exc):
                raise self._failure(exc, "registering a pending push") from exc
            raise

    def _list_pending(self) -> list[tuple[str, bytes]]:
        found = []
        for item in self._list_keys("pending/"):
            name = self._relative(item["Key"]).split("/", 1)[-1]
            try:
                response = self._client.get_object(Bucket=self.bucket, Key=item["Key"])
                found.append((name, response["Body"].read()))
            except Exception as exc:
                if _error_code(exc) in _NOT_FOUND_CODES:
                    continue  # it finished while we looked
                if _is_boto_error(exc):
                    raise self._failure(exc, "reading a pending push") from exc
                raise
        return found

    def _remove_pending(self, token: str) -> None:
        try:
            self._client.delete_object(Bucket=self.bucket, Key=self._key(f"pending/{token}"))
        except Exception as exc:
            if _error_code(exc) in _NOT_FOUND_CODES:
                return
            if _is_boto_error(exc):
                raise self._failure(exc, "removing a pending push") from exc
            raise

    def _remove(self, digest: str) -> bool:
        if not self._exists(digest):
            return False
        try:
            self._client.delete_object(Bucket=self.bucket, Key=self.blob_key(digest))
        except Exception as exc:
            if _is_boto_error(exc):
                raise self._failure(exc, f"removing blob sha256:{digest}") from exc
            raise
        return True

    # ------------------------------------------------------------------------ named records

    def _put_named_if_absent(self, area: str, name: str, data: bytes) -> bool:
        try:
            self._client.put_object(
                Bucket=self.bucket, Key=self._key(f"{area}/{name}"), Body=data, IfNoneMatch="*"
            )
        except Exception as exc:
            if _error_code(exc) in _ALREADY_EXISTS_CODES | _CONFLICT_CODES:
                return False
            if _is_boto_error(exc):
                raise self._failure(exc, f"writing record {area}/{name}") from exc
            raise
        return True

    def _list_named(self, area: str) -> Iterable[str]:
        for item in self._list_keys(f"{area}/"):
            parts = self._relative(item["Key"]).split("/")
            if len(parts) == 2:
                yield parts[1]

    def _get_named(self, area: str, name: str) -> bytes:
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=self._key(f"{area}/{name}"))
            data: bytes = response["Body"].read()
        except Exception as exc:
            if _error_code(exc) in _NOT_FOUND_CODES:
                raise record_not_found(area, name) from exc
            if _is_boto_error(exc):
                raise self._failure(exc, f"reading record {area}/{name}") from exc
            raise
        return data
