"""Dataset manifests: per-file digests, per-record roots and governance facts, and eligibility.

A `DatasetManifest` is what a dataset version *is*: the files (relative POSIX paths, SHA-256,
size), the record roots of each JSONL/CSV/Parquet file (see `records`), and the governance facts
(SPDX licence, source, consent, retention date, owner, labelling-QA report digest). Its `digest`
is the SHA-256 of its canonical (RFC 8785) JSON; `data_digest` covers the files and record roots
only, so two versions with the same bytes but different governance can be told apart.

Builds manifests from a file or folder (streaming hashes, refusing links that leave the folder,
links to folders and special files) and judges eligibility for new training runs on a given day.
Does not store anything, assign version numbers or know about the registry.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import Any

from modelward.core.canonical import canonical_digest
from modelward.errors import (
    ChangedDuringReadError,
    InputError,
    InvalidNameError,
    PathError,
    SymlinkError,
)
from modelward.provenance._spdx_licenses import SPDX_LICENSE_IDS
from modelward.provenance.records import (
    DEFAULT_MAX_RECORD_BYTES,
    RecordRoots,
    compute_record_roots,
    parse_hex_digest,
    record_format_of,
)

MANIFEST_SCHEMA = "https://modelward.dev/dataset-manifest/v1"
_CHUNK = 1 << 20
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_LICENSE_REF = re.compile(r"^LicenseRef-[A-Za-z0-9.-]+$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_SPDX_BY_LOWER = {spdx_id.lower(): spdx_id for spdx_id in SPDX_LICENSE_IDS}
_MAX_TEXT = 4096


class Consent(StrEnum):
    GRANTED = "granted"
    NOT_REQUIRED = "not-required"
    UNKNOWN = "unknown"
    WITHDRAWN = "withdrawn"


def parse_consent(text: object) -> Consent:
    try:
        return Consent(str(text))
    except ValueError as exc:
        choices = ", ".join(c.value for c in Consent)
        raise InputError(f"consent {text!r} is not one of {choices}") from exc


def parse_retention_date(text: object) -> dt.date:
    """A calendar date written YYYY-MM-DD, or InputError."""
    if not isinstance(text, str) or not _DATE.match(text):
        raise InputError(f"date {text!r} is not in the form YYYY-MM-DD")
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise InputError(f"date {text!r} is not a calendar date") from exc


def validate_license_id(text: object) -> str:
    """The SPDX licence identifier in its canonical case, or a `LicenseRef-…`; else InputError."""
    if not isinstance(text, str) or not text:
        raise InputError("licence is empty; give an SPDX identifier such as CC-BY-4.0")
    if _LICENSE_REF.match(text):
        return text
    canonical = _SPDX_BY_LOWER.get(text.lower())
    if canonical is None:
        raise InputError(
            f"licence {text!r} is not an SPDX licence identifier "
            "(see https://spdx.org/licenses/; use LicenseRef-NAME for others)"
        )
    return canonical


def validate_dataset_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidNameError(
            f"dataset name {name!r} must be 1-128 characters of letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def _text(value: Any, what: str, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{what} must be a non-empty string")
    if len(value) > _MAX_TEXT or any(ord(c) < 32 and c not in "\t" for c in value):
        raise InputError(f"{what} is too long or contains control characters")
    return value


def _relative_path(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise InputError("dataset file path is not a non-empty string")
    pure = PurePosixPath(value)
    if (
        pure.is_absolute()
        or value != pure.as_posix()
        or any(part in ("", ".", "..") for part in pure.parts)
        or any(ord(c) < 32 for c in value)
        or "\\" in value
    ):
        raise InputError(f"dataset file path {value!r} is not a clean relative POSIX path")
    return value


@dataclass(frozen=True)
class DatasetFile:
    path: str  # relative POSIX path inside the dataset
    sha256: str
    size: int
    records: RecordRoots | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"path": self.path, "sha256": self.sha256, "size": self.size}
        if self.records is not None:
            data["records"] = self.records.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Any) -> DatasetFile:
        if not isinstance(data, dict):
            raise InputError("dataset file entry is not a JSON object")
        size = data.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InputError("dataset file 'size' is not a non-negative integer")
        records = data.get("records")
        return cls(
            path=_relative_path(data.get("path")),
            sha256=parse_hex_digest(data.get("sha256"), "dataset file 'sha256'"),
            size=size,
            records=None if records is None else RecordRoots.from_dict(records),
        )


@dataclass(frozen=True)
class DatasetManifest:
    name: str
    files: tuple[DatasetFile, ...]
    license: str  # SPDX licence id or LicenseRef-…
    source: str
    consent: Consent = Consent.UNKNOWN
    retention_until: dt.date | None = None
    owner: str | None = None
    labeling_qa_digest: str | None = None  # hex SHA-256 of the labelling-QA report

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": MANIFEST_SCHEMA,
            "name": self.name,
            "files": [f.to_dict() for f in self.files],
            "license": self.license,
            "source": self.source,
            "consent": self.consent.value,
            "retentionUntil": self.retention_until.isoformat() if self.retention_until else None,
            "owner": self.owner,
            "labelingQaDigest": self.labeling_qa_digest,
        }

    @classmethod
    def from_dict(cls, data: Any) -> DatasetManifest:
        if not isinstance(data, dict):
            raise InputError("dataset manifest is not a JSON object")
        if data.get("schema") != MANIFEST_SCHEMA:
            raise InputError(f"dataset manifest schema is {data.get('schema')!r}")
        raw_files = data.get("files")
        if not isinstance(raw_files, list) or not raw_files:
            raise InputError("dataset manifest has no files")
        files = tuple(DatasetFile.from_dict(f) for f in raw_files)
        paths = [f.path for f in files]
        if paths != sorted(set(paths)):
            raise InputError("dataset manifest files are not sorted and unique by path")
        retention = data.get("retentionUntil")
        qa_digest = data.get("labelingQaDigest")
        return cls(
            name=validate_dataset_name(data.get("name")),
            files=files,
            license=validate_license_id(data.get("license")),
            source=_text(data.get("source"), "dataset source") or "",
            consent=parse_consent(data.get("consent")),
            retention_until=None if retention is None else parse_retention_date(retention),
            owner=_text(data.get("owner"), "dataset owner", optional=True),
            labeling_qa_digest=None
            if qa_digest is None
            else parse_hex_digest(qa_digest, "labelling-QA digest"),
        )

    @property
    def digest(self) -> str:
        """Hex SHA-256 of the canonical JSON of the whole manifest."""
        return canonical_digest(self.to_dict())

    @property
    def data_digest(self) -> str:
        """Hex SHA-256 of the canonical JSON of the files and record roots only."""
        return canonical_digest([f.to_dict() for f in self.files])

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def record_count(self) -> int:
        return sum(f.records.count for f in self.files if f.records is not None)


@dataclass(frozen=True)
class Eligibility:
    eligible: bool
    reasons: list[str] = field(default_factory=list)  # why not eligible
    warnings: list[str] = field(default_factory=list)  # eligible, but worth a look

    def to_dict(self) -> dict[str, Any]:
        return {"eligible": self.eligible, "reasons": self.reasons, "warnings": self.warnings}


def eligibility(manifest: DatasetManifest, today: dt.date) -> Eligibility:
    """Whether the dataset may be used by a new training run on `today`, and why not."""
    reasons: list[str] = []
    warnings: list[str] = []
    if manifest.consent is Consent.WITHDRAWN:
        reasons.append("consent has been withdrawn")
    elif manifest.consent is Consent.UNKNOWN:
        warnings.append("consent is unknown")
    if manifest.retention_until is not None and today > manifest.retention_until:
        reasons.append(f"retention expired on {manifest.retention_until.isoformat()}")
    try:
        validate_license_id(manifest.license)
    except InputError as exc:
        reasons.append(str(exc))
    if manifest.license.startswith("LicenseRef-"):
        warnings.append(f"licence {manifest.license} is not on the SPDX list; review its terms")
    return Eligibility(eligible=not reasons, reasons=reasons, warnings=warnings)


# --- building --------------------------------------------------------------------------------


def hash_file(path: Path, label: str | None = None) -> tuple[str, int]:
    """Streaming hex SHA-256 and size of a regular file; refuses files that change meanwhile."""
    name = label or str(path)
    try:
        with path.open("rb") as handle:
            before = os.fstat(handle.fileno())
            if not stat.S_ISREG(before.st_mode):
                raise PathError(f"{name}: not a regular file")
            digest = hashlib.sha256()
            size = 0
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
            after = os.fstat(handle.fileno())
    except OSError as exc:
        raise PathError(f"{name}: cannot read: {exc.strerror or exc}") from exc
    if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns) or (
        size != after.st_size
    ):
        raise ChangedDuringReadError(f"{name}: changed while it was being hashed")
    return digest.hexdigest(), size


def _dataset_files(root: Path) -> Iterator[tuple[str, Path]]:
    """(relative POSIX path, real path) of every file under `root`, sorted, links checked."""
    resolved_root = root.resolve()

    def walk(folder: Path, prefix: PurePosixPath | None) -> Iterator[tuple[str, Path]]:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            raise PathError(f"{folder}: cannot list: {exc.strerror or exc}") from exc
        for entry in entries:
            relative = PurePosixPath(entry.name) if prefix is None else prefix / entry.name
            label = relative.as_posix()
            if any(ord(c) < 32 for c in label) or "\\" in label:
                raise InputError(f"{label!r}: file names with control characters or '\\'")
            path = Path(entry.path)
            if entry.is_symlink():
                target = path.resolve()
                if not target.is_relative_to(resolved_root):
                    raise SymlinkError(f"{label}: symbolic link leaves the dataset folder")
                if not target.is_file():
                    raise SymlinkError(f"{label}: symbolic link to something other than a file")
                yield label, target
            elif entry.is_dir(follow_symlinks=False):
                yield from walk(path, relative)
            elif entry.is_file(follow_symlinks=False):
                yield label, path
            else:
                raise PathError(f"{label}: not a regular file or folder")

    yield from walk(root, None)


def build_dataset_manifest(
    path: Path,
    *,
    name: str,
    license_id: str,
    source: str,
    consent: Consent | str = Consent.UNKNOWN,
    retention_until: dt.date | str | None = None,
    owner: str | None = None,
    labeling_qa: Path | None = None,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
) -> DatasetManifest:
    """Hash a dataset file or folder and validate its governance facts into a manifest."""
    validate_dataset_name(name)
    license_id = validate_license_id(license_id)
    source_text = _text(source, "dataset source") or ""
    owner = _text(owner, "dataset owner", optional=True)
    consent = consent if isinstance(consent, Consent) else parse_consent(consent)
    if isinstance(retention_until, str):
        retention_until = parse_retention_date(retention_until)
    qa_digest = hash_file(labeling_qa)[0] if labeling_qa is not None else None

    if path.is_symlink() and not path.exists():
        raise PathError(f"{path}: dangling symbolic link")
    if path.is_file():
        listed = [(path.name, path)]
    elif path.is_dir():
        listed = list(_dataset_files(path))
    elif path.exists():
        raise PathError(f"{path}: not a regular file or folder")
    else:
        raise PathError(f"{path}: no such file or folder")
    if not listed:
        raise InputError(f"{path}: the dataset folder has no files")

    files = []
    for relative, real in listed:
        before = _stat_key(real, relative)
        sha256, size = hash_file(real, relative)
        record_format = record_format_of(PurePosixPath(relative))
        roots = (
            compute_record_roots(
                real, record_format, label=relative, max_record_bytes=max_record_bytes
            )
            if record_format is not None
            else None
        )
        if _stat_key(real, relative) != before:
            raise ChangedDuringReadError(f"{relative}: changed while it was being read")
        files.append(DatasetFile(path=relative, sha256=sha256, size=size, records=roots))
    return DatasetManifest(
        name=name,
        files=tuple(files),
        license=license_id,
        source=source_text,
        consent=consent,
        retention_until=retention_until,
        owner=owner,
        labeling_qa_digest=qa_digest,
    )


def _stat_key(path: Path, label: str) -> tuple[int, int, int]:
    try:
        st = path.stat()
    except OSError as exc:
        raise PathError(f"{label}: cannot read: {exc.strerror or exc}") from exc
    return st.st_size, st.st_mtime_ns, st.st_ino
