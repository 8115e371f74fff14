"""C2SP tlog-cosignature (Ed25519, `cosignature/v1`): witness keys, cosigning and verifying.

- A cosigner key is an Ed25519 key under a name; its key id is the first 4 bytes of
  SHA-256(name ‖ 0x0A ‖ 0x04 ‖ public key), and its vkey reads `name+hexid+base64(0x04‖key)`.
- A cosignature is a signed-note signature line whose signature is `timestamp (u64, big-endian)
  ‖ Ed25519 signature` over `cosignature/v1\\ntime <timestamp>\\n` followed by the checkpoint's
  note body (with extension lines, without signature lines).

Pure: keys, notes and the current time are passed in. Does not talk to witnesses (see
`services.witnessing`) or decide what a witness accepts (see `core.witness_protocol`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from modelward.core.checkpoint import NoteSignature, SignedNote, parse_checkpoint_body
from modelward.errors import NoteFormatError, SignatureMismatchError

COSIGNATURE_TYPE = 0x04
COSIGNATURE_HEADER = "cosignature/v1"
MAX_TIMESTAMP = (1 << 63) - 1
_HEX_KEY_ID = re.compile(r"[0-9a-f]{8}")


def cosigner_key_id(name: str, public_key: bytes) -> bytes:
    """The 4-byte key id of an Ed25519 cosigner key (signature type 0x04)."""
    return hashlib.sha256(
        name.encode("utf-8") + b"\n" + bytes([COSIGNATURE_TYPE]) + public_key
    ).digest()[:4]


def _check_name(name: str) -> None:
    if not name or "+" in name or any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise NoteFormatError(f"cosigner name {name!r} is empty or contains '+' or whitespace")


def _strict_b64(text: str, what: str) -> bytes:
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise NoteFormatError(f"{what} is not valid base64") from exc
    if base64.b64encode(data).decode("ascii") != text:
        raise NoteFormatError(f"{what} is not canonical base64")
    return data


@dataclass(frozen=True)
class CosignerKey:
    """A witness's Ed25519 public key under its name (the verifying half of a cosigner)."""

    name: str
    public_key: bytes

    def __post_init__(self) -> None:
        _check_name(self.name)
        if len(self.public_key) != 32:
            raise NoteFormatError("an Ed25519 cosigner public key is 32 bytes")

    @classmethod
    def from_public_key(cls, name: str, key: Ed25519PublicKey) -> CosignerKey:
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return cls(name, raw)

    @property
    def key_id(self) -> bytes:
        return cosigner_key_id(self.name, self.public_key)

    def vkey(self) -> str:
        """`name+hexid+base64(0x04‖key)`, the verifier-key text witnesses publish."""
        encoded = base64.b64encode(bytes([COSIGNATURE_TYPE]) + self.public_key).decode("ascii")
        return f"{self.name}+{self.key_id.hex()}+{encoded}"

    @classmethod
    def from_vkey(cls, text: str) -> CosignerKey:
        parts = text.strip().split("+", 2)
        if len(parts) != 3:
            raise NoteFormatError("a witness vkey reads NAME+HEXID+BASE64KEY")
        name, hex_id, encoded = parts
        _check_name(name)
        if not _HEX_KEY_ID.fullmatch(hex_id):
            raise NoteFormatError("a witness vkey id is 8 lowercase hex digits")
        raw = _strict_b64(encoded, "witness vkey")
        if len(raw) != 33 or raw[0] != COSIGNATURE_TYPE:
            raise NoteFormatError(
                "a witness vkey must be an Ed25519 cosignature/v1 key (type 0x04, 32 bytes)"
            )
        key = cls(name, raw[1:])
        if key.key_id.hex() != hex_id:
            raise NoteFormatError(f"witness vkey id {hex_id} does not match its name and key")
        return key

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "vkey": self.vkey()}


def cosigned_message(checkpoint_body: str, timestamp: int) -> bytes:
    """The bytes an Ed25519 cosignature/v1 signs."""
    _check_timestamp(timestamp)
    return f"{COSIGNATURE_HEADER}\ntime {timestamp}\n{checkpoint_body}".encode()


def _check_timestamp(timestamp: int) -> None:
    if isinstance(timestamp, bool) or not isinstance(timestamp, int):
        raise NoteFormatError("a cosignature timestamp is an integer")
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise NoteFormatError(f"cosignature timestamp {timestamp} is out of range")


def cosign(
    checkpoint_body: str, name: str, private_key: Ed25519PrivateKey, timestamp: int
) -> NoteSignature:
    """The cosignature of a checkpoint body by the witness `name`, made at `timestamp`."""
    parse_checkpoint_body(checkpoint_body)
    key = CosignerKey.from_public_key(name, private_key.public_key())
    signature = private_key.sign(cosigned_message(checkpoint_body, timestamp))
    return NoteSignature(name, key.key_id, timestamp.to_bytes(8, "big") + signature)


@dataclass(frozen=True)
class Cosignature:
    """A verified cosignature: who vouched for the checkpoint, and when (POSIX seconds)."""

    name: str
    timestamp: int

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "timestamp": self.timestamp}


def verify_cosignature(
    note: SignedNote, key: CosignerKey, now: int | None = None, max_skew: int = 300
) -> Cosignature:
    """The cosignature by `key` on `note`; SignatureMismatchError if there is none or it does not
    verify, or (when `now` is given) if it is dated more than `max_skew` seconds in the future.
    Every signature line with the key's name and id must verify."""
    matching = [s for s in note.signatures if (s.name, s.key_id) == (key.name, key.key_id)]
    if not matching:
        raise SignatureMismatchError(f"the checkpoint carries no cosignature by {key.name}")
    public = Ed25519PublicKey.from_public_bytes(key.public_key)
    newest = -1
    for sig in matching:
        if len(sig.signature) != 8 + 64:
            raise SignatureMismatchError(f"the cosignature by {key.name} is not 72 bytes")
        timestamp = int.from_bytes(sig.signature[:8], "big")
        if timestamp > MAX_TIMESTAMP:
            raise SignatureMismatchError(f"the cosignature by {key.name} has a bad timestamp")
        try:
            public.verify(sig.signature[8:], cosigned_message(note.text, timestamp))
        except InvalidSignature:
            raise SignatureMismatchError(f"the cosignature by {key.name} does not verify") from None
        if now is not None and timestamp > now + max_skew:
            raise SignatureMismatchError(
                f"the cosignature by {key.name} is dated in the future ({timestamp} > {now})"
            )
        newest = max(newest, timestamp)
    return Cosignature(key.name, newest)


@dataclass(frozen=True)
class WitnessTally:
    """Which of the trusted witnesses cosigned a checkpoint, and what was wrong with the rest.

    Each witness counts once, by its public key: `duplicates` names the trusted keys that were
    the same key as one before them (given twice, or copied under another name) and were not
    counted again."""

    vouched: tuple[Cosignature, ...]
    missing: tuple[str, ...]
    invalid: tuple[str, ...]
    duplicates: tuple[str, ...] = ()

    def summary(self) -> str:
        """`cosigned by N distinct trusted witness key(s): NAMES`, and any duplicates."""
        names = ", ".join(c.name for c in self.vouched) or "none"
        text = f"cosigned by {len(self.vouched)} distinct trusted witness key(s): {names}"
        if self.duplicates:
            text += " (" + "; ".join(self.duplicates) + ")"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "vouched": [c.to_dict() for c in self.vouched],
            "missing": list(self.missing),
            "invalid": list(self.invalid),
            "duplicates": list(self.duplicates),
        }


def tally_cosignatures(
    note: SignedNote, keys: Iterable[CosignerKey], now: int | None = None
) -> WitnessTally:
    """Check `note` against each trusted witness key; a bad cosignature counts as none, and a
    key given more than once (under any name) counts once."""
    vouched: list[Cosignature] = []
    missing: list[str] = []
    invalid: list[str] = []
    duplicates: list[str] = []
    first_name: dict[bytes, str] = {}
    for key in keys:
        if key.public_key in first_name:
            duplicates.append(
                f"{key.name} is the same witness key as {first_name[key.public_key]}: counted once"
            )
            continue
        first_name[key.public_key] = key.name
        if not any((s.name, s.key_id) == (key.name, key.key_id) for s in note.signatures):
            missing.append(key.name)
            continue
        try:
            vouched.append(verify_cosignature(note, key, now))
        except SignatureMismatchError as exc:
            invalid.append(str(exc))
    return WitnessTally(tuple(vouched), tuple(missing), tuple(invalid), tuple(duplicates))


def add_signatures(note: SignedNote, lines: Iterable[NoteSignature]) -> SignedNote:
    """`note` with the given signature lines appended (lines already on it are not repeated)."""
    signatures = list(note.signatures)
    for line in lines:
        if line not in signatures:
            signatures.append(line)
    return SignedNote(note.text, tuple(signatures))
