"""Checking exported ledger proofs offline, with only the log's public key: an event's tlog-proof
tied to a checkpoint the caller trusts, a consistency proof between two checkpoints, and the
witnesses that cosigned a checkpoint. No database, no network.

A tlog-proof is verified against its own embedded checkpoint, which must be signed by the key.
With a trusted checkpoint (`checkpoint_text`), both must be the same tree, or a
`modelward.consistency/v1` proof between exactly those two checkpoints (either order) must show
they are one history; two different roots at one size are a split view. Witness cosignatures
are counted on the trusted checkpoint (else the embedded one).

Dataset record proofs (`datasets prove --out`) are checked against record roots the caller
trusts: given explicitly, or read from a dataset manifest pinned by its digest.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from modelward.core.checkpoint import (
    Checkpoint,
    NoteVerifier,
    open_checkpoint,
    parse_checkpoint_body,
    parse_signed_note,
    parse_tlog_proof,
)
from modelward.core.consistency import (
    anchor_checkpoint,
    parse_consistency_proof,
    verify_consistency_proof,
)
from modelward.core.cosignature import CosignerKey, WitnessTally, tally_cosignatures
from modelward.errors import (
    DigestMismatchError,
    InputError,
    ProofError,
    SignatureMismatchError,
    VerificationError,
)
from modelward.provenance.datasets import DatasetManifest
from modelward.provenance.record_proofs import (
    RecordAbsenceProof,
    RecordInclusionProof,
    verify_record_absence,
    verify_record_inclusion,
)
from modelward.provenance.records import RecordFormat, RecordRoots, parse_hex_digest
from modelward.services.audit import ProofCheck, verify_proof_file


@dataclass(frozen=True)
class OfflineProofResult:
    check: ProofCheck
    anchored: str  # "embedded" (no trusted checkpoint given), "same" or "consistent"
    trusted: Checkpoint | None
    witnesses: WitnessTally | None

    def event(self) -> dict[str, Any] | None:
        return _leaf_event(self.check.leaf_data)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": True,
            **self.check.to_dict(),
            "event": self.event(),
            "anchored": self.anchored,
            "trusted_checkpoint": None if self.trusted is None else self.trusted.to_dict(),
            "witnesses": None if self.witnesses is None else self.witnesses.to_dict(),
        }


def _verifier(key: NoteVerifier | Ed25519PublicKey, origin: str) -> NoteVerifier:
    return key if isinstance(key, NoteVerifier) else NoteVerifier.from_public_key(origin, key)


def verify_event_proof(
    proof_text: str | bytes,
    key: NoteVerifier | Ed25519PublicKey,
    *,
    checkpoint_text: str | bytes | None = None,
    consistency_text: str | bytes | None = None,
    origin: str | None = None,
    witness_keys: Sequence[CosignerKey] = (),
    witnesses_required: int = 0,
    now: int | None = None,
) -> OfflineProofResult:
    """See the module docstring. Raises NoteFormatError/InputError for malformed input and a
    VerificationError (naming what failed) for a proof that does not hold."""
    if consistency_text is not None and checkpoint_text is None:
        raise InputError("a consistency proof needs the trusted checkpoint it leads to")
    if witnesses_required > len(witness_keys):
        raise InputError(
            f"{witnesses_required} witnesses required but only {len(witness_keys)} keys given"
        )
    check = verify_proof_file(proof_text, key, None, origin)
    event = _leaf_event(check.leaf_data)
    if event is not None and event.get("seq", check.index) != check.index:
        raise ProofError(f"the proof is for entry {check.index} but its event says {event['seq']}")
    verifier = _verifier(key, origin or check.checkpoint.origin)
    trusted = None
    anchored = "embedded"
    witnessed_note = parse_signed_note(_embedded_checkpoint(proof_text))
    if checkpoint_text is not None:
        try:
            trusted = open_checkpoint(checkpoint_text, verifier, origin or verifier.name)
        except SignatureMismatchError as exc:
            raise SignatureMismatchError(f"the given checkpoint: {exc}") from exc
        consistency = (
            None if consistency_text is None else parse_consistency_proof(consistency_text)
        )
        anchored = anchor_checkpoint(check.checkpoint, trusted, consistency, verifier, origin)
        witnessed_note = parse_signed_note(checkpoint_text)
    tally = None
    if witness_keys:
        tally = tally_cosignatures(witnessed_note, witness_keys, now)
        if len(tally.vouched) < witnesses_required:
            raise VerificationError(
                f"the checkpoint is {tally.summary()}; {witnesses_required} required"
                + ("; " + "; ".join(tally.invalid) if tally.invalid else "")
            )
    return OfflineProofResult(check, anchored, trusted, tally)


def _embedded_checkpoint(proof_text: str | bytes) -> str:
    return parse_tlog_proof(proof_text).checkpoint


def _leaf_event(leaf_data: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(leaf_data)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def verify_consistency_file(
    text: str | bytes, key: NoteVerifier | Ed25519PublicKey, origin: str | None = None
) -> tuple[Checkpoint, Checkpoint]:
    """Check a `modelward.consistency/v1` file offline; returns (old, new)."""
    proof = parse_consistency_proof(text)
    if isinstance(key, NoteVerifier):
        return verify_consistency_proof(proof, key, origin)
    claimed = parse_checkpoint_body(parse_signed_note(proof.new_checkpoint).text).origin
    return verify_consistency_proof(proof, _verifier(key, origin or claimed), origin)


# -- dataset record proofs --------------------------------------------------------------------


@dataclass(frozen=True)
class TrustedRecordRoots:
    """What the caller trusts about a dataset's files: explicit roots, or a dataset manifest
    (pinned by `manifest_digest` when given, as provenance and ML-BOMs record it)."""

    root: str | None = None
    sorted_root: str | None = None
    count: int | None = None
    manifest: dict[str, Any] | None = None
    manifest_digest: str | None = None


@dataclass(frozen=True)
class RecordProofResult:
    kind: str  # "included" or "absent"
    files: tuple[str, ...]
    record_hash: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": True,
            "kind": self.kind,
            "files": list(self.files),
            "recordHash": self.record_hash,
        }


def _roots_for(file: str, trusted: TrustedRecordRoots, proof_count: int) -> RecordRoots:
    if trusted.manifest is not None:
        data = trusted.manifest.get("manifest", trusted.manifest)
        manifest = DatasetManifest.from_dict(data)
        if trusted.manifest_digest is not None:
            expected = trusted.manifest_digest.removeprefix("sha256:")
            if manifest.digest != expected:
                raise DigestMismatchError(
                    f"the dataset manifest's digest is sha256:{manifest.digest}, "
                    f"not sha256:{expected}"
                )
        for entry in manifest.files:
            if entry.path == file:
                if entry.records is None:
                    raise ProofError(f"{file}: the manifest records no record roots for it")
                return entry.records
        raise ProofError(f"{file}: not a file of the dataset manifest")
    # The record format plays no part in verification; the roots and count are what is trusted.
    count = proof_count if trusted.count is None else trusted.count
    root = parse_hex_digest(trusted.root or "0" * 64, "record root")
    sorted_root = parse_hex_digest(trusted.sorted_root or "0" * 64, "sorted root")
    return RecordRoots(RecordFormat.JSONL, count, root, sorted_root)


def verify_record_proof_document(data: Any, trusted: TrustedRecordRoots) -> RecordProofResult:
    """Check a `datasets prove --out` document (or a bare inclusion/absence proof) offline."""
    if not isinstance(data, dict):
        raise InputError("the record proof is not a JSON object")
    if trusted.manifest is None and trusted.root is None and trusted.sorted_root is None:
        raise InputError("give the trusted record root, sorted root or dataset manifest")
    if "proofs" in data or ("recordHash" in data and "record" not in data):
        items = data.get("proofs", [data])
        if not isinstance(items, list) or not items:
            raise InputError("the absence proof document has no proofs")
        proofs = [RecordAbsenceProof.from_dict(item) for item in items]
        if trusted.manifest is None and trusted.sorted_root is None:
            raise InputError("an absence proof is checked against the sorted root (--sorted-root)")
        if len({p.record_hash for p in proofs}) != 1:
            raise InputError("the absence proofs are for different record hashes")
        for absence in proofs:
            verify_record_absence(absence, _roots_for(absence.file, trusted, absence.tree_size))
        return RecordProofResult("absent", tuple(p.file for p in proofs), proofs[0].record_hash)
    inclusion = RecordInclusionProof.from_dict(data.get("proof", data))
    if trusted.manifest is None and trusted.root is None:
        raise InputError("an inclusion proof is checked against the record root (--root)")
    verify_record_inclusion(inclusion, _roots_for(inclusion.file, trusted, inclusion.tree_size))
    return RecordProofResult("included", (inclusion.file,), inclusion.record_hash)
