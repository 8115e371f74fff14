"""Reproducibility checks: compare a rebuilt bundle's files with a version's, and attest it.

`compare_file_digests` takes two maps of relative path → hex digest (the version's manifest and
the re-run's output) and reports identical, added, removed and changed files. The result becomes
an in-toto statement about the version's root digest with predicate type
`https://modelward.dev/reproduction/v1`. Does not hash files or read the clock: the caller
passes digests and the check time.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from modelward.core.dsse import Envelope
from modelward.core.intoto import Statement, Subject
from modelward.errors import InputError
from modelward.provenance._attestations import sign_statement, verify_envelope
from modelward.provenance.slsa import format_time, parse_time
from modelward.signing.keys import Signer, Verifier

REPRODUCTION_V1 = "https://modelward.dev/reproduction/v1"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _names(value: Any, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputError(f"reproduction '{what}' is not a list of file names")
    return tuple(value)


@dataclass(frozen=True)
class ReproductionResult:
    expected_root: str  # the version's root digest
    rebuilt_root: str  # the re-run's root digest
    unchanged: tuple[str, ...]
    added: tuple[str, ...]  # in the rebuild only
    removed: tuple[str, ...]  # in the version only
    changed: tuple[str, ...]  # in both, with different digests

    @property
    def identical(self) -> bool:
        return not (self.added or self.removed or self.changed)

    def describe(self) -> list[str]:
        return (
            [f"added: {name}" for name in self.added]
            + [f"removed: {name}" for name in self.removed]
            + [f"changed: {name}" for name in self.changed]
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "identical": self.identical,
            "expectedRoot": self.expected_root,
            "rebuiltRoot": self.rebuilt_root,
            "unchanged": list(self.unchanged),
            "added": list(self.added),
            "removed": list(self.removed),
            "changed": list(self.changed),
        }

    @classmethod
    def from_dict(cls, data: Any) -> ReproductionResult:
        if not isinstance(data, dict):
            raise InputError("reproduction result is not a JSON object")
        roots = [data.get("expectedRoot"), data.get("rebuiltRoot")]
        if not all(isinstance(r, str) and _HEX64.match(r) for r in roots):
            raise InputError("reproduction roots are not hex SHA-256 digests")
        result = cls(
            expected_root=data["expectedRoot"],
            rebuilt_root=data["rebuiltRoot"],
            unchanged=_names(data.get("unchanged"), "unchanged"),
            added=_names(data.get("added"), "added"),
            removed=_names(data.get("removed"), "removed"),
            changed=_names(data.get("changed"), "changed"),
        )
        if data.get("identical") is not result.identical:
            raise InputError("reproduction 'identical' does not agree with its file lists")
        return result


def _check_digests(files: Mapping[str, str], what: str) -> None:
    for name, digest in files.items():
        if not isinstance(name, str) or not name:
            raise InputError(f"{what}: a file name is empty")
        if not isinstance(digest, str) or not _HEX64.match(digest):
            raise InputError(f"{what}: digest of {name!r} is not a hex SHA-256")


def compare_file_digests(
    expected: Mapping[str, str],
    rebuilt: Mapping[str, str],
    *,
    expected_root: str,
    rebuilt_root: str,
) -> ReproductionResult:
    """Compare the version's files (`expected`) with a rebuild's (`rebuilt`), name by name."""
    _check_digests(expected, "version")
    _check_digests(rebuilt, "rebuild")
    for root in (expected_root, rebuilt_root):
        if not _HEX64.match(root):
            raise InputError("root digests must be hex SHA-256")
    both = set(expected) & set(rebuilt)
    return ReproductionResult(
        expected_root=expected_root,
        rebuilt_root=rebuilt_root,
        unchanged=tuple(sorted(n for n in both if expected[n] == rebuilt[n])),
        added=tuple(sorted(set(rebuilt) - set(expected))),
        removed=tuple(sorted(set(expected) - set(rebuilt))),
        changed=tuple(sorted(n for n in both if expected[n] != rebuilt[n])),
    )


@dataclass(frozen=True)
class Reproduction:
    result: ReproductionResult
    checked_on: dt.datetime
    checker: str
    provenance_digest: str | None = None  # sha256 of the provenance envelope that was re-run

    def to_predicate(self) -> dict[str, Any]:
        predicate = {
            **self.result.to_dict(),
            "checkedOn": format_time(self.checked_on),
            "checker": self.checker,
        }
        if self.provenance_digest:
            predicate["provenanceDigest"] = {"sha256": self.provenance_digest}
        return predicate

    @classmethod
    def from_predicate(cls, predicate: Any) -> Reproduction:
        if not isinstance(predicate, dict):
            raise InputError("reproduction predicate is not a JSON object")
        checker = predicate.get("checker")
        if not isinstance(checker, str) or not checker:
            raise InputError("reproduction predicate has no checker")
        provenance = predicate.get("provenanceDigest")
        provenance_digest = None
        if provenance is not None:
            digest = provenance.get("sha256") if isinstance(provenance, dict) else None
            if not isinstance(digest, str) or not _HEX64.match(digest):
                raise InputError("reproduction provenanceDigest is not a hex SHA-256")
            provenance_digest = digest
        return cls(
            result=ReproductionResult.from_dict(predicate),
            checked_on=parse_time(predicate.get("checkedOn"), "checkedOn"),
            checker=checker,
            provenance_digest=provenance_digest,
        )


def reproduction_statement(reproduction: Reproduction, model_name: str) -> Statement:
    return Statement(
        subjects=(Subject.of(model_name, sha256=reproduction.result.expected_root),),
        predicate_type=REPRODUCTION_V1,
        predicate=reproduction.to_predicate(),
    )


def sign_reproduction(statement: Statement, signer: Signer) -> Envelope:
    if statement.predicate_type != REPRODUCTION_V1:
        raise InputError(f"not a reproduction statement: {statement.predicate_type}")
    return sign_statement(statement, signer)


def verify_reproduction(
    envelope: bytes | str | dict[str, Any] | Envelope,
    trusted: Sequence[Verifier],
    expected_root_digest: str | None,
) -> Reproduction:
    statement = verify_envelope(
        envelope,
        trusted,
        predicate_type=REPRODUCTION_V1,
        expected_sha256=expected_root_digest,
        what="reproduction",
    )
    return Reproduction.from_predicate(statement.predicate)
