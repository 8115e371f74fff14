"""Staging a bundle for push: copy each file once, hashing it, into a private folder.

A push reads the caller's files exactly once, here. Everything after (the scan, the provenance
check, storing the blobs) reads the private, read-only copies, so the bytes scanned are the bytes
hashed and stored: swapping a file in the working tree after it was staged changes nothing, and a
file whose size, mtime or inode changes while it is copied is refused (ChangedDuringReadError).
The folder (mode 0700) is removed when the `StagedBundle` is closed; folders a killed push left
behind are removed by the next push once they are a day old. Knows nothing of scanning,
blob stores or the database.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from modelward.errors import ChangedDuringReadError, PathError
from modelward.storage.blobs.base import storage_error_from_os_error, write_all
from modelward.storage.model_files import ModelFile

ProgressCallback = Callable[[int], None]
_CHUNK = 8 << 20
_PARALLEL_BYTES = 32 << 20
STALE_SECONDS = 24 * 3600.0


@dataclass(frozen=True)
class StagedFile:
    name: str  # the bundle's POSIX name, "." for a single-file model
    path: Path  # the private copy
    digest: str  # hex SHA-256 of the copy, computed while it was written
    size: int

    def as_model_file(self) -> ModelFile:
        return ModelFile(name=self.name, path=self.path, size=self.size)


class StagedBundle:
    """The private copies of a bundle; `scan_path` is what a scanner should be given."""

    def __init__(self, root: Path, scan_path: Path, files: list[StagedFile]) -> None:
        self.root = root
        self.scan_path = scan_path
        self.files = files

    def model_files(self) -> list[ModelFile]:
        return [f.as_model_file() for f in self.files]

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> StagedBundle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def stage_bundle(
    files: Sequence[ModelFile],
    parent: Path,
    *,
    single_name: str = "model",
    progress: ProgressCallback | None = None,
) -> StagedBundle:
    """Copy `files` into a new private folder under `parent`, hashing each as it is copied.

    A single-file model (one file named ".") is copied as `single_name`.
    """
    try:
        parent.mkdir(parents=True, exist_ok=True)
        remove_stale_stages(parent)
        root = Path(tempfile.mkdtemp(prefix="push-", suffix=".staging", dir=parent))
    except OSError as exc:
        raise storage_error_from_os_error(exc, f"creating a staging folder in {parent}") from exc
    try:
        single = len(files) == 1 and files[0].name == "."
        bundle_dir = root / "bundle"
        bundle_dir.mkdir()
        scan_path = bundle_dir / _safe_single_name(single_name) if single else bundle_dir

        def stage(model_file: ModelFile) -> StagedFile:
            target = scan_path if single else bundle_dir / model_file.name
            staged = _copy_hashing(model_file, target)
            if progress is not None:
                progress(staged.size)
            return staged

        total = sum(f.size for f in files)
        workers = min(len(files), os.cpu_count() or 1)
        if workers <= 1 or total < _PARALLEL_BYTES:
            staged = [stage(f) for f in files]
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                staged = list(pool.map(stage, files))
        return StagedBundle(root, scan_path, staged)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise


def remove_stale_stages(parent: Path, older_than_seconds: float = STALE_SECONDS) -> list[Path]:
    """Remove staging folders a killed push left behind (untouched for longer than a day)."""
    removed: list[Path] = []
    now = time.time()
    try:
        entries = list(parent.glob("push-*.staging"))
    except OSError:
        return removed
    for entry in entries:
        try:
            if now - entry.lstat().st_mtime < older_than_seconds:
                continue
        except OSError:
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed


def _safe_single_name(name: str) -> str:
    base = os.path.basename(name) or "model"
    return base if base not in (".", "..") else "model"


def _copy_hashing(model_file: ModelFile, target: Path) -> StagedFile:
    source = model_file.path
    try:
        fd_in = os.open(source, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        raise PathError(f"cannot open {source}: {exc.strerror or exc}") from exc
    try:
        before = os.fstat(fd_in)
        if not stat.S_ISREG(before.st_mode):
            raise PathError(f"not a regular file: {source}")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd_out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise storage_error_from_os_error(exc, f"staging {model_file.name}") from exc
        hasher = hashlib.sha256()
        size = 0
        try:
            while True:
                try:
                    chunk = os.read(fd_in, _CHUNK)
                except OSError as exc:
                    raise PathError(f"cannot read {source}: {exc.strerror or exc}") from exc
                if not chunk:
                    break
                hasher.update(chunk)
                size += len(chunk)
                try:
                    write_all(fd_out, chunk)
                except OSError as exc:
                    raise storage_error_from_os_error(exc, f"staging {model_file.name}") from exc
            os.fchmod(fd_out, 0o400)
        finally:
            os.close(fd_out)
        _check_unchanged(source, before, size)
    finally:
        os.close(fd_in)
    return StagedFile(model_file.name, target, hasher.hexdigest(), size)


def _check_unchanged(source: Path, before: os.stat_result, size_read: int) -> None:
    try:
        after = os.stat(source, follow_symlinks=False)
    except OSError as exc:
        raise ChangedDuringReadError(
            f"{source} disappeared while it was being read; nothing was stored"
        ) from exc
    identity_before = (before.st_ino, before.st_size, before.st_mtime_ns)
    identity_after = (after.st_ino, after.st_size, after.st_mtime_ns)
    if identity_after != identity_before or size_read != before.st_size:
        raise ChangedDuringReadError(
            f"{source} changed while it was being read; nothing was stored"
        )
