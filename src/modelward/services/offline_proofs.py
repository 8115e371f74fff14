"""Checking exported ledger proofs offline, with only the log's public key: an event's tlog-proof
tied to a checkpoint the caller trusts, a consistency proof between two checkpoints, and the
witnesses that cosigned a checkpoint. No database, no network.

A tlog-proof is verified against its own embedded checkpoint, which must be signed by the key.
With a trusted checkpoint (`checkpoint_text`), both must be the same tree, or a
`modelward.consistency/v1` proof between exactly those two checkpoints (either order) must show
they are one history; two different roots at one size are a split view. Witness cosignatures
are counted on the trusted checkpoint (else the embedded one).
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
from modelward.errors import InputError, ProofError, SignatureMismatchError, VerificationError
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
            vouched = ", ".join(c.name for c in tally.vouched) or "none"
            raise VerificationError(
                f"the checkpoint is cosigned by {len(tally.vouched)} trusted witness(es) "
                f"({vouched}); {witnesses_required} required"
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
