"""The contract every content-addressed blob store keeps, written once as a template method.

`BlobStore`'s public methods hold the invariants; a backend implements only private hooks:

- a blob's name is the lowercase hex SHA-256 of its bytes, validated strictly (64 hex characters);
- `put_*` streams the input into a temporary object while hashing it, refuses a mismatch with the
  expected digest, and publishes atomically only after the digest checks; it never overwrites an
  existing digest, and a failure at any point leaves no visible blob;
- every read (`read_chunks`, `open`, `get_bytes`, `copy_to`) is re-hashed and raises
  `DigestMismatchError` naming the digest when the bytes do not match (a backend may vouch for a
  blob it verified earlier through a cache, as the filesystem store does unless it is strict).

Besides blobs, a store keeps append-only *named records* in fixed areas (`checkpoints/`: the
ledger's signed checkpoints, published outside the database): `put_named` writes a record only
if no record of that name exists, and nothing ever overwrites or deletes one.

Streaming readers can only know the bytes were right once they reach the end: a caller of
`read_chunks` or `open` must consume everything before trusting any of it. `get_bytes` and
`copy_to` do that for the caller.

This module does no I/O of its own except `put_file` reading its source and `copy_to` writing its
destination; it knows nothing of directories, buckets or database rows.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import re
import stat
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from modelward.errors import (
    ChangedDuringReadError,
    DigestMismatchError,
    InputError,
    NotFoundError,
    PathError,
    StorageError,
)

DIGEST_ALGORITHM = "sha256"
MIN_CHUNK_SIZE = 1024 * 1024
MAX_CHUNK_SIZE = 8 * 1024 * 1024
DEFAULT_CHUNK_SIZE = MIN_CHUNK_SIZE

_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")
NAMED_AREAS = frozenset({"checkpoints"})
_RECORD_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
MAX_NAMED_RECORD = 1024 * 1024
_TOKEN = re.compile(r"[0-9a-f]{32}")
_NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def validate_digest(digest: object) -> str:
    """Return `digest` if it is a lowercase hex SHA-256 (64 characters); raise InputError if not."""
    if not isinstance(digest, str) or _HEX_DIGEST.fullmatch(digest) is None:
        raise InputError(f"not a sha256 blob digest (64 lowercase hex characters): {digest!r}")
    return digest


def _validate_token(token: object) -> str:
    if not isinstance(token, str) or _TOKEN.fullmatch(token) is None:
        raise InputError(f"not a pending-writer token (32 lowercase hex characters): {token!r}")
    return token


def validate_chunk_size(chunk_size: int) -> int:
    """Return `chunk_size` if it lies within 1–8 MiB; raise InputError if not."""
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise InputError(
            f"chunk size must be between {MIN_CHUNK_SIZE} and {MAX_CHUNK_SIZE} bytes, "
            f"not {chunk_size}"
        )
    return chunk_size


def storage_error_from_os_error(exc: OSError, action: str) -> StorageError:
    """A StorageError for a failed local write, spelling out a full disk or quota."""
    if exc.errno in _NO_SPACE_ERRNOS:
        return StorageError(f"no space left on device while {action}: {exc.strerror or exc}")
    return StorageError(f"failed while {action}: {exc}")


@dataclass(frozen=True)
class BlobInfo:
    """A stored blob: its hex SHA-256 digest and its size in bytes."""

    digest: str
    size: int

    def to_dict(self) -> dict[str, Any]:
        return {"digest": self.digest, "size": self.size}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BlobInfo:
        size = data.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InputError(f"blob size must be a non-negative integer, not {size!r}")
        return cls(digest=validate_digest(data.get("digest")), size=size)


@dataclass(frozen=True)
class IncompleteUpload:
    """A temporary object a crashed or running write left behind (backend hook result)."""

    name: str
    started_at: float
    """Seconds since the epoch when the temporary object was created or last written."""


@dataclass
class RawBlob:
    """What a backend's `_read_stream` hook returns: unverified chunks and how to finish."""

    chunks: Iterator[bytes]
    close: Callable[[], None] = lambda: None
    verified_by_cache: bool = False
    """The backend vouches for these bytes from an earlier verification (fs cache)."""
    on_verified: Callable[[], None] = lambda: None
    """Called once the base class has re-hashed every byte and found the digest right."""


class SupportsRead(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


@dataclass
class _HashingChunks:
    """Iterates a source's chunks while hashing and counting them, for the backend to consume."""

    source: Iterator[bytes]
    hasher: Any = field(default_factory=hashlib.sha256)
    size: int = 0
    exhausted: bool = False

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.source:
            if chunk:
                self.hasher.update(chunk)
                self.size += len(chunk)
                yield chunk
        self.exhausted = True

    def hexdigest(self) -> str:
        return str(self.hasher.hexdigest())


def _read_chunks_from(readable: SupportsRead, chunk_size: int, label: str) -> Iterator[bytes]:
    while True:
        try:
            chunk = readable.read(chunk_size)
        except OSError as exc:
            raise PathError(f"cannot read {label}: {exc}") from exc
        if not chunk:
            return
        if not isinstance(chunk, bytes | bytearray | memoryview):
            raise InputError(f"{label} must yield bytes, not {type(chunk).__name__}")
        yield bytes(chunk)


class BlobReader(io.RawIOBase):
    """A file-like reader over a blob that re-hashes while reading.

    `DigestMismatchError` is raised by the read that reaches the end, so a caller must read to the
    end (until `read` returns b"") before trusting any byte it received.
    """

    def __init__(self, digest: str, chunks: Iterator[bytes]) -> None:
        super().__init__()
        self.digest = digest
        self._chunks = chunks
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def _fill(self) -> bool:
        """Make `_pending` non-empty unless the blob is exhausted (and so verified)."""
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return False
            self._pending = memoryview(chunk)
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if not view or not self._fill():
            return 0
        count = min(len(view), len(self._pending))
        view[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        return count

    def readall(self) -> bytes:
        parts = [bytes(self._pending)]
        self._pending = memoryview(b"")
        parts.extend(self._chunks)
        return b"".join(parts)

    def close(self) -> None:
        if not self.closed:
            close_chunks = getattr(self._chunks, "close", None)
            if close_chunks is not None:
                close_chunks()
        super().close()


class BlobStore(ABC):
    """A content-addressed blob store keyed by hex SHA-256; see the module docstring."""

    def __init__(self, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        self.chunk_size = validate_chunk_size(chunk_size)

    # ----------------------------------------------------------------------------------- writes

    def put_bytes(self, data: bytes, expected_digest: str | None = None) -> BlobInfo:
        """Store `data`; see `put_stream`."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise InputError(f"blob data must be bytes, not {type(data).__name__}")
        view = memoryview(data).cast("B")
        chunks = (
            bytes(view[i : i + self.chunk_size]) for i in range(0, len(view), self.chunk_size)
        )
        return self._put_chunks(chunks, expected_digest)

    def put_stream(self, readable: SupportsRead, expected_digest: str | None = None) -> BlobInfo:
        """Store everything `readable.read()` yields until EOF and return its digest and size.

        Raises DigestMismatchError if `expected_digest` is given and differs (nothing is stored).
        If the digest is already stored, the existing blob is kept and its info returned.
        """
        return self._put_chunks(
            _read_chunks_from(readable, self.chunk_size, "the input stream"), expected_digest
        )

    def put_file(
        self, path: str | os.PathLike[str], expected_digest: str | None = None
    ) -> BlobInfo:
        """Store the regular file at `path`; see `put_stream`.

        Raises PathError if it cannot be opened or is not a regular file, and
        ChangedDuringReadError (storing nothing) if its size or mtime changed while it was read.
        """
        source_path = Path(path)
        try:
            # Checked before opening too: opening a FIFO for reading would block.
            if not stat.S_ISREG(os.stat(source_path).st_mode):
                raise PathError(f"not a regular file: {source_path}")
            handle = open(source_path, "rb")  # noqa: SIM115 — closed in the finally below
        except OSError as exc:
            raise PathError(f"cannot open {source_path}: {exc.strerror or exc}") from exc
        try:
            before = os.fstat(handle.fileno())
            if not stat.S_ISREG(before.st_mode):
                raise PathError(f"not a regular file: {source_path}")
            label = str(source_path)

            def unchanged_check(size_read: int) -> None:
                try:
                    after = os.stat(source_path)
                except OSError as exc:
                    raise ChangedDuringReadError(
                        f"{source_path} disappeared while it was being stored; nothing was stored"
                    ) from exc
                identity_before = (before.st_ino, before.st_size, before.st_mtime_ns)
                identity_after = (after.st_ino, after.st_size, after.st_mtime_ns)
                if identity_after != identity_before or size_read != before.st_size:
                    raise ChangedDuringReadError(
                        f"{source_path} changed while it was being stored; nothing was stored"
                    )

            return self._put_chunks(
                _read_chunks_from(handle, self.chunk_size, label), expected_digest, unchanged_check
            )
        finally:
            handle.close()

    def _put_chunks(
        self,
        chunks: Iterator[bytes],
        expected_digest: str | None,
        after_read_check: Callable[[int], None] | None = None,
    ) -> BlobInfo:
        expected = None if expected_digest is None else validate_digest(expected_digest)
        source = _HashingChunks(chunks)
        temp = self._write_temp(iter(source))
        try:
            if not source.exhausted:
                raise StorageError(f"{type(self).__name__} stopped reading its input early")
            if after_read_check is not None:
                after_read_check(source.size)
            digest = source.hexdigest()
            if expected is not None and digest != expected:
                raise DigestMismatchError(
                    f"content hashes to sha256:{digest}, not the expected sha256:{expected}; "
                    "nothing was stored"
                )
            if not self._exists(digest):
                self._publish(temp, digest)
            else:
                self._touch(digest)
        finally:
            # After _publish the temporary object is gone; discarding it again is a no-op.
            self._discard_temp(temp)
        return BlobInfo(digest=digest, size=source.size)

    # ------------------------------------------------------------------------------------ reads

    def exists(self, digest: str) -> bool:
        """Whether a blob named `digest` is stored (its bytes are not checked)."""
        return self._exists(validate_digest(digest))

    def modified_at(self, digest: str) -> float | None:
        """When the blob was last stored or re-stored (seconds since the epoch), if known.

        fsck leaves unreferenced blobs younger than its grace period alone: a push stores its
        blobs before the transaction that references them commits.
        """
        return self._modified_at(validate_digest(digest))

    def size(self, digest: str) -> int:
        """The stored size of `digest` in bytes; NotFoundError if it is not stored."""
        return self._size(validate_digest(digest))

    def read_chunks(self, digest: str) -> Iterator[bytes]:
        """Yield the blob's bytes, re-hashing them; DigestMismatchError after the last chunk.

        NotFoundError is raised at once if the blob is missing. The bytes are only proven right
        when the iterator is exhausted without error: consume it to the end before trusting them.
        """
        checked = validate_digest(digest)
        raw = self._read_stream(checked)
        return self._verified_chunks(checked, raw)

    def unverified_chunks(self, digest: str) -> Iterator[bytes]:
        """Yield the blob's bytes as stored, NOT re-hashed: only for a caller that hashes them
        itself while it reads (one pass) and refuses a mismatch, as the verified loader does.
        NotFoundError at once if the blob is missing."""
        raw = self._read_stream(validate_digest(digest))

        def chunks() -> Iterator[bytes]:
            try:
                yield from raw.chunks
            finally:
                raw.close()

        return chunks()

    def _verified_chunks(self, digest: str, raw: RawBlob) -> Iterator[bytes]:
        try:
            if raw.verified_by_cache:
                yield from raw.chunks
                return
            hasher = hashlib.sha256()
            for chunk in raw.chunks:
                hasher.update(chunk)
                yield chunk
            actual = hasher.hexdigest()
            if actual != digest:
                raise DigestMismatchError(
                    f"blob sha256:{digest} is corrupt: its stored bytes hash to sha256:{actual}"
                )
            raw.on_verified()
        finally:
            raw.close()

    def open(self, digest: str) -> BlobReader:
        """A context-managed, file-like reader; it raises DigestMismatchError on the final read."""
        checked = validate_digest(digest)
        return BlobReader(checked, self.read_chunks(checked))

    def get_bytes(self, digest: str) -> bytes:
        """The whole blob, verified, in memory (meant for small blobs: manifests, configs)."""
        return b"".join(self.read_chunks(digest))

    def copy_to(self, digest: str, dest_path: str | os.PathLike[str]) -> BlobInfo:
        """Write the verified blob to `dest_path` (replacing it), never leaving a bad file there.

        The bytes go to a temporary file next to `dest_path`, which is renamed into place only
        after the digest checks, and removed on any failure.
        """
        chunks = self.read_chunks(digest)
        dest = Path(dest_path)
        temp = dest.parent / f".{dest.name}.{uuid.uuid4().hex}.modelward-partial"
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as exc:
            close_iterator(chunks)
            raise PathError(f"cannot write next to {dest}: {exc.strerror or exc}") from exc
        size = 0
        try:
            try:
                for chunk in chunks:
                    write_all(fd, chunk)
                    size += len(chunk)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, dest)
        except OSError as exc:
            remove_quietly(temp)
            raise storage_error_from_os_error(exc, f"writing {dest}") from exc
        except BaseException:
            remove_quietly(temp)
            raise
        finally:
            close_iterator(chunks)
        fsync_directory(dest.parent)
        return BlobInfo(digest=validate_digest(digest), size=size)

    # ------------------------------------------------------------------------ listing and fsck

    def list_digests(self) -> Iterator[str]:
        """Every stored digest, in no particular order (names that are not digests are skipped)."""
        for name in self._list():
            if _HEX_DIGEST.fullmatch(name):
                yield name

    def list_incomplete(self, older_than_seconds: float) -> list[str]:
        """Names of temporary objects (crashed or running writes) older than the grace period."""
        return [upload.name for upload in self._incomplete_older_than(older_than_seconds)]

    def remove_incomplete(self, older_than_seconds: float) -> list[str]:
        """Remove temporary objects older than the grace period; return the names removed.

        Use a grace period longer than any write takes: a younger temporary may be a live upload.
        """
        removed = []
        for upload in self._incomplete_older_than(older_than_seconds):
            self._remove_incomplete(upload)
            removed.append(upload.name)
        return removed

    def _incomplete_older_than(self, older_than_seconds: float) -> list[IncompleteUpload]:
        if older_than_seconds < 0:
            raise InputError(f"grace period must not be negative, not {older_than_seconds}")
        now = self._now()
        return [u for u in self._list_incomplete() if now - u.started_at >= older_than_seconds]

    def _now(self) -> float:
        """Seconds since the epoch, on the clock that dates temporary objects."""
        return time.time()

    # -------------------------------------------------------------------- pending writers

    def register_pending(self, token: str, record: bytes) -> None:
        """Record that a writer (a push) is storing blobs it has not yet referenced from the
        database: `record` (small JSON, the writer's own) says when it started and, later, which
        digests it stored. fsck spares what a live pending writer may still reference.
        Re-registering a token replaces its record."""
        self._put_pending(_validate_token(token), bytes(record))

    def pending(self) -> list[tuple[str, bytes]]:
        """Every registered pending writer: (token, record)."""
        return [(name, data) for name, data in self._list_pending() if _TOKEN.fullmatch(name)]

    def clear_pending(self, token: str) -> None:
        """Forget a pending writer (it committed, failed, or was found dead); never raises for
        one already gone."""
        self._remove_pending(_validate_token(token))

    def remove_blob(self, digest: str) -> bool:
        """Delete a stored blob; return whether it existed.

        For `modelward fsck` repairing orphans (blobs no version references) only: blobs are
        otherwise never deleted, and removing a referenced blob breaks the versions that use it.
        """
        return self._remove(validate_digest(digest))

    # -------------------------------------------------------------------- named records

    def put_named(self, area: str, name: str, data: bytes) -> bool:
        """Store `data` as record `name` in `area` unless a record of that name exists (it is
        never overwritten); True when this call wrote it."""
        _check_record(area, name)
        if len(data) > MAX_NAMED_RECORD:
            raise InputError(f"record {area}/{name} is larger than {MAX_NAMED_RECORD} bytes")
        return self._put_named_if_absent(area, name, bytes(data))

    def list_named(self, area: str) -> list[str]:
        """The names of the records in `area`, sorted (names that break the rules are skipped)."""
        _check_record(area, "x")
        return sorted(n for n in self._list_named(area) if _RECORD_NAME.fullmatch(n))

    def get_named(self, area: str, name: str) -> bytes:
        """The record `name` of `area`; NotFoundError if there is none."""
        _check_record(area, name)
        return self._get_named(area, name)

    # ---------------------------------------------------------------------------------- hooks

    def _put_named_if_absent(self, area: str, name: str, data: bytes) -> bool:
        """Hook: write the record atomically unless it exists; True when written."""
        raise StorageError(f"{type(self).__name__} keeps no named records")

    def _list_named(self, area: str) -> Iterable[str]:
        """Hook: the names of the records in `area`."""
        raise StorageError(f"{type(self).__name__} keeps no named records")

    def _get_named(self, area: str, name: str) -> bytes:
        """Hook: a record's bytes; NotFoundError if absent."""
        raise StorageError(f"{type(self).__name__} keeps no named records")

    def _modified_at(self, digest: str) -> float | None:
        """Hook: the blob's last store time; None when the backend cannot tell."""
        return None

    def _touch(self, digest: str) -> None:  # noqa: B027 - optional hook, no-op by default
        """Hook: mark an existing blob as stored again now (a push is about to reference it)."""

    @abstractmethod
    def _put_pending(self, token: str, record: bytes) -> None:
        """Hook: store `record` as `pending/<token>` (replacing it) for `_list_pending`."""

    @abstractmethod
    def _list_pending(self) -> list[tuple[str, bytes]]: ...

    @abstractmethod
    def _remove_pending(self, token: str) -> None: ...

    @abstractmethod
    def _write_temp(self, chunks: Iterator[bytes]) -> Any:
        """Consume every chunk into a temporary object invisible to readers; return its handle.

        On failure, remove whatever was written and raise StorageError (exceptions raised by
        `chunks` itself must propagate unchanged).
        """

    @abstractmethod
    def _publish(self, temp: Any, digest: str) -> None:
        """Make the verified temporary object visible as `digest`, never replacing an existing
        one (if it appears concurrently, keep it). The temporary object must be gone afterwards."""

    @abstractmethod
    def _discard_temp(self, temp: Any) -> None:
        """Remove the temporary object if it still exists; never raise for one already gone."""

    @abstractmethod
    def _exists(self, digest: str) -> bool: ...

    @abstractmethod
    def _size(self, digest: str) -> int:
        """The stored size; raise NotFoundError if missing."""

    @abstractmethod
    def _read_stream(self, digest: str) -> RawBlob:
        """Open the stored bytes for reading; raise NotFoundError at once if missing."""

    @abstractmethod
    def _list(self) -> Iterable[str]:
        """Names under which blobs are stored (the base class filters out non-digests)."""

    @abstractmethod
    def _list_incomplete(self) -> list[IncompleteUpload]: ...

    @abstractmethod
    def _remove_incomplete(self, upload: IncompleteUpload) -> None: ...

    @abstractmethod
    def _remove(self, digest: str) -> bool: ...


def _check_record(area: str, name: str) -> None:
    if area not in NAMED_AREAS:
        raise InputError(f"{area!r} is not a record area of a blob store")
    if not isinstance(name, str) or not _RECORD_NAME.fullmatch(name):
        raise InputError(f"{name!r} is not a valid record name")


def record_not_found(area: str, name: str) -> NotFoundError:
    return NotFoundError(f"no record {area}/{name} in the blob store")


def not_found(digest: str) -> NotFoundError:
    return NotFoundError(f"blob sha256:{digest} is not stored")


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of `data` to `fd` (os.write may write fewer)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def remove_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError:
        pass  # the caller is already failing; fsck removes what is left


def fsync_directory(path: Path) -> None:
    """Persist a directory's entries (a rename or link in it); a no-op where unsupported."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories; the data itself was fsynced
    finally:
        os.close(fd)


def close_iterator(chunks: Iterator[bytes]) -> None:
    close = getattr(chunks, "close", None)
    if close is not None:
        close()
