"""DSSE envelopes (Dead Simple Signing Envelope v1): pre-authentication encoding and the JSON form.

Signing and verifying take callables so this module holds no keys and does no I/O.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from modelward.errors import SignatureFormatError

IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"


def pae(payload_type: str, payload: bytes) -> bytes:
    """The DSSE v1 pre-authentication encoding that is actually signed."""
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(type_bytes), type_bytes, len(payload), payload)


@dataclass(frozen=True)
class EnvelopeSignature:
    sig: bytes
    keyid: str = ""


@dataclass(frozen=True)
class Envelope:
    payload_type: str
    payload: bytes
    signatures: tuple[EnvelopeSignature, ...] = field(default_factory=tuple)

    @classmethod
    def sign(
        cls, payload_type: str, payload: bytes, sign: Callable[[bytes], bytes], keyid: str = ""
    ) -> Envelope:
        signature = EnvelopeSignature(sig=sign(pae(payload_type, payload)), keyid=keyid)
        return cls(payload_type=payload_type, payload=payload, signatures=(signature,))

    def pae(self) -> bytes:
        return pae(self.payload_type, self.payload)

    def to_dict(self) -> dict[str, Any]:
        return {
            "payload": base64.b64encode(self.payload).decode("ascii"),
            "payloadType": self.payload_type,
            "signatures": [
                {"sig": base64.b64encode(s.sig).decode("ascii"), "keyid": s.keyid}
                for s in self.signatures
            ],
        }

    @classmethod
    def from_dict(cls, data: Any) -> Envelope:
        if not isinstance(data, dict):
            raise SignatureFormatError("DSSE envelope is not a JSON object")
        payload_type = data.get("payloadType")
        if not isinstance(payload_type, str):
            raise SignatureFormatError("DSSE envelope has no string 'payloadType'")
        payload = _b64(data.get("payload"), "payload")
        raw_signatures = data.get("signatures")
        if not isinstance(raw_signatures, list) or not raw_signatures:
            raise SignatureFormatError("DSSE envelope has no signatures")
        signatures = []
        for entry in raw_signatures:
            if not isinstance(entry, dict):
                raise SignatureFormatError("DSSE signature entry is not a JSON object")
            keyid = entry.get("keyid") or ""
            if not isinstance(keyid, str):
                raise SignatureFormatError("DSSE signature 'keyid' is not a string")
            signatures.append(EnvelopeSignature(sig=_b64(entry.get("sig"), "sig"), keyid=keyid))
        return cls(payload_type=payload_type, payload=payload, signatures=tuple(signatures))


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise SignatureFormatError(f"DSSE field '{what}' is missing or not a string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SignatureFormatError(f"DSSE field '{what}' is not valid base64") from exc
