"""Open a blob store from a URL or a local path (`MODELWARD_BLOB_URL`, `--blob-url`).

    /some/dir, relative/dir, file:///some/dir   → FileBlobStore rooted there
    s3://bucket/prefix                          → S3BlobStore; the endpoint comes from
                                                  MODELWARD_S3_ENDPOINT_URL, else AWS_ENDPOINT_URL,
                                                  else boto3's default (AWS)
    memory://                                   → a new, empty MemoryBlobStore (tests, demos)

This module only parses and constructs; it does not create buckets or check that a store is
reachable. The default location (`$MODELWARD_HOME/blobs`) is the caller's to compute.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

from modelward.errors import InputError
from modelward.storage.blobs.base import BlobStore
from modelward.storage.blobs.fs import FileBlobStore
from modelward.storage.blobs.memory import MemoryBlobStore

S3_ENDPOINT_VARIABLES = ("MODELWARD_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL")


def open_blob_store(url_or_path: str | os.PathLike[str], *, strict: bool = False) -> BlobStore:
    """The blob store `url_or_path` names; InputError for an unknown scheme or a malformed URL.

    `strict` makes a filesystem store re-hash every read, bypassing its verified-digest cache
    (the other stores always re-hash).
    """
    if isinstance(url_or_path, os.PathLike):
        return FileBlobStore(Path(url_or_path), strict=strict)
    if not isinstance(url_or_path, str) or not url_or_path:
        raise InputError(f"not a blob store URL or path: {url_or_path!r}")
    text = url_or_path
    if "://" not in text:
        return FileBlobStore(Path(text), strict=strict)
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise InputError(f"file URLs must name a local path, not host {parts.netloc!r}")
        if not parts.path:
            raise InputError(f"file URL names no directory: {text!r}")
        return FileBlobStore(Path(unquote(parts.path)), strict=strict)
    if scheme == "s3":
        from modelward.storage.blobs.s3 import S3BlobStore

        if not parts.netloc:
            raise InputError(f"S3 URL names no bucket: {text!r} (expected s3://bucket/prefix)")
        if parts.query or parts.fragment:
            raise InputError(f"S3 URL must not have a query or fragment: {text!r}")
        endpoint = next((os.environ[v] for v in S3_ENDPOINT_VARIABLES if os.environ.get(v)), None)
        return S3BlobStore(parts.netloc, unquote(parts.path), endpoint_url=endpoint)
    if scheme == "memory":
        return MemoryBlobStore()
    raise InputError(
        f"unknown blob store scheme {parts.scheme!r} in {text!r} "
        "(expected a path, file://, s3:// or memory://)"
    )
