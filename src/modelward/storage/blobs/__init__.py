"""Content-addressed blob stores (filesystem, in-memory, S3) that verify on read.

`BlobStore` (in `base`) holds the contract; `FileBlobStore`, `MemoryBlobStore` and `S3BlobStore`
implement its private hooks; `open_blob_store` picks one from a URL or path. boto3 stays an
optional extra: `S3BlobStore` imports it only when it makes its first request. Nothing here knows
about versions, manifests or which blobs are referenced.
"""

from __future__ import annotations

from modelward.storage.blobs.base import BlobInfo, BlobReader, BlobStore, validate_digest
from modelward.storage.blobs.fs import FileBlobStore
from modelward.storage.blobs.memory import MemoryBlobStore
from modelward.storage.blobs.s3 import S3BlobStore
from modelward.storage.blobs.url import open_blob_store

__all__ = [
    "BlobInfo",
    "BlobReader",
    "BlobStore",
    "FileBlobStore",
    "MemoryBlobStore",
    "S3BlobStore",
    "open_blob_store",
    "validate_digest",
]
