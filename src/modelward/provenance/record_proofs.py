"""Proofs that a record is, or is not, in a structured dataset file, checked against its roots.

Inclusion: the record's canonical bytes, its position in the file-order record tree and the RFC
9162 audit path to `RecordRoots.root`.

Absence (of a record given by its record hash `t`): every file also has a *sorted tree*, the RFC
9162 tree whose i-th leaf has as data the i-th smallest record hash (leaf hash =
SHA-256(0x00 ‖ record hash)), with root `RecordRoots.sorted_root` and the same size. Because its
leaves are sorted, `t` is absent exactly when it falls strictly between two adjacent leaves:

- a *left* neighbour at sorted position p with hash < t and a *right* neighbour at p + 1 with
  hash > t, each with an audit path to `sorted_root`; or
- at an edge: only a right neighbour at position 0 (t is smaller than every record hash), or only
  a left neighbour at position n - 1 (t is larger than every record hash); or
- an empty file: no neighbours, n = 0, and `sorted_root` is the empty tree's root.

Verification checks both audit paths, the adjacency of the positions, the strict ordering and the
tree size recorded in the manifest. The soundness rests on the sorted tree really being sorted:
that is a property of the manifest, which modelward computes itself and which anyone holding the
files can recompute (`records.compute_record_roots`). Proof construction reads the file;
verification does no I/O.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelward.core import merkle
from modelward.errors import InputError, NotFoundError, ProofError, VerificationError
from modelward.provenance.records import (
    RecordFormat,
    RecordRoots,
    iter_records,
    parse_hex_digest,
    sorted_leaves,
)


def _audit_path(levels: list[list[bytes]], index: int) -> list[bytes]:
    """The RFC 9162 audit path of leaf `index` from `merkle.complete_levels` output."""
    return merkle.inclusion_proof(index, len(levels[0]), lambda level, i: levels[level][i])


def _included(leaf: bytes, index: int, size: int, path: list[bytes], root: bytes) -> bool:
    try:
        merkle.verify_inclusion(index, size, leaf, path, root)
    except ProofError:
        return False
    return True


def _hex_path(value: Any, what: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise InputError(f"{what} is not a list of hex hashes")
    return tuple(parse_hex_digest(item, what) for item in value)


def _non_negative(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InputError(f"{what} is not a non-negative integer")
    return value


@dataclass(frozen=True)
class RecordInclusionProof:
    """A record, where it was found and the audit path from its hash to the file's record root."""

    file: str
    locator: int  # line (JSONL) or data row (CSV, Parquet), 1-based
    index: int  # position in the file-order record tree
    tree_size: int
    record: bytes  # the record's canonical bytes
    audit_path: tuple[str, ...]
    root: str

    @property
    def record_hash(self) -> str:
        return merkle.leaf_hash(self.record).hex()

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "locator": self.locator,
            "index": self.index,
            "treeSize": self.tree_size,
            "record": self.record.decode("utf-8"),
            "recordHash": self.record_hash,
            "auditPath": list(self.audit_path),
            "root": self.root,
        }

    @classmethod
    def from_dict(cls, data: Any) -> RecordInclusionProof:
        if not isinstance(data, dict):
            raise InputError("inclusion proof is not a JSON object")
        record = data.get("record")
        if not isinstance(record, str):
            raise InputError("inclusion proof has no string 'record'")
        file = data.get("file")
        if not isinstance(file, str):
            raise InputError("inclusion proof has no string 'file'")
        return cls(
            file=file,
            locator=_non_negative(data.get("locator"), "inclusion proof 'locator'"),
            index=_non_negative(data.get("index"), "inclusion proof 'index'"),
            tree_size=_non_negative(data.get("treeSize"), "inclusion proof 'treeSize'"),
            record=record.encode("utf-8"),
            audit_path=_hex_path(data.get("auditPath"), "inclusion proof 'auditPath'"),
            root=parse_hex_digest(data.get("root"), "inclusion proof 'root'"),
        )


@dataclass(frozen=True)
class SortedNeighbour:
    """A record hash at `position` in the sorted tree, with its audit path."""

    position: int
    record_hash: str
    audit_path: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "recordHash": self.record_hash,
            "auditPath": list(self.audit_path),
        }

    @classmethod
    def from_dict(cls, data: Any) -> SortedNeighbour:
        if not isinstance(data, dict):
            raise InputError("absence proof neighbour is not a JSON object")
        return cls(
            position=_non_negative(data.get("position"), "neighbour 'position'"),
            record_hash=parse_hex_digest(data.get("recordHash"), "neighbour 'recordHash'"),
            audit_path=_hex_path(data.get("auditPath"), "neighbour 'auditPath'"),
        )


@dataclass(frozen=True)
class RecordAbsenceProof:
    """Two adjacent sorted-tree leaves (or one at an edge) that bracket the absent record hash."""

    file: str
    record_hash: str
    tree_size: int
    sorted_root: str
    left: SortedNeighbour | None
    right: SortedNeighbour | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "recordHash": self.record_hash,
            "treeSize": self.tree_size,
            "sortedRoot": self.sorted_root,
            "left": self.left.to_dict() if self.left else None,
            "right": self.right.to_dict() if self.right else None,
        }

    @classmethod
    def from_dict(cls, data: Any) -> RecordAbsenceProof:
        if not isinstance(data, dict):
            raise InputError("absence proof is not a JSON object")
        file = data.get("file")
        if not isinstance(file, str):
            raise InputError("absence proof has no string 'file'")
        left, right = data.get("left"), data.get("right")
        return cls(
            file=file,
            record_hash=parse_hex_digest(data.get("recordHash"), "absence proof 'recordHash'"),
            tree_size=_non_negative(data.get("treeSize"), "absence proof 'treeSize'"),
            sorted_root=parse_hex_digest(data.get("sortedRoot"), "absence proof 'sortedRoot'"),
            left=None if left is None else SortedNeighbour.from_dict(left),
            right=None if right is None else SortedNeighbour.from_dict(right),
        )


def prove_record(
    path: Path,
    locator: int,
    record_format: RecordFormat | None = None,
    *,
    label: str | None = None,
) -> RecordInclusionProof:
    """Prove that the record at `locator` (JSONL line, CSV/Parquet data row) is in the file."""
    name = label or str(path)
    hashes: list[bytes] = []
    found = None
    for record in iter_records(path, record_format, label=name):
        hashes.append(record.record_hash)
        if record.locator == locator:
            found = record
    if found is None:
        raise NotFoundError(f"{name}: no record at line/row {locator}")
    levels = merkle.complete_levels(hashes)
    return RecordInclusionProof(
        file=name,
        locator=found.locator,
        index=found.index,
        tree_size=len(hashes),
        record=found.data,
        audit_path=tuple(h.hex() for h in _audit_path(levels, found.index)),
        root=merkle.root_from_leaves(hashes).hex(),
    )


def verify_record_inclusion(proof: RecordInclusionProof, roots: RecordRoots) -> None:
    """Raise ProofError (a VerificationError) unless `proof` shows its record is in the file."""
    if proof.root != roots.root:
        raise ProofError(
            f"{proof.file}: the proof is for record root {proof.root}, "
            f"the dataset's is {roots.root}"
        )
    if proof.tree_size != roots.count:
        raise ProofError(
            f"{proof.file}: the proof is for {proof.tree_size} records, "
            f"the dataset has {roots.count}"
        )
    path = [bytes.fromhex(h) for h in proof.audit_path]
    leaf = merkle.leaf_hash(proof.record)
    if not _included(leaf, proof.index, proof.tree_size, path, bytes.fromhex(roots.root)):
        raise ProofError(
            f"{proof.file}: the record at line/row {proof.locator} does not verify "
            "against the dataset's record root"
        )


def prove_absence(
    path: Path,
    record_hash: str,
    record_format: RecordFormat | None = None,
    *,
    label: str | None = None,
) -> RecordAbsenceProof:
    """Prove that no record of the file has `record_hash`; VerificationError if one does."""
    name = label or str(path)
    target = bytes.fromhex(parse_hex_digest(record_hash, "record hash"))
    locators: dict[bytes, int] = {}
    hashes: list[bytes] = []
    for record in iter_records(path, record_format, label=name):
        hashes.append(record.record_hash)
        locators.setdefault(record.record_hash, record.locator)
    if target in locators:
        raise VerificationError(
            f"{name}: the record {record_hash} is present (line/row {locators[target]})"
        )
    # Duplicate records stay in the sorted tree; strict ordering around the target still holds.
    ordered = sorted(hashes)
    leaves = sorted_leaves(hashes)
    levels = merkle.complete_levels(leaves)
    position = bisect.bisect_left(ordered, target)

    def neighbour(at: int) -> SortedNeighbour:
        return SortedNeighbour(
            position=at,
            record_hash=ordered[at].hex(),
            audit_path=tuple(h.hex() for h in _audit_path(levels, at)),
        )

    return RecordAbsenceProof(
        file=name,
        record_hash=target.hex(),
        tree_size=len(ordered),
        sorted_root=merkle.root_from_leaves(leaves).hex(),
        left=neighbour(position - 1) if position > 0 else None,
        right=neighbour(position) if position < len(ordered) else None,
    )


def verify_record_absence(proof: RecordAbsenceProof, roots: RecordRoots) -> None:
    """Raise ProofError (a VerificationError) unless `proof` shows its record hash is absent."""
    where = proof.file
    if proof.sorted_root != roots.sorted_root:
        raise ProofError(
            f"{where}: the proof is for sorted root {proof.sorted_root}, "
            f"the dataset's is {roots.sorted_root}"
        )
    size = proof.tree_size
    if size != roots.count:
        raise ProofError(f"{where}: the proof is for {size} records, the dataset has {roots.count}")
    root = bytes.fromhex(roots.sorted_root)
    target = bytes.fromhex(proof.record_hash)
    left, right = proof.left, proof.right
    if size == 0:
        if left or right or root != merkle.EMPTY_ROOT:
            raise ProofError(f"{where}: malformed absence proof for an empty file")
        return
    if left is None and right is None:
        raise ProofError(f"{where}: the absence proof has no neighbours")
    for side in (left, right):
        if side is not None and not _included(
            merkle.leaf_hash(bytes.fromhex(side.record_hash)),
            side.position,
            size,
            [bytes.fromhex(h) for h in side.audit_path],
            root,
        ):
            raise ProofError(
                f"{where}: neighbour at sorted position {side.position} does not verify"
            )
    if left is not None and not bytes.fromhex(left.record_hash) < target:
        raise ProofError(f"{where}: the left neighbour is not smaller than the record")
    if right is not None and not target < bytes.fromhex(right.record_hash):
        raise ProofError(f"{where}: the right neighbour is not larger than the record")
    if left is not None and right is not None and right.position != left.position + 1:
        raise ProofError(f"{where}: the neighbours are not adjacent")
    if left is None and right is not None and right.position != 0:
        raise ProofError(f"{where}: a lone right neighbour must be the first leaf")
    if right is None and left is not None and left.position != size - 1:
        raise ProofError(f"{where}: a lone left neighbour must be the last leaf")
