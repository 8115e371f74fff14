"""The canonical leaf of a ledger event: what its Merkle leaf hash is computed over. Pure, so
that offline verifiers need no database code."""

from __future__ import annotations

from modelward.core.canonical import canonical_json

LEAF_TYPE = "modelward.ledger.event/v1"


def event_leaf_data(
    seq: int, recorded_at: str, actor: str, action: str, subject: str, digest: str
) -> bytes:
    """The canonical JSON an event's leaf hash is computed over (RFC 8785)."""
    return canonical_json(
        {
            "type": LEAF_TYPE,
            "seq": seq,
            "recorded_at": recorded_at,
            "actor": actor,
            "action": action,
            "subject": subject,
            "details_digest": digest,
        }
    )
