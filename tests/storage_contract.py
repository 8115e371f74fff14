"""The blob store contract, written once and run against every backend.

A test module subclasses `BlobStoreContract` (a class whose name pytest does not collect on its
own) and provides a `harness` fixture returning a `StoreHarness` around a fresh, empty store.
The filesystem and in-memory stores run it in tests/unit, the S3 store against a moto server in
tests/integration.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from modelward.errors import (
    ChangedDuringReadError,
    DigestMismatchError,
    InputError,
    NotFoundError,
    PathError,
)
from modelward.storage.blobs import BlobInfo, BlobStore


@dataclass
class StoreHarness:
    store: BlobStore
    replace_stored_bytes: Callable[[str, bytes], None]
    """Put other bytes under a digest behind the store's back (a corrupt or tampered backend)."""
    leave_incomplete: Callable[[], None]
    """Leave temporary objects as a write that crashed before publishing would."""


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


MULTI_CHUNK = bytes(range(256)) * (10 * 1024 + 7)  # about 2.5 MiB: several 1 MiB chunks
INVALID_DIGESTS: list[Any] = [
    "../x",
    "",
    "A" * 64,
    "a" * 63,
    "a" * 65,
    "g" * 64,
    "sha256:" + "a" * 64,
    "../" + "a" * 61,
    "a" * 64 + "\n",
    None,
    b"a" * 64,
]


class _FailingReader:
    def __init__(self) -> None:
        self.calls = 0

    def read(self, size: int = -1, /) -> bytes:
        self.calls += 1
        if self.calls > 1:
            raise OSError("the source disappeared")
        return b"first chunk"


class BlobStoreContract:
    """Behaviour every BlobStore must show; see the module docstring."""

    # ------------------------------------------------------------------------ put and read

    def test_put_bytes_then_read_back_every_way(
        self, harness: StoreHarness, tmp_path: Path
    ) -> None:
        store = harness.store
        data = b"weights and biases"
        info = store.put_bytes(data)
        assert info == BlobInfo(sha256_hex(data), len(data))
        assert store.exists(info.digest)
        assert store.size(info.digest) == len(data)
        assert store.get_bytes(info.digest) == data
        assert b"".join(store.read_chunks(info.digest)) == data
        with store.open(info.digest) as reader:
            assert reader.read() == data
        dest = tmp_path / "copy.bin"
        assert store.copy_to(info.digest, dest) == info
        assert dest.read_bytes() == data
        assert list(store.list_digests()) == [info.digest]

    def test_multi_chunk_blob_from_stream_and_file(
        self, harness: StoreHarness, tmp_path: Path
    ) -> None:
        store = harness.store
        source = tmp_path / "model.safetensors"
        source.write_bytes(MULTI_CHUNK)
        from_file = store.put_file(source, expected_digest=sha256_hex(MULTI_CHUNK))
        from_stream = store.put_stream(io.BytesIO(MULTI_CHUNK))
        assert from_file == from_stream == BlobInfo(sha256_hex(MULTI_CHUNK), len(MULTI_CHUNK))
        chunks = list(store.read_chunks(from_file.digest))
        assert len(chunks) > 1
        assert b"".join(chunks) == MULTI_CHUNK
        with store.open(from_file.digest) as reader:
            first = reader.read(1000)
            rest = reader.read()
        assert first + rest == MULTI_CHUNK

    def test_empty_blob(self, harness: StoreHarness) -> None:
        info = harness.store.put_bytes(b"")
        assert info == BlobInfo(sha256_hex(b""), 0)
        assert harness.store.get_bytes(info.digest) == b""
        assert harness.store.size(info.digest) == 0

    def test_same_bytes_are_stored_once(self, harness: StoreHarness) -> None:
        store = harness.store
        first = store.put_bytes(b"tokenizer")
        second = store.put_stream(io.BytesIO(b"tokenizer"))
        assert first == second
        assert list(store.list_digests()) == [first.digest]
        assert store.list_incomplete(0) == []

    def test_list_digests_lists_every_blob(self, harness: StoreHarness) -> None:
        digests = {harness.store.put_bytes(f"file {i}".encode()).digest for i in range(5)}
        assert set(harness.store.list_digests()) == digests

    # -------------------------------------------------------------------- refused writes

    def test_expected_digest_mismatch_stores_nothing(self, harness: StoreHarness) -> None:
        store = harness.store
        wrong = sha256_hex(b"something else")
        with pytest.raises(DigestMismatchError, match=wrong):
            store.put_bytes(b"config.json", expected_digest=wrong)
        assert not store.exists(sha256_hex(b"config.json"))
        assert list(store.list_digests()) == []
        assert store.list_incomplete(0) == []

    def test_expected_digest_match_is_accepted(self, harness: StoreHarness) -> None:
        data = b"adapter"
        assert harness.store.put_bytes(data, expected_digest=sha256_hex(data)).size == len(data)

    def test_file_changed_while_read_stores_nothing(
        self, harness: StoreHarness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        store = harness.store
        source = tmp_path / "weights.bin"
        source.write_bytes(b"original weights")
        write_temp = store._write_temp

        def write_temp_while_file_grows(chunks: Iterator[bytes]) -> Any:
            def growing() -> Iterator[bytes]:
                for index, chunk in enumerate(chunks):
                    if index == 0:
                        with open(source, "ab") as appender:
                            appender.write(b" and an appended tail")
                    yield chunk

            return write_temp(growing())

        monkeypatch.setattr(store, "_write_temp", write_temp_while_file_grows)
        with pytest.raises(ChangedDuringReadError, match=r"weights\.bin"):
            store.put_file(source)
        assert list(store.list_digests()) == []
        assert store.list_incomplete(0) == []

    def test_failing_source_stores_nothing(self, harness: StoreHarness) -> None:
        with pytest.raises(PathError, match="the source disappeared"):
            harness.store.put_stream(_FailingReader())
        assert list(harness.store.list_digests()) == []
        assert harness.store.list_incomplete(0) == []

    def test_put_file_refuses_missing_paths_and_directories(
        self, harness: StoreHarness, tmp_path: Path
    ) -> None:
        with pytest.raises(PathError):
            harness.store.put_file(tmp_path / "missing")
        with pytest.raises(PathError):
            harness.store.put_file(tmp_path)

    @pytest.mark.parametrize("digest", INVALID_DIGESTS)
    def test_invalid_digests_are_refused(self, harness: StoreHarness, digest: Any) -> None:
        store = harness.store
        with pytest.raises(InputError):
            store.exists(digest)
        with pytest.raises(InputError):
            store.get_bytes(digest)
        with pytest.raises(InputError):
            store.remove_blob(digest)
        if digest is not None:  # None means "no expectation" when putting
            with pytest.raises(InputError):
                store.put_bytes(b"data", expected_digest=digest)
        assert list(store.list_digests()) == []

    # ----------------------------------------------------------------- missing and corrupt

    def test_missing_blob_is_not_found(self, harness: StoreHarness, tmp_path: Path) -> None:
        store = harness.store
        digest = sha256_hex(b"never stored")
        assert not store.exists(digest)
        for read in (store.get_bytes, store.size, store.read_chunks, store.open):
            with pytest.raises(NotFoundError, match=digest):
                read(digest)
        with pytest.raises(NotFoundError):
            store.copy_to(digest, tmp_path / "out")
        assert not (tmp_path / "out").exists()

    def test_wrong_stored_bytes_are_detected_on_every_read(
        self, harness: StoreHarness, tmp_path: Path
    ) -> None:
        store = harness.store
        info = store.put_bytes(b"the real weights")
        harness.replace_stored_bytes(info.digest, b"poisoned weights")
        with pytest.raises(DigestMismatchError, match=info.digest):
            store.get_bytes(info.digest)
        received = []
        with pytest.raises(DigestMismatchError, match=info.digest):
            for chunk in store.read_chunks(info.digest):
                received.append(chunk)
        assert b"".join(received) == b"poisoned weights"  # delivered, then refused at the end
        with pytest.raises(DigestMismatchError), store.open(info.digest) as reader:
            reader.read()
        out = tmp_path / "out"
        out.mkdir()
        dest = out / "weights.bin"
        dest.write_bytes(b"previous good file")
        with pytest.raises(DigestMismatchError):
            store.copy_to(info.digest, dest)
        assert dest.read_bytes() == b"previous good file"
        assert [p.name for p in out.iterdir()] == ["weights.bin"]

    def test_copy_to_replaces_the_destination(self, harness: StoreHarness, tmp_path: Path) -> None:
        info = harness.store.put_bytes(b"new release")
        out = tmp_path / "out"
        out.mkdir()
        dest = out / "model.bin"
        dest.write_bytes(b"old release")
        harness.store.copy_to(info.digest, dest)
        assert dest.read_bytes() == b"new release"
        assert [p.name for p in out.iterdir()] == ["model.bin"]

    # --------------------------------------------------------------------------- fsck

    def test_incomplete_writes_are_listed_by_age_and_removed(self, harness: StoreHarness) -> None:
        store = harness.store
        kept = store.put_bytes(b"published blob")
        harness.leave_incomplete()
        assert store.list_incomplete(older_than_seconds=3600) == []
        leftovers = store.list_incomplete(older_than_seconds=0)
        assert leftovers
        assert store.remove_incomplete(older_than_seconds=3600) == []
        assert sorted(store.remove_incomplete(older_than_seconds=0)) == sorted(leftovers)
        assert store.list_incomplete(older_than_seconds=0) == []
        assert store.get_bytes(kept.digest) == b"published blob"
        with pytest.raises(InputError):
            store.list_incomplete(older_than_seconds=-1)

    def test_remove_blob(self, harness: StoreHarness) -> None:
        store = harness.store
        orphan = store.put_bytes(b"orphan")
        referenced = store.put_bytes(b"referenced")
        assert store.remove_blob(orphan.digest) is True
        assert store.remove_blob(orphan.digest) is False
        assert not store.exists(orphan.digest)
        assert list(store.list_digests()) == [referenced.digest]
        # Once removed, the same bytes can be stored again.
        assert store.put_bytes(b"orphan") == orphan
        assert store.get_bytes(orphan.digest) == b"orphan"

    def test_named_records_are_append_only(self, harness: StoreHarness) -> None:
        store = harness.store
        assert store.list_named("checkpoints") == []
        assert store.put_named("checkpoints", "0000000000000002-ab.note", b"second") is True
        assert store.put_named("checkpoints", "0000000000000001-cd.note", b"first") is True
        # never overwritten: the first write wins and the call says it wrote nothing
        assert store.put_named("checkpoints", "0000000000000001-cd.note", b"forged") is False
        assert store.get_named("checkpoints", "0000000000000001-cd.note") == b"first"
        assert store.list_named("checkpoints") == [
            "0000000000000001-cd.note",
            "0000000000000002-ab.note",
        ]
        # records are not blobs, and blobs are not records
        blob = store.put_bytes(b"a blob")
        assert list(store.list_digests()) == [blob.digest]
        assert store.list_incomplete(older_than_seconds=0) == []
        with pytest.raises(NotFoundError):
            store.get_named("checkpoints", "missing.note")
        for area, name in (("keys", "x"), ("checkpoints", "../escape"), ("checkpoints", "")):
            with pytest.raises(InputError):
                store.put_named(area, name, b"x")

    # --------------------------------------------------------------------- pending writers

    def test_pending_writers_are_registered_listed_replaced_and_cleared(
        self, harness: StoreHarness
    ) -> None:
        store = harness.store
        first, second = "0" * 32, "f" * 32
        assert store.pending() == []
        store.register_pending(first, b'{"started_at": 1}')
        store.register_pending(second, b'{"started_at": 2}')
        store.register_pending(first, b'{"started_at": 3}')  # replaces
        assert sorted(store.pending()) == [
            (first, b'{"started_at": 3}'),
            (second, b'{"started_at": 2}'),
        ]
        assert list(store.list_digests()) == []  # a registration is not a blob
        store.clear_pending(first)
        store.clear_pending(first)  # already gone: no error
        assert store.pending() == [(second, b'{"started_at": 2}')]
        for bad in ("../x", "A" * 32, "a" * 31, ""):
            with pytest.raises(InputError):
                store.register_pending(bad, b"{}")


def overwrite_file(path: Path, data: bytes) -> None:
    """Replace a read-only blob file's bytes in place (same inode), as tampering would."""
    os.chmod(path, 0o644)
    with open(path, "r+b") as handle:
        handle.truncate(0)
        handle.write(data)
