"""Exported ledger proofs checked offline with only the ledger's public key: an event's
tlog-proof tied to a trusted checkpoint (same tree, or via an exported consistency proof), and
every tampering a stranger might be handed: a flipped proof byte, a checkpoint from another log
or key, a swapped consistency proof, a split view, a truncated log."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from tests.unit.registry.conftest import Registry

from modelward.core.checkpoint import (
    Checkpoint,
    NoteVerifier,
    open_checkpoint,
    parse_signed_note,
    parse_tlog_proof,
    sign_checkpoint,
)
from modelward.core.consistency import parse_consistency_proof
from modelward.core.cosignature import CosignerKey, add_signatures, cosign
from modelward.errors import (
    InputError,
    NoteFormatError,
    ProofError,
    SignatureMismatchError,
    SplitViewError,
    VerificationError,
)
from modelward.services.context import open_registry
from modelward.services.offline_proofs import (
    verify_consistency_file,
    verify_event_proof,
)
from modelward.services.registry_init import initialize_registry
from modelward.storage.metadata.ledger_repository import LedgerRepository


def _grow(registry: Registry, count: int) -> None:
    with registry.context.database.transaction() as conn:
        repo = LedgerRepository(conn)
        for number in range(count):
            repo.append("alice", "test.event", f"thing:{number}", {"n": number}, datetime.now(UTC))


def _public(registry: Registry) -> NoteVerifier:
    return registry.audit().verifier


def test_proof_verifies_against_its_own_and_the_same_checkpoint(registry: Registry) -> None:
    _grow(registry, 4)
    audit = registry.audit()
    proof = audit.proof(2)
    result = verify_event_proof(proof, registry.context.ledger_key.public_key())
    assert result.anchored == "embedded"
    assert result.event() is not None and result.event()["seq"] == 2  # type: ignore[index]
    same = parse_tlog_proof(proof).checkpoint
    assert verify_event_proof(proof, _public(registry), checkpoint_text=same).anchored == "same"


def test_newer_checkpoint_needs_a_consistency_proof(registry: Registry) -> None:
    _grow(registry, 3)
    audit = registry.audit()
    proof = audit.proof(1)
    _grow(registry, 5)
    newer = audit.checkpoint()
    with pytest.raises(VerificationError, match="consistency proof"):
        verify_event_proof(proof, _public(registry), checkpoint_text=newer)
    embedded = parse_tlog_proof(proof).checkpoint
    consistency = audit.consistency(embedded, newer)
    result = verify_event_proof(
        proof, _public(registry), checkpoint_text=newer, consistency_text=consistency
    )
    assert result.anchored == "consistent"
    assert result.trusted is not None and result.trusted.size == 9
    # also the other way round: a trusted older checkpoint, a proof under a newer one
    old_trusted = embedded
    late_proof = audit.proof(7)
    late_embedded = parse_tlog_proof(late_proof).checkpoint
    back = audit.consistency(old_trusted, late_embedded)
    assert (
        verify_event_proof(
            late_proof, _public(registry), checkpoint_text=old_trusted, consistency_text=back
        ).anchored
        == "consistent"
    )


def test_swapped_consistency_proof_is_refused(registry: Registry) -> None:
    _grow(registry, 3)
    audit = registry.audit()
    proof = audit.proof(1)
    _grow(registry, 2)
    middle = audit.checkpoint()
    _grow(registry, 2)
    newest = audit.checkpoint()
    # a true consistency proof, but between other checkpoints than the two in question
    unrelated = audit.consistency(middle, newest)
    with pytest.raises(ProofError, match="not between"):
        verify_event_proof(
            proof, _public(registry), checkpoint_text=newest, consistency_text=unrelated
        )


def test_flipped_proof_byte_is_refused(registry: Registry) -> None:
    _grow(registry, 6)
    proof = registry.audit().proof(3)
    lines = proof.split("\n")
    at = next(i for i, line in enumerate(lines) if line.startswith("index ")) + 1
    raw = bytearray(base64.b64decode(lines[at]))
    raw[0] ^= 0x80
    lines[at] = base64.b64encode(bytes(raw)).decode()
    with pytest.raises(ProofError):
        verify_event_proof("\n".join(lines), _public(registry))


def test_changed_event_data_is_refused(registry: Registry) -> None:
    _grow(registry, 6)
    parsed = parse_tlog_proof(registry.audit().proof(3))
    forged = type(parsed)(
        parsed.index,
        parsed.hashes,
        parsed.checkpoint,
        parsed.extra.replace(b"test.event", b"test.other") if parsed.extra else None,
    )
    with pytest.raises(ProofError):
        verify_event_proof(forged.to_text(), _public(registry))


def test_checkpoint_from_another_log_or_key_is_refused(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _grow(registry, 2)
    proof = registry.audit().proof(1)
    other_home = tmp_path / "other"
    initialize_registry(other_home)
    other = open_registry(other_home)
    try:
        from modelward.services.audit import AuditService

        foreign_audit = AuditService(other.database, other.ledger_key, other.origin)
        foreign_cp = foreign_audit.checkpoint()
        foreign_key = other.ledger_key.public_key()
    finally:
        other.close()
    # the other log's checkpoint, with our key: not signed by us
    with pytest.raises(SignatureMismatchError, match="given checkpoint"):
        verify_event_proof(proof, _public(registry), checkpoint_text=foreign_cp)
    # our proof, checked with the other log's key
    with pytest.raises(SignatureMismatchError):
        verify_event_proof(proof, foreign_key)
    # the other log's key under our origin name
    with pytest.raises(SignatureMismatchError):
        verify_event_proof(
            proof, NoteVerifier.from_public_key(registry.context.origin, foreign_key)
        )


def test_split_view_between_proof_and_checkpoint_is_named(registry: Registry) -> None:
    _grow(registry, 4)
    proof = registry.audit().proof(2)
    embedded = open_checkpoint(parse_tlog_proof(proof).checkpoint, _public(registry))
    forged = sign_checkpoint(
        Checkpoint(embedded.origin, embedded.size, bytes(32)),
        embedded.origin,
        registry.context.ledger_key,
    )
    with pytest.raises(SplitViewError, match="split view"):
        verify_event_proof(proof, _public(registry), checkpoint_text=forged)


def test_consistency_export_refuses_foreign_or_forged_checkpoints(registry: Registry) -> None:
    _grow(registry, 4)
    audit = registry.audit()
    old = audit.checkpoint()
    forged = sign_checkpoint(
        Checkpoint(audit.origin, 3, bytes(32)), audit.origin, registry.context.ledger_key
    )
    with pytest.raises(ProofError, match="not of this log's history"):
        audit.consistency(forged)
    stranger = sign_checkpoint(
        Checkpoint(audit.origin, 3, bytes(32)), audit.origin, Ed25519PrivateKey.generate()
    )
    with pytest.raises(SignatureMismatchError):
        audit.consistency(stranger)
    _grow(registry, 1)
    newer = audit.checkpoint()
    with pytest.raises(InputError, match="newer"):
        audit.consistency(newer, old)
    text = audit.consistency(old)
    old_cp, new_cp = verify_consistency_file(text, registry.context.ledger_key.public_key())
    assert (old_cp.size, new_cp.size) == (5, 6)
    assert parse_consistency_proof(text).sizes() == (5, 6)


def test_consistency_file_from_a_truncated_log_cannot_be_made(registry: Registry) -> None:
    _grow(registry, 5)
    audit = registry.audit()
    newest = audit.checkpoint()
    registry.sql("DELETE FROM ledger_events WHERE seq >= 4")
    registry.sql("DELETE FROM ledger_nodes WHERE idx * (1 << level) + (1 << level) > 4")
    with pytest.raises(ProofError, match="larger than the log"):
        audit.consistency(audit.checkpoint(), newest)


def test_witness_quorum_on_the_trusted_checkpoint(registry: Registry) -> None:
    _grow(registry, 3)
    audit = registry.audit()
    proof = audit.proof(1)
    embedded = parse_tlog_proof(proof).checkpoint
    w1 = Ed25519PrivateKey.generate()
    w2 = Ed25519PrivateKey.generate()
    k1 = CosignerKey.from_public_key("w.example/1", w1.public_key())
    k2 = CosignerKey.from_public_key("w.example/2", w2.public_key())
    note = parse_signed_note(embedded)
    cosigned = add_signatures(note, [cosign(note.text, k1.name, w1, 100)]).to_text()
    result = verify_event_proof(
        proof,
        _public(registry),
        checkpoint_text=cosigned,
        witness_keys=[k1, k2],
        witnesses_required=1,
    )
    assert result.witnesses is not None
    assert [c.name for c in result.witnesses.vouched] == ["w.example/1"]
    with pytest.raises(VerificationError, match="2 required"):
        verify_event_proof(
            proof,
            _public(registry),
            checkpoint_text=cosigned,
            witness_keys=[k1, k2],
            witnesses_required=2,
        )
    with pytest.raises(InputError):
        verify_event_proof(proof, _public(registry), witness_keys=[k1], witnesses_required=2)


def test_malformed_proof_files_are_input_errors(registry: Registry) -> None:
    for bad in ("", "c2sp.org/tlog-proof@v1\nindex 01\n\nx\n", "not a proof\n"):
        with pytest.raises(NoteFormatError):
            verify_event_proof(bad, _public(registry))
    with pytest.raises(InputError, match="consistency proof needs"):
        verify_event_proof(registry.audit().proof(0), _public(registry), consistency_text="x")
