"""Signing and verifying the in-toto statements of this package in DSSE envelopes.

Shared by provenance, evaluation and reproduction attestations: sign a statement with a Signer,
parse an envelope from untrusted bytes, and verify it against trusted Verifiers, a predicate type
and an expected subject digest. Does not choose keys or store envelopes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from modelward.core.dsse import IN_TOTO_PAYLOAD_TYPE, Envelope
from modelward.core.intoto import Statement
from modelward.errors import InputError, SignatureFormatError, SignatureMismatchError
from modelward.signing.keys import Signer, Verifier

MAX_ENVELOPE_BYTES = 16 * 1024 * 1024


def sign_statement(statement: Statement, signer: Signer) -> Envelope:
    return Envelope.sign(IN_TOTO_PAYLOAD_TYPE, statement.to_bytes(), signer.sign, signer.keyid)


def parse_envelope(data: bytes | str | dict[str, Any] | Envelope) -> Envelope:
    """An envelope from its JSON bytes or text, a parsed dict, or an Envelope."""
    if isinstance(data, Envelope):
        return data
    if isinstance(data, bytes | str):
        if len(data) > MAX_ENVELOPE_BYTES:
            raise SignatureFormatError("the attestation is larger than 16 MiB")
        try:
            data = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SignatureFormatError(f"the attestation is not JSON: {exc}") from exc
    return Envelope.from_dict(data)


def verify_envelope(
    data: bytes | str | dict[str, Any] | Envelope,
    trusted: Sequence[Verifier],
    *,
    predicate_type: str,
    expected_sha256: str | None,
    what: str,
) -> Statement:
    """The statement inside a DSSE envelope signed by one of `trusted`, of `predicate_type`,
    whose subject includes `expected_sha256` (when given). Raises SignatureFormatError for a
    malformed or unsigned envelope, SignatureMismatchError when no trusted key signed it, and
    InputError for the wrong predicate type or subject."""
    envelope = parse_envelope(data)
    if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE:
        raise SignatureFormatError(
            f"{what}: payload type is {envelope.payload_type!r}, expected {IN_TOTO_PAYLOAD_TYPE}"
        )
    if not trusted:
        raise SignatureMismatchError(f"{what}: no trusted keys were given to verify it with")
    message = envelope.pae()
    signed = any(
        verifier.is_valid(signature.sig, message)
        for signature in envelope.signatures
        for verifier in trusted
        if not signature.keyid or signature.keyid == verifier.keyid
    )
    if not signed:
        known = {v.keyid for v in trusted}
        keyids = [s.keyid for s in envelope.signatures]
        if keyids and all(k and k not in known for k in keyids):
            raise SignatureMismatchError(
                f"{what}: signed by an unknown key ({', '.join(k[:16] for k in keyids)})"
            )
        raise SignatureMismatchError(f"{what}: the signature does not verify with a trusted key")
    statement = Statement.from_bytes(envelope.payload)
    if statement.predicate_type != predicate_type:
        raise InputError(
            f"{what}: predicate type is {statement.predicate_type!r}, expected {predicate_type}"
        )
    if expected_sha256 is not None:
        subjects = [s.digest_for("sha256") for s in statement.subjects]
        if expected_sha256 not in subjects:
            shown = ", ".join(f"sha256:{d}" for d in subjects if d) or "none"
            raise InputError(
                f"{what}: the statement is about {shown}, not sha256:{expected_sha256}"
            )
    return statement
