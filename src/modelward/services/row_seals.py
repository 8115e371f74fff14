"""HMAC seals over rows the server writes outside the ledger (queued jobs and their results,
upload claims): a key derived from the ledger's private key, which only servers hold, so that
someone who can write the database but holds no key cannot forge or change such a row unseen.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from modelward.services.context import RegistryContext


def derived_key(context: RegistryContext, info: bytes) -> bytes:
    """A 32-byte key for one kind of seal (`info` names it), derived from the ledger key."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    raw = context.ledger_key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(raw)


def seal(key: bytes, value: Any) -> str:
    """The hex HMAC-SHA256 of `value` as RFC 8785 canonical JSON."""
    from modelward.core.canonical import canonical_json

    return hmac.new(key, canonical_json(value), hashlib.sha256).hexdigest()


def seal_ok(key: bytes, value: Any, presented: object) -> bool:
    return isinstance(presented, str) and hmac.compare_digest(presented, seal(key, value))
