"""The filesystem blob store: the default, under `$MODELWARD_HOME/blobs/`.

Layout under the root directory:

    sha256/ab/cd/abcd…  a blob, named by its full hex digest under two 2-character fan-out levels,
                        made read-only once published
    tmp/<uuid>.partial  a write in progress (or left by a crash; `modelward fsck` removes it)
    pending/<token>     a push storing blobs it has not committed yet (fsck spares them)

A write goes to `tmp/`, is fsynced, and is hard-linked to its final name only after its digest
checks; a link never replaces an existing name, so a digest is never overwritten. The containing
directory is fsynced after the link. On filesystems without hard links it falls back to a rename
after an existence check, which is racy but harmless: racing writers publish identical bytes.

Reads are re-hashed. A per-instance, in-memory verified-digest cache keyed by
(st_dev, st_ino, st_size, st_mtime_ns) skips re-hashing a file already verified and unchanged
since; `strict=True` bypasses it. A change that keeps size and restores the mtime defeats the
cache, which is what strict mode is for. This module does not know about versions or references.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from modelward.errors import StorageError
from modelward.storage.blobs.base import (
    DEFAULT_CHUNK_SIZE,
    BlobStore,
    IncompleteUpload,
    RawBlob,
    fsync_directory,
    not_found,
    record_not_found,
    remove_quietly,
    storage_error_from_os_error,
    write_all,
)

_TEMP_SUFFIX = ".partial"
_LINK_UNSUPPORTED_ERRNOS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV})
_CACHE_LIMIT = 100_000

_FileIdentity = tuple[int, int, int, int]


@dataclass(frozen=True)
class _TempFile:
    path: Path


def _identity(result: os.stat_result) -> _FileIdentity:
    return (result.st_dev, result.st_ino, result.st_size, result.st_mtime_ns)


class FileBlobStore(BlobStore):
    """Blobs as read-only files under `root`; see the module docstring."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        strict: bool = False,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        super().__init__(chunk_size=chunk_size)
        self.root = Path(root)
        self.strict = strict
        self._blob_dir = self.root / "sha256"
        self._temp_dir = self.root / "tmp"
        self._pending_dir = self.root / "pending"
        self._verified: dict[_FileIdentity, str] = {}
        self._verified_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"FileBlobStore({str(self.root)!r}, strict={self.strict})"

    def blob_path(self, digest: str) -> Path:
        """Where the blob named `digest` lives (whether or not it exists)."""
        return self._blob_dir / digest[0:2] / digest[2:4] / digest

    # ------------------------------------------------------------------------------ writes

    def _write_temp(self, chunks: Iterator[bytes]) -> _TempFile:
        try:
            self._temp_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise storage_error_from_os_error(exc, f"creating {self._temp_dir}") from exc
        path = self._temp_dir / f"{uuid.uuid4().hex}{_TEMP_SUFFIX}"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise storage_error_from_os_error(exc, f"creating a temporary blob in {path}") from exc
        try:
            try:
                for chunk in chunks:
                    try:
                        _write_chunk(fd, chunk)
                    except OSError as exc:
                        raise storage_error_from_os_error(
                            exc, f"writing a blob under {self.root}"
                        ) from exc
                try:
                    os.fchmod(fd, 0o444)
                    os.fsync(fd)
                except OSError as exc:
                    raise storage_error_from_os_error(
                        exc, f"writing a blob under {self.root}"
                    ) from exc
            finally:
                os.close(fd)
        except BaseException:
            remove_quietly(path)
            raise
        return _TempFile(path)

    def _publish(self, temp: _TempFile, digest: str) -> None:
        final = self.blob_path(digest)
        try:
            self._make_fanout_dirs(final.parent)
            try:
                os.link(temp.path, final)
            except FileExistsError:
                pass  # a concurrent writer published the same bytes first
            except OSError as exc:
                if exc.errno not in _LINK_UNSUPPORTED_ERRNOS:
                    raise
                if not final.exists():
                    os.replace(temp.path, final)
            fsync_directory(final.parent)
        except OSError as exc:
            raise storage_error_from_os_error(exc, f"publishing blob sha256:{digest}") from exc
        finally:
            remove_quietly(temp.path)

    def _make_fanout_dirs(self, directory: Path) -> None:
        missing = []
        current = directory
        while not current.is_dir():
            missing.append(current)
            if current == self.root:
                break
            current = current.parent
        directory.mkdir(parents=True, exist_ok=True)
        for created in missing:
            fsync_directory(created.parent)

    def _discard_temp(self, temp: _TempFile) -> None:
        remove_quietly(temp.path)

    # ------------------------------------------------------------------------------- reads

    def _exists(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def _modified_at(self, digest: str) -> float | None:
        try:
            return self.blob_path(digest).stat().st_mtime
        except OSError:
            return None

    def _touch(self, digest: str) -> None:
        # a read-only store still serves the blob; fsck's grace is then best effort
        with contextlib.suppress(OSError):
            os.utime(self.blob_path(digest))

    def _size(self, digest: str) -> int:
        try:
            return self.blob_path(digest).stat().st_size
        except FileNotFoundError as exc:
            raise not_found(digest) from exc
        except OSError as exc:
            raise StorageError(f"cannot stat blob sha256:{digest}: {exc}") from exc

    def _read_stream(self, digest: str) -> RawBlob:
        path = self.blob_path(digest)
        try:
            handle = open(path, "rb")  # noqa: SIM115 — RawBlob.close closes it
        except FileNotFoundError as exc:
            raise not_found(digest) from exc
        except OSError as exc:
            raise StorageError(f"cannot open blob sha256:{digest}: {exc}") from exc
        try:
            identity = _identity(os.fstat(handle.fileno()))
        except OSError as exc:
            handle.close()
            raise StorageError(f"cannot stat blob sha256:{digest}: {exc}") from exc

        def chunks() -> Iterator[bytes]:
            while True:
                try:
                    chunk = handle.read(self.chunk_size)
                except OSError as exc:
                    raise StorageError(f"cannot read blob sha256:{digest}: {exc}") from exc
                if not chunk:
                    return
                yield chunk

        def remember_verified() -> None:
            # Only cache if the file is still the one that was hashed.
            try:
                unchanged = _identity(os.fstat(handle.fileno())) == identity
            except OSError:
                return
            if unchanged:
                with self._verified_lock:
                    if len(self._verified) >= _CACHE_LIMIT:
                        self._verified.clear()
                    self._verified[identity] = digest

        cached = not self.strict and self._verified.get(identity) == digest
        return RawBlob(
            chunks=chunks(),
            close=handle.close,
            verified_by_cache=cached,
            on_verified=remember_verified,
        )

    # --------------------------------------------------------------------- listing and fsck

    def _list(self) -> Iterable[str]:
        for first in _subdirectories(self._blob_dir):
            for second in _subdirectories(first):
                for entry in _entries(second):
                    name = entry.name
                    # A file in the wrong fan-out directory is not a blob this store published.
                    if name[0:2] == first.name and name[2:4] == second.name and entry.is_file():
                        yield name

    def _list_incomplete(self) -> list[IncompleteUpload]:
        uploads = []
        for entry in _entries(self._temp_dir):
            if not entry.name.endswith(_TEMP_SUFFIX):
                continue
            try:
                started_at = entry.stat(follow_symlinks=False).st_mtime
            except FileNotFoundError:
                continue
            uploads.append(IncompleteUpload(name=f"tmp/{entry.name}", started_at=started_at))
        return uploads

    def _remove_incomplete(self, upload: IncompleteUpload) -> None:
        remove_quietly(self.root / upload.name)

    def _put_pending(self, token: str, record: bytes) -> None:
        try:
            self._pending_dir.mkdir(parents=True, exist_ok=True)
            temp = self._pending_dir / f".{token}.{uuid.uuid4().hex}"
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                write_all(fd, record)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, self._pending_dir / token)
            fsync_directory(self._pending_dir)
        except OSError as exc:
            raise storage_error_from_os_error(
                exc, f"registering a pending push in {self.root}"
            ) from exc

    def _list_pending(self) -> list[tuple[str, bytes]]:
        found = []
        for entry in _entries(self._pending_dir):
            if entry.name.startswith("."):
                continue
            try:
                found.append((entry.name, Path(entry.path).read_bytes()))
            except FileNotFoundError:
                continue  # it finished while we looked
            except OSError as exc:
                raise StorageError(f"cannot read {entry.path}: {exc}") from exc
        return found

    def _remove_pending(self, token: str) -> None:
        remove_quietly(self._pending_dir / token)

    def _remove(self, digest: str) -> bool:
        path = self.blob_path(digest)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise StorageError(f"cannot remove blob sha256:{digest}: {exc}") from exc
        fsync_directory(path.parent)
        return True

    # ------------------------------------------------------------------------ named records

    def _put_named_if_absent(self, area: str, name: str, data: bytes) -> bool:
        directory = self.root / area
        final = directory / name
        try:
            directory.mkdir(parents=True, exist_ok=True)
            temp = directory / f".{uuid.uuid4().hex}{_TEMP_SUFFIX}"
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                write_all(fd, data)
                os.fchmod(fd, 0o444)
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(temp, final)  # fails if the name exists: never overwrites
                written = True
            except FileExistsError:
                written = False
            finally:
                remove_quietly(temp)
            fsync_directory(directory)
        except OSError as exc:
            raise storage_error_from_os_error(exc, f"writing record {area}/{name}") from exc
        return written

    def _list_named(self, area: str) -> Iterable[str]:
        for entry in _entries(self.root / area):
            if not entry.name.startswith(".") and entry.is_file(follow_symlinks=False):
                yield entry.name

    def _get_named(self, area: str, name: str) -> bytes:
        try:
            return (self.root / area / name).read_bytes()
        except FileNotFoundError as exc:
            raise record_not_found(area, name) from exc
        except OSError as exc:
            raise storage_error_from_os_error(exc, f"reading record {area}/{name}") from exc


def _write_chunk(fd: int, chunk: bytes) -> None:
    """Write one chunk to the temporary file (a seam tests use to simulate a full disk)."""
    write_all(fd, chunk)


def _entries(directory: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as iterator:
            return list(iterator)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise StorageError(f"cannot list {directory}: {exc}") from exc


def _subdirectories(directory: Path) -> Iterator[Path]:
    for entry in sorted(_entries(directory), key=lambda e: e.name):
        if len(entry.name) == 2 and entry.is_dir(follow_symlinks=False):
            yield Path(entry.path)
