"""The in-memory blob store: the twin of the filesystem and S3 stores for unit tests.

It keeps the same contract (temporary objects, publish-after-verify, no overwrite, re-hash on
every read) with dictionaries behind a lock. It is not persistent and not shared between
instances. `replace_bytes_for_testing` lets a test play a store that returns wrong bytes.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from modelward.storage.blobs.base import (
    DEFAULT_CHUNK_SIZE,
    BlobStore,
    IncompleteUpload,
    RawBlob,
    not_found,
    record_not_found,
    validate_digest,
)


@dataclass(frozen=True)
class _TempName:
    name: str


class MemoryBlobStore(BlobStore):
    """Blobs in a dictionary; `clock` (seconds since the epoch) dates temporary objects."""

    def __init__(
        self,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(chunk_size=chunk_size)
        self._clock = clock
        self._blobs: dict[str, bytes] = {}
        self._stored_at: dict[str, float] = {}
        self._temps: dict[str, tuple[bytes, float]] = {}
        self._records: dict[tuple[str, str], bytes] = {}
        self._pending: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MemoryBlobStore(<{len(self._blobs)} blobs>)"

    def replace_bytes_for_testing(self, digest: str, data: bytes) -> None:
        """Store `data` under `digest` without any check, as a corrupt backend would."""
        with self._lock:
            self._blobs[validate_digest(digest)] = bytes(data)

    def _now(self) -> float:
        return self._clock()

    def _write_temp(self, chunks: Iterator[bytes]) -> _TempName:
        data = b"".join(chunks)
        name = f"tmp/{uuid.uuid4().hex}"
        with self._lock:
            self._temps[name] = (data, self._clock())
        return _TempName(name)

    def _publish(self, temp: _TempName, digest: str) -> None:
        with self._lock:
            data, _ = self._temps.pop(temp.name)
            self._blobs.setdefault(digest, data)
            self._stored_at[digest] = self._clock()

    def _discard_temp(self, temp: _TempName) -> None:
        with self._lock:
            self._temps.pop(temp.name, None)

    def _exists(self, digest: str) -> bool:
        with self._lock:
            return digest in self._blobs

    def _modified_at(self, digest: str) -> float | None:
        with self._lock:
            return self._stored_at.get(digest)

    def _touch(self, digest: str) -> None:
        with self._lock:
            if digest in self._blobs:
                self._stored_at[digest] = self._clock()

    def _size(self, digest: str) -> int:
        with self._lock:
            data = self._blobs.get(digest)
        if data is None:
            raise not_found(digest)
        return len(data)

    def _read_stream(self, digest: str) -> RawBlob:
        with self._lock:
            data = self._blobs.get(digest)
        if data is None:
            raise not_found(digest)
        step = self.chunk_size
        return RawBlob(chunks=iter([data[i : i + step] for i in range(0, len(data), step)]))

    def _list(self) -> Iterable[str]:
        with self._lock:
            return list(self._blobs)

    def _list_incomplete(self) -> list[IncompleteUpload]:
        with self._lock:
            return [IncompleteUpload(name, started) for name, (_, started) in self._temps.items()]

    def _remove_incomplete(self, upload: IncompleteUpload) -> None:
        with self._lock:
            self._temps.pop(upload.name, None)

    def _put_pending(self, token: str, record: bytes) -> None:
        with self._lock:
            self._pending[token] = record

    def _list_pending(self) -> list[tuple[str, bytes]]:
        with self._lock:
            return list(self._pending.items())

    def _remove_pending(self, token: str) -> None:
        with self._lock:
            self._pending.pop(token, None)

    def _remove(self, digest: str) -> bool:
        with self._lock:
            return self._blobs.pop(digest, None) is not None

    def _put_named_if_absent(self, area: str, name: str, data: bytes) -> bool:
        with self._lock:
            if (area, name) in self._records:
                return False
            self._records[(area, name)] = data
            return True

    def _list_named(self, area: str) -> Iterable[str]:
        with self._lock:
            return [n for a, n in self._records if a == area]

    def _get_named(self, area: str, name: str) -> bytes:
        with self._lock:
            if (area, name) not in self._records:
                raise record_not_found(area, name)
            return self._records[(area, name)]
