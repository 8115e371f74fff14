"""Reading a model from local disk: listing its files under the ignore and symlink rules, and
hashing them in parallel.

SHA-256 hashes several files at once (one thread per core, hashlib releases the GIL); BLAKE3
hashes each large file with all cores through memory maps. A file whose size or mtime changes
while it is read is an error, never a silently wrong digest. Does not sign and does not store.
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from modelward.core.manifest import FileDigest, Manifest, Serialization
from modelward.errors import (
    ChangedDuringReadError,
    DependencyError,
    InputError,
    PathError,
    SymlinkError,
)

ProgressCallback = Callable[[int], None]

_CHUNK = 8 << 20
_BLAKE3_SMALL = 4 << 20  # below this a file is hashed single-threaded, several at once


@dataclass(frozen=True)
class ModelFile:
    name: str  # POSIX path relative to the model root, "." for a single-file model
    path: Path  # where to read it (the link's target when links are allowed)
    size: int


def model_name_of(model_path: Path) -> str:
    name = model_path.name
    if not name or name == "..":
        name = model_path.resolve().name
    return name


def list_model_files(
    model_path: Path, *, ignore_paths: Iterable[str] = (), allow_symlinks: bool = False
) -> list[ModelFile]:
    """The files that make the model at `model_path` (a folder or a single file).

    `ignore_paths` are POSIX paths relative to the model root; a folder ignores everything
    below it. Symbolic links are refused unless `allow_symlinks`, and even then a link whose
    target leaves the model folder, a link to a folder, and a link loop are refused.
    """
    try:
        st = os.lstat(model_path)
    except FileNotFoundError as exc:
        raise PathError(f"{model_path}: no such file or directory") from exc
    except OSError as exc:
        raise PathError(f"{model_path}: cannot read: {exc.strerror or exc}") from exc
    if stat.S_ISLNK(st.st_mode):
        if not allow_symlinks:
            raise SymlinkError(f"{model_path}: the model path is a symbolic link")
        try:
            model_path = model_path.resolve(strict=True)
            st = os.stat(model_path)
        except (OSError, RuntimeError) as exc:
            raise PathError(f"{model_path}: broken symbolic link or link loop") from exc
    if stat.S_ISREG(st.st_mode):
        return [ModelFile(name=".", path=model_path, size=st.st_size)]
    if not stat.S_ISDIR(st.st_mode):
        raise PathError(f"{model_path}: not a regular file or folder (device, pipe or socket)")

    ignored = {p.strip("/") for p in ignore_paths if p.strip("/") not in ("", ".")}
    root_real = os.path.realpath(model_path)
    files: list[ModelFile] = []
    pending = [(model_path, "")]
    while pending:
        folder, prefix = pending.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            raise PathError(f"{folder}: cannot list: {exc.strerror or exc}") from exc
        for entry in entries:
            try:
                entry.name.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise PathError(f"{entry.path!r}: file name is not valid UTF-8") from exc
            name = f"{prefix}{entry.name}"
            if _is_ignored(name, ignored):
                continue
            files.extend(_visit(entry, name, root_real, allow_symlinks, pending))
    if not files:
        raise PathError(f"{model_path}: the folder has no files to hash")
    return files


def refuse_unprintable_names(files: Iterable[ModelFile], single_name: str | None = None) -> None:
    """InputError (exit 2) naming the first file, escaped, whose name holds a control
    character (C0, DEL, C1) or another character that does not print (bidirectional overrides,
    zero-width marks): such a name would reach terminals, logs and manifests raw, where it can
    rewrite what is shown. `single_name` is a single-file bundle's own name."""
    names = [f.name for f in files if f.name != "."]
    if single_name is not None:
        names.append(single_name)
    for name in names:
        if not all(part.isprintable() for part in name.split("/")):
            raise InputError(
                f"file name {name!r} holds a control or other non-printing character; "
                "rename the file (nothing was stored)"
            )


def _is_ignored(name: str, ignored: set[str]) -> bool:
    if not ignored:
        return False
    if name in ignored:
        return True
    parts = name.split("/")
    return any("/".join(parts[:i]) in ignored for i in range(1, len(parts)))


def _visit(
    entry: os.DirEntry[str],
    name: str,
    root_real: str,
    allow_symlinks: bool,
    pending: list[tuple[Path, str]],
) -> list[ModelFile]:
    path = Path(entry.path)
    try:
        st = entry.stat(follow_symlinks=False)
    except OSError as exc:
        raise PathError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if stat.S_ISLNK(st.st_mode):
        if not allow_symlinks:
            raise SymlinkError(
                f"{path}: symbolic link in the model (pass --allow-symlinks to follow links "
                "that stay inside the model folder)"
            )
        try:
            target = Path(os.path.realpath(path, strict=True))
            target_st = os.stat(target)
        except (OSError, RuntimeError) as exc:
            raise PathError(f"{path}: broken symbolic link or link loop") from exc
        if os.path.commonpath([root_real, str(target)]) != root_real:
            raise SymlinkError(f"{path}: symbolic link points outside the model folder")
        if not stat.S_ISREG(target_st.st_mode):
            raise SymlinkError(f"{path}: symbolic link to something other than a regular file")
        return [ModelFile(name=name, path=target, size=target_st.st_size)]
    if stat.S_ISDIR(st.st_mode):
        pending.append((path, name + "/"))
        return []
    if stat.S_ISREG(st.st_mode):
        return [ModelFile(name=name, path=path, size=st.st_size)]
    raise PathError(f"{path}: not a regular file (device, pipe or socket)")


def hash_files(
    files: list[ModelFile],
    hash_type: str = "sha256",
    *,
    progress: ProgressCallback | None = None,
    workers: int | None = None,
) -> list[FileDigest]:
    """Digest every file; raise ChangedDuringReadError if one changes while read."""
    if hash_type not in ("sha256", "blake3"):
        raise InputError(f"unknown hash type {hash_type!r}; use sha256 or blake3")
    workers = workers or os.cpu_count() or 1
    report = _locked(progress)
    if hash_type == "sha256":
        return _in_pool(files, workers, lambda f: _sha256_file(f, report))
    small = [f for f in files if f.size < _BLAKE3_SMALL]
    large = [f for f in files if f.size >= _BLAKE3_SMALL]
    results = _in_pool(small, workers, lambda f: _blake3_file(f, report, threads=1))
    results += [_blake3_file(f, report, threads=workers) for f in large]
    return results


def hash_model(
    model_path: Path,
    serialization: Serialization,
    *,
    progress: ProgressCallback | None = None,
) -> Manifest:
    files = list_model_files(
        model_path,
        ignore_paths=serialization.ignore_paths,
        allow_symlinks=serialization.allow_symlinks,
    )
    digests = hash_files(files, serialization.hash_type, progress=progress)
    return Manifest(
        model_name=model_name_of(model_path), files=tuple(digests), serialization=serialization
    )


def _locked(progress: ProgressCallback | None) -> ProgressCallback | None:
    if progress is None:
        return None
    lock = threading.Lock()
    callback = progress

    def report(n: int) -> None:
        with lock:
            callback(n)

    return report


def _in_pool(
    files: list[ModelFile], workers: int, task: Callable[[ModelFile], FileDigest]
) -> list[FileDigest]:
    if not files:
        return []
    ordered = sorted(files, key=lambda f: f.size, reverse=True)  # big first balances the pool
    if workers == 1 or len(ordered) == 1:
        return [task(f) for f in ordered]
    with ThreadPoolExecutor(max_workers=min(workers, len(ordered))) as pool:
        return list(pool.map(task, ordered))


def _sha256_file(model_file: ModelFile, progress: ProgressCallback | None) -> FileDigest:
    hasher = hashlib.sha256()
    buffer = bytearray(_CHUNK)
    view = memoryview(buffer)
    total = 0
    try:
        with open(model_file.path, "rb", buffering=0) as handle:
            before = os.fstat(handle.fileno())
            while True:
                n = handle.readinto(buffer)
                if not n:
                    break
                hasher.update(view[:n])
                total += n
                if progress is not None:
                    progress(n)
            after = os.stat(model_file.path)
    except OSError as exc:
        raise PathError(f"{model_file.path}: cannot read: {exc.strerror or exc}") from exc
    check_unchanged(model_file, before, after, total)
    return FileDigest(model_file.name, "sha256", hasher.hexdigest(), total)


def check_unchanged(
    model_file: ModelFile, before: os.stat_result, after: os.stat_result, total: int
) -> None:
    if (
        before.st_size != after.st_size
        or before.st_mtime_ns != after.st_mtime_ns
        or total != after.st_size
    ):
        raise ChangedDuringReadError(
            f"{model_file.path}: the file changed while it was being hashed; try again once "
            "nothing is writing to it"
        )


def _blake3_file(
    model_file: ModelFile, progress: ProgressCallback | None, *, threads: int
) -> FileDigest:
    try:
        from blake3 import blake3
    except ImportError as exc:  # pragma: no cover - blake3 is a core dependency
        raise DependencyError(
            "BLAKE3 hashing needs the blake3 package: pip install blake3"
        ) from exc
    hasher = blake3(max_threads=threads)
    try:
        before = os.stat(model_file.path)
        if before.st_size:
            hasher.update_mmap(str(model_file.path))
        after = os.stat(model_file.path)
    except OSError as exc:
        raise PathError(f"{model_file.path}: cannot read: {exc.strerror or exc}") from exc
    check_unchanged(model_file, before, after, before.st_size)
    if progress is not None:
        progress(before.st_size)
    return FileDigest(model_file.name, "blake3", hasher.hexdigest(), before.st_size)
