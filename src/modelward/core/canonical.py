"""Canonical JSON (RFC 8785, JCS) for every payload modelward signs or hashes.

Byte-identical for equal values in every run and under every PYTHONHASHSEED. Does not parse.
"""

from __future__ import annotations

import hashlib
from typing import Any

import rfc8785

from modelward.errors import InputError


def canonical_json(value: Any) -> bytes:
    """Return the RFC 8785 serialisation of `value` (dicts, lists, str, int, float, bool, None)."""
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise InputError(f"value cannot be written as canonical JSON: {exc}") from exc


def canonical_digest(value: Any) -> str:
    """Hex SHA-256 of the canonical JSON of `value`."""
    return hashlib.sha256(canonical_json(value)).hexdigest()
