"""in-toto Statement v1: subjects, predicate type and predicate, in canonical JSON.

Builds and parses statements; says nothing about who signed them (see `dsse`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from modelward.core.canonical import canonical_json
from modelward.errors import SignatureFormatError

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"


SCAN_PREDICATE_TYPE = "https://modelward.dev/attestations/scan/v1"
"""The predicate type of the registry's scan attestations (`services.ingest` writes them)."""


@dataclass(frozen=True)
class Subject:
    name: str
    digest: tuple[tuple[str, str], ...]  # (algorithm, hex) pairs, sorted

    @classmethod
    def of(cls, name: str, **digests: str) -> Subject:
        return cls(name=name, digest=tuple(sorted(digests.items())))

    def digest_for(self, algorithm: str) -> str | None:
        return dict(self.digest).get(algorithm)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "digest": dict(self.digest)}


@dataclass(frozen=True)
class Statement:
    subjects: tuple[Subject, ...]
    predicate_type: str
    predicate: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "_type": STATEMENT_TYPE,
            "subject": [s.to_dict() for s in self.subjects],
            "predicateType": self.predicate_type,
            "predicate": self.predicate,
        }

    def to_bytes(self) -> bytes:
        """Canonical (RFC 8785) bytes: the DSSE payload."""
        return canonical_json(self.to_dict())

    @classmethod
    def from_bytes(cls, payload: bytes) -> Statement:
        try:
            data = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SignatureFormatError(f"statement payload is not JSON: {exc}") from exc
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Any) -> Statement:
        if not isinstance(data, dict):
            raise SignatureFormatError("statement is not a JSON object")
        if data.get("_type") != STATEMENT_TYPE:
            raise SignatureFormatError(
                f"statement type is {data.get('_type')!r}, expected {STATEMENT_TYPE}"
            )
        raw_subjects = data.get("subject")
        if not isinstance(raw_subjects, list) or not raw_subjects:
            raise SignatureFormatError("statement has no subject")
        subjects = []
        for raw in raw_subjects:
            if not isinstance(raw, dict) or not isinstance(raw.get("digest"), dict):
                raise SignatureFormatError("statement subject has no digest")
            digest = raw["digest"]
            if not all(isinstance(k, str) and isinstance(v, str) for k, v in digest.items()):
                raise SignatureFormatError("statement subject digest is not a string map")
            name = raw.get("name", "")
            if not isinstance(name, str):
                raise SignatureFormatError("statement subject name is not a string")
            subjects.append(Subject(name=name, digest=tuple(sorted(digest.items()))))
        predicate_type = data.get("predicateType")
        if not isinstance(predicate_type, str):
            raise SignatureFormatError("statement has no predicateType")
        predicate = data.get("predicate", {})
        if not isinstance(predicate, dict):
            raise SignatureFormatError("statement predicate is not a JSON object")
        return cls(subjects=tuple(subjects), predicate_type=predicate_type, predicate=predicate)
