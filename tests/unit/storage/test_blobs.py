"""Blob stores without a network: the shared contract on the in-memory and filesystem stores,
then what only the filesystem store does (layout, no-overwrite publish, verified-digest cache,
strict mode, full disk), the URL opener and the S3 store's missing-extra hint."""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests/, for the shared contract

from modelward.errors import (
    ChangedDuringReadError,
    DependencyError,
    DigestMismatchError,
    InputError,
    PathError,
    StorageError,
)
from modelward.storage.blobs import (
    BlobInfo,
    FileBlobStore,
    MemoryBlobStore,
    S3BlobStore,
    open_blob_store,
)
from modelward.storage.blobs import base as base_module
from modelward.storage.blobs import fs as fs_module
from storage_contract import (
    BlobStoreContract,
    StoreHarness,
    overwrite_file,
    sha256_hex,
)


class TestMemoryBlobStore(BlobStoreContract):
    @pytest.fixture
    def harness(self) -> StoreHarness:
        store = MemoryBlobStore()

        def leave_incomplete() -> None:
            store._write_temp(iter([b"half of a blob"]))

        return StoreHarness(store, store.replace_bytes_for_testing, leave_incomplete)


def _file_harness(store: FileBlobStore) -> StoreHarness:
    def replace_stored_bytes(digest: str, data: bytes) -> None:
        path = store.blob_path(digest)
        before = path.stat()
        overwrite_file(path, data)
        # A distinct mtime, so the outcome never depends on the clock's granularity.
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))

    def leave_incomplete() -> None:
        store._write_temp(iter([b"half of a blob"]))

    return StoreHarness(store, replace_stored_bytes, leave_incomplete)


class TestFileBlobStore(BlobStoreContract):
    @pytest.fixture
    def harness(self, tmp_path: Path) -> StoreHarness:
        return _file_harness(FileBlobStore(tmp_path / "blobs"))


class TestStrictFileBlobStore(BlobStoreContract):
    @pytest.fixture
    def harness(self, tmp_path: Path) -> StoreHarness:
        return _file_harness(FileBlobStore(tmp_path / "blobs", strict=True))


# ----------------------------------------------------------------------- filesystem only


@pytest.fixture
def fs_store(tmp_path: Path) -> FileBlobStore:
    return FileBlobStore(tmp_path / "blobs")


def test_layout_is_two_levels_of_fan_out_then_the_digest(fs_store: FileBlobStore) -> None:
    info = fs_store.put_bytes(b"layout")
    hex_digest = info.digest
    path = fs_store.root / "sha256" / hex_digest[:2] / hex_digest[2:4] / hex_digest
    assert path.read_bytes() == b"layout"
    assert path.stat().st_mode & 0o222 == 0  # published blobs are read-only
    assert list((fs_store.root / "tmp").iterdir()) == []


def test_publishing_never_replaces_an_existing_file(
    fs_store: FileBlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = b"published first"
    digest = sha256_hex(data)
    path = fs_store.blob_path(digest)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"someone else's bytes")
    inode = path.stat().st_ino
    # Pretend the blob appeared between the existence check and the link (a racing writer).
    monkeypatch.setattr(fs_store, "_exists", lambda digest: False)
    assert fs_store.put_bytes(data) == BlobInfo(digest, len(data))
    assert path.read_bytes() == b"someone else's bytes"
    assert path.stat().st_ino == inode
    assert fs_store.list_incomplete(0) == []


def test_full_disk_is_a_storage_error_and_leaves_no_temp(
    fs_store: FileBlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(fd: int, chunk: bytes) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(fs_module, "_write_chunk", disk_full)
    with pytest.raises(StorageError, match="no space left on device"):
        fs_store.put_bytes(b"too big for the disk")
    assert list((fs_store.root / "tmp").iterdir()) == []
    assert not fs_store.exists(sha256_hex(b"too big for the disk"))


def test_cache_is_invalidated_when_the_file_changes(fs_store: FileBlobStore) -> None:
    info = fs_store.put_bytes(b"good weights")
    assert fs_store.get_bytes(info.digest) == b"good weights"  # verified, now cached
    _file_harness(fs_store).replace_stored_bytes(info.digest, b"evil weights")
    with pytest.raises(DigestMismatchError, match=info.digest):
        fs_store.get_bytes(info.digest)


def test_strict_mode_rehashes_what_the_cache_would_trust(tmp_path: Path) -> None:
    cached = FileBlobStore(tmp_path / "blobs")
    strict = FileBlobStore(tmp_path / "blobs", strict=True)
    info = cached.put_bytes(b"good weights")
    assert cached.get_bytes(info.digest) == b"good weights"
    assert strict.get_bytes(info.digest) == b"good weights"
    path = cached.blob_path(info.digest)
    before = path.stat()
    overwrite_file(path, b"evil weights")  # same size, same inode
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # and the mtime put back
    # The cache's key cannot see this change (the documented limit); strict mode can.
    assert cached.get_bytes(info.digest) == b"evil weights"
    with pytest.raises(DigestMismatchError, match=info.digest):
        strict.get_bytes(info.digest)
    # A store that never verified the file re-hashes it.
    with pytest.raises(DigestMismatchError):
        FileBlobStore(tmp_path / "blobs").get_bytes(info.digest)


def test_a_failed_verification_is_not_cached(fs_store: FileBlobStore) -> None:
    info = fs_store.put_bytes(b"good weights")
    path = fs_store.blob_path(info.digest)
    before = path.stat()
    overwrite_file(path, b"evil weights")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    for _ in range(2):
        with pytest.raises(DigestMismatchError):
            fs_store.get_bytes(info.digest)


def test_listing_skips_files_that_are_not_published_blobs(fs_store: FileBlobStore) -> None:
    info = fs_store.put_bytes(b"real")
    stray = fs_store.root / "sha256" / "00" / "00"
    stray.mkdir(parents=True)
    (stray / ("ff" * 32)).write_bytes(b"in the wrong fan-out directory")
    (stray / "notes.txt").write_bytes(b"not a digest")
    assert list(fs_store.list_digests()) == [info.digest]


def test_an_empty_or_missing_root_lists_nothing(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path / "nowhere")
    assert list(store.list_digests()) == []
    assert store.list_incomplete(0) == []
    assert not (tmp_path / "nowhere").exists()


def test_old_temp_files_are_found_by_mtime(fs_store: FileBlobStore) -> None:
    temp = fs_store._write_temp(iter([b"crashed"]))
    a_day_ago = temp.path.stat().st_mtime - 86_400
    os.utime(temp.path, (a_day_ago, a_day_ago))
    assert fs_store.list_incomplete(older_than_seconds=3600) == [f"tmp/{temp.path.name}"]
    assert fs_store.remove_incomplete(older_than_seconds=3600) == [f"tmp/{temp.path.name}"]
    assert not temp.path.exists()


# ---------------------------------------------------------------------- memory and base


def test_memory_store_dates_temporaries_with_its_clock() -> None:
    now = [1_000_000.0]
    store = MemoryBlobStore(clock=lambda: now[0])
    store._write_temp(iter([b"crashed"]))
    assert store.list_incomplete(older_than_seconds=60) == []
    now[0] += 120
    store._write_temp(iter([b"crashed just now"]))
    assert len(store.list_incomplete(older_than_seconds=60)) == 1
    assert len(store.remove_incomplete(older_than_seconds=0)) == 2


@pytest.mark.parametrize("chunk_size", [0, 1024, 9 * 1024 * 1024])
def test_chunk_size_must_be_between_1_and_8_mib(chunk_size: int, tmp_path: Path) -> None:
    with pytest.raises(InputError):
        MemoryBlobStore(chunk_size=chunk_size)
    with pytest.raises(InputError):
        FileBlobStore(tmp_path, chunk_size=chunk_size)


def test_blob_info_round_trips_and_validates() -> None:
    info = BlobInfo(sha256_hex(b"x"), 1)
    assert BlobInfo.from_dict(info.to_dict()) == info
    with pytest.raises(InputError):
        BlobInfo.from_dict({"digest": "../x", "size": 1})
    with pytest.raises(InputError):
        BlobInfo.from_dict({"digest": info.digest, "size": -1})


def test_put_bytes_refuses_text() -> None:
    with pytest.raises(InputError):
        MemoryBlobStore().put_bytes("not bytes")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- opening


def test_open_blob_store_from_paths_and_urls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from_path = open_blob_store(str(tmp_path / "a"))
    assert isinstance(from_path, FileBlobStore) and from_path.root == tmp_path / "a"
    from_pathlike = open_blob_store(tmp_path / "b", strict=True)
    assert isinstance(from_pathlike, FileBlobStore) and from_pathlike.strict
    from_url = open_blob_store(f"file://{tmp_path}/c%20d")
    assert isinstance(from_url, FileBlobStore) and from_url.root == tmp_path / "c d"
    assert isinstance(open_blob_store("memory://"), MemoryBlobStore)

    monkeypatch.delenv("MODELWARD_S3_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    s3 = open_blob_store("s3://models/registry/blobs/")
    assert isinstance(s3, S3BlobStore)
    assert (s3.bucket, s3.prefix, s3.endpoint_url) == (
        "models",
        "registry/blobs",
        "http://127.0.0.1:9",
    )
    monkeypatch.setenv("MODELWARD_S3_ENDPOINT_URL", "http://127.0.0.1:10")
    s3 = open_blob_store("s3://models")
    assert isinstance(s3, S3BlobStore)
    assert (s3.prefix, s3.endpoint_url) == ("", "http://127.0.0.1:10")
    assert s3.blob_key("ab" * 32) == f"sha256/ab/ab/{'ab' * 32}"


@pytest.mark.parametrize(
    "url", ["", "s3://", "s3:///prefix", "s3://b/p?x=1", "gs://bucket/p", "file://host/path"]
)
def test_open_blob_store_refuses_malformed_urls(url: str) -> None:
    with pytest.raises(InputError):
        open_blob_store(url)


def test_s3_store_without_boto3_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)
    store = S3BlobStore("models", "blobs", endpoint_url="http://127.0.0.1:9")
    with pytest.raises(DependencyError, match=r"pip install 'modelward\[s3\]'"):
        store.exists(sha256_hex(b"x"))


def test_reading_partially_does_not_break_the_store(fs_store: FileBlobStore) -> None:
    info = fs_store.put_bytes(b"x" * (3 * 1024 * 1024))
    chunks: Iterator[bytes] = fs_store.read_chunks(info.digest)
    next(chunks)
    chunks.close()  # type: ignore[attr-defined]
    assert fs_store.get_bytes(info.digest) == b"x" * (3 * 1024 * 1024)


def test_copy_to_a_full_disk_leaves_the_destination_alone(
    fs_store: FileBlobStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = fs_store.put_bytes(b"release weights")
    out = tmp_path / "out"
    out.mkdir()
    dest = out / "weights.bin"
    dest.write_bytes(b"current weights")

    def disk_full(fd: int, data: bytes) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(base_module, "write_all", disk_full)
    with pytest.raises(StorageError, match="no space left on device"):
        fs_store.copy_to(info.digest, dest)
    assert [p.name for p in out.iterdir()] == ["weights.bin"]
    assert dest.read_bytes() == b"current weights"


def test_a_file_removed_while_stored_is_a_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = MemoryBlobStore()
    source = tmp_path / "weights.bin"
    source.write_bytes(b"weights")
    write_temp = store._write_temp

    def write_then_remove_source(chunks: Iterator[bytes]) -> Any:
        temp = write_temp(chunks)
        source.unlink()
        return temp

    monkeypatch.setattr(store, "_write_temp", write_then_remove_source)
    with pytest.raises(ChangedDuringReadError, match="disappeared"):
        store.put_file(source)
    assert list(store.list_digests()) == []
    assert store.list_incomplete(0) == []


def test_put_file_refuses_a_fifo_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(PathError, match="not a regular file"):
        MemoryBlobStore().put_file(fifo)
