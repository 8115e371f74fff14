"""Alert payloads as webhooks receive them: the JSON body, its HMAC signature and headers, and
the retry schedule. Pure: no sockets, no clock.

The body is the RFC 8785 JSON of `{"event", "delivery_id", "sent_at", "payload"}` (the time
and a fresh id are inside what is signed, so a receiver can refuse replays). Headers:

    X-Modelward-Event: canary.rollback
    X-Modelward-Delivery: <delivery id>
    X-Modelward-Key-Id: <the webhook's key id>
    X-Modelward-Signature: sha256=<hex HMAC-SHA256 of the body with the webhook's secret>

A receiver recomputes the HMAC over the raw body bytes with the secret named by the key id and
compares in constant time (`verify_signature`).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from modelward.core.canonical import canonical_json

SIGNATURE_HEADER = "X-Modelward-Signature"
KEY_ID_HEADER = "X-Modelward-Key-Id"
EVENT_HEADER = "X-Modelward-Event"
DELIVERY_HEADER = "X-Modelward-Delivery"
MAX_ATTEMPTS = 5
FIRST_DELAY_S = 0.5
MAX_DELAY_S = 8.0


def alert_body(event: str, delivery_id: str, sent_at: str, payload: Mapping[str, Any]) -> bytes:
    return canonical_json(
        {"event": event, "delivery_id": delivery_id, "sent_at": sent_at, "payload": dict(payload)}
    )


def sign_body(body: bytes, secret: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify_signature(body: bytes, secret: bytes, header: str) -> bool:
    return hmac.compare_digest(sign_body(body, secret), header)


def alert_headers(
    event: str, delivery_id: str, key_id: str, body: bytes, secret: bytes
) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        EVENT_HEADER: event,
        DELIVERY_HEADER: delivery_id,
        KEY_ID_HEADER: key_id,
        SIGNATURE_HEADER: sign_body(body, secret),
    }


def backoff_delays(attempts: int = MAX_ATTEMPTS, first: float = FIRST_DELAY_S) -> list[float]:
    """The waits between attempts: first, 2·first, 4·first, … capped at MAX_DELAY_S."""
    return [min(first * 2**i, MAX_DELAY_S) for i in range(max(attempts - 1, 0))]
