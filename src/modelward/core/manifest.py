"""Manifests: the per-file digests of a bundle and its root digest.

The root digest follows the OpenSSF Model Signing "files" serialization: SHA-256 over the
concatenated raw per-file digests, files ordered by their path components (as `PurePosixPath`
orders them, so `a/b` sorts before `a-c`). Pure: nothing here reads a file.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from modelward.errors import InputError

HASH_TYPES: tuple[str, ...] = ("sha256", "blake3")
DIGEST_SIZES = {"sha256": 32, "blake3": 32}
DEFAULT_IGNORE_PATHS: tuple[str, ...] = (".git", ".gitattributes", ".github", ".gitignore")


def path_sort_key(name: str) -> tuple[str, ...]:
    """Order file names by path components, as model_signing does."""
    return tuple(name.split("/"))


@dataclass(frozen=True)
class FileDigest:
    name: str  # POSIX path relative to the model root; "." for a single-file model
    algorithm: str
    digest: str  # lowercase hex
    size: int | None = None  # informative, not part of the signed resources

    def to_resource(self) -> dict[str, str]:
        return {"name": self.name, "algorithm": self.algorithm, "digest": self.digest}

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = self.to_resource()
        if self.size is not None:
            data["size"] = self.size
        return data

    @classmethod
    def from_dict(cls, data: Any) -> FileDigest:
        if not isinstance(data, dict):
            raise InputError("manifest entry is not an object")
        name, algorithm, digest = data.get("name"), data.get("algorithm"), data.get("digest")
        if not isinstance(name, str) or not name:
            raise InputError("manifest entry has no name")
        if algorithm not in DIGEST_SIZES:
            raise InputError(f"manifest entry {name!r} has unknown algorithm {algorithm!r}")
        if not isinstance(digest, str) or not _is_hex(digest, DIGEST_SIZES[algorithm]):
            raise InputError(f"manifest entry {name!r} has a malformed {algorithm} digest")
        size = data.get("size")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
            raise InputError(f"manifest entry {name!r} has a malformed size")
        return cls(name=name, algorithm=algorithm, digest=digest.lower(), size=size)


@dataclass(frozen=True)
class Serialization:
    """How the bundle was hashed; recorded in the signed predicate and re-applied on verify."""

    hash_type: str = "sha256"
    allow_symlinks: bool = False
    ignore_paths: tuple[str, ...] = DEFAULT_IGNORE_PATHS
    method: str = "files"

    def __post_init__(self) -> None:
        object.__setattr__(self, "ignore_paths", tuple(sorted(set(self.ignore_paths))))

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "hash_type": self.hash_type,
            "allow_symlinks": self.allow_symlinks,
            "ignore_paths": sorted(set(self.ignore_paths)),
        }

    @classmethod
    def from_dict(cls, data: Any) -> Serialization:
        if not isinstance(data, dict):
            raise InputError("serialization is not an object")
        method = data.get("method")
        if method != "files":
            raise InputError(f"serialization method {method!r} is not supported (only 'files')")
        hash_type = data.get("hash_type")
        if hash_type not in HASH_TYPES:
            raise InputError(f"hash type {hash_type!r} is not supported")
        allow_symlinks = data.get("allow_symlinks", False)
        if isinstance(allow_symlinks, str):  # written as a string by model_signing 0.2
            allow_symlinks = allow_symlinks.lower() == "true"
        if not isinstance(allow_symlinks, bool):
            raise InputError("serialization 'allow_symlinks' is not a boolean")
        ignore = data.get("ignore_paths", [])
        if not isinstance(ignore, list) or not all(isinstance(p, str) for p in ignore):
            raise InputError("serialization 'ignore_paths' is not a list of strings")
        return cls(
            hash_type=hash_type,
            allow_symlinks=allow_symlinks,
            ignore_paths=tuple(sorted(set(ignore))),
            method=method,
        )


@dataclass(frozen=True)
class ManifestDiff:
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[tuple[str, str, str], ...] = ()  # (name, expected digest, actual digest)

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)

    def describe(self) -> list[str]:
        lines = [f"file added: {_shown(name)}" for name in self.added]
        lines += [f"file removed: {_shown(name)}" for name in self.removed]
        lines += [
            f"file changed: {_shown(name)} (signed {expected}, found {actual})"
            for name, expected, actual in self.changed
        ]
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {
            "added": list(self.added),
            "removed": list(self.removed),
            "changed": [{"name": n, "expected": e, "actual": a} for n, e, a in self.changed],
        }


@dataclass(frozen=True)
class Manifest:
    model_name: str
    files: tuple[FileDigest, ...]
    serialization: Serialization = field(default_factory=Serialization)

    def __post_init__(self) -> None:
        ordered = tuple(sorted(self.files, key=lambda f: path_sort_key(f.name)))
        names = [f.name for f in ordered]
        if len(set(names)) != len(names):
            raise InputError("manifest lists a file twice")
        object.__setattr__(self, "files", ordered)

    @property
    def root_digest(self) -> str:
        hasher = hashlib.sha256()
        for entry in self.files:
            hasher.update(bytes.fromhex(entry.digest))
        return hasher.hexdigest()

    @property
    def total_size(self) -> int:
        return sum(f.size or 0 for f in self.files)

    def digests(self) -> dict[str, str]:
        return {f.name: f.digest for f in self.files}

    def diff_against(self, actual: Manifest) -> ManifestDiff:
        """What `actual` has that this (expected) manifest does not, and vice versa."""
        expected_map, actual_map = self.digests(), actual.digests()
        added = tuple(sorted(set(actual_map) - set(expected_map), key=path_sort_key))
        removed = tuple(sorted(set(expected_map) - set(actual_map), key=path_sort_key))
        changed = tuple(
            (name, expected_map[name], actual_map[name])
            for name in sorted(set(expected_map) & set(actual_map), key=path_sort_key)
            if expected_map[name] != actual_map[name]
        )
        return ManifestDiff(added=added, removed=removed, changed=changed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "root_digest": self.root_digest,
            "serialization": self.serialization.to_dict(),
            "files": [f.to_dict() for f in self.files],
        }

    @classmethod
    def from_dict(cls, data: Any) -> Manifest:
        if not isinstance(data, dict):
            raise InputError("manifest is not an object")
        files = data.get("files")
        if not isinstance(files, list):
            raise InputError("manifest has no file list")
        name = data.get("model_name", "")
        if not isinstance(name, str):
            raise InputError("manifest model_name is not a string")
        manifest = cls(
            model_name=name,
            files=tuple(FileDigest.from_dict(f) for f in files),
            serialization=Serialization.from_dict(
                data.get("serialization", {"method": "files", "hash_type": "sha256"})
            ),
        )
        root = data.get("root_digest")
        if root is not None and root != manifest.root_digest:
            raise InputError("manifest root digest does not match its files")
        return manifest


def _shown(name: str) -> str:
    return "the model file" if name == "." else name


def _is_hex(value: str, size: int) -> bool:
    if len(value) != size * 2:
        return False
    try:
        bytes.fromhex(value)
    except ValueError:
        return False
    return True
