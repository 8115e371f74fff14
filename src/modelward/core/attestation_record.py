"""One stored attestation as read from the `attestations` table (or an evidence bundle): the
document exactly as stored and the digest recorded for it. Nothing here verifies it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AttestationRecord:
    id: int
    version_id: int
    kind: str
    document: str
    digest: str
    created_at: str
    created_by: str
