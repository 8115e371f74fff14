"""C2SP signed notes (Ed25519), tlog checkpoints and tlog-proofs: build, parse strictly, verify.

- signed note (c2sp.org/signed-note): UTF-8 text ending in a newline, a blank line, then lines
  `— <key name> base64(key id ‖ signature)`; Ed25519 key ids are the first 4 bytes of
  SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key) and verifier keys read `name+hexid+base64(0x01‖key)`.
- checkpoint (c2sp.org/tlog-checkpoint): origin line, decimal tree size, base64 root hash, then
  optional extension lines.
- tlog-proof (c2sp.org/tlog-proof): `c2sp.org/tlog-proof@v1`, optional `extra <base64>`,
  `index <n>`, one base64 hash per line, a blank line, then the signed checkpoint verbatim.

Parsing rejects anything not in canonical form (leading zeros, non-canonical base64, stray or
missing lines, control characters, oversize input) with `NoteFormatError`; a signature that does
not verify is a `SignatureMismatchError`. Pure: keys are passed in; no files, clocks or storage.
Does not implement witness cosignatures (they are ignored as signatures by unknown keys).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from modelward.core import merkle
from modelward.errors import NoteFormatError, ProofError, SignatureMismatchError

ED25519_SIGNATURE_TYPE = 0x01
MAX_NOTE_BYTES = 1 << 20
MAX_SIGNATURES = 100
MAX_PROOF_HASHES = 64
TLOG_PROOF_HEADER = "c2sp.org/tlog-proof@v1"
_SIGNATURE_PREFIX = "— "
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,19}")
_HEX_KEY_ID = re.compile(r"[0-9a-f]{8}")


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64decode(text: str, what: str) -> bytes:
    """Strict standard base64: right alphabet, right padding, canonical trailing bits."""
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise NoteFormatError(f"{what} is not valid base64") from exc
    if _b64encode(data) != text:
        raise NoteFormatError(f"{what} is not canonical base64")
    return data


def _decimal(text: str, what: str) -> int:
    if not _DECIMAL.fullmatch(text):
        raise NoteFormatError(f"{what} {text!r} is not a decimal number without leading zeros")
    value = int(text)
    if value >= merkle.MAX_TREE_SIZE:
        raise NoteFormatError(f"{what} {text} is too large")
    return value


def _as_text(data: str | bytes, what: str) -> str:
    if len(data) > MAX_NOTE_BYTES:
        raise NoteFormatError(f"{what} is larger than {MAX_NOTE_BYTES} bytes")
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise NoteFormatError(f"{what} is not UTF-8") from exc
    try:
        encoded_size = len(data.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise NoteFormatError(f"{what} is not valid Unicode text") from exc
    if encoded_size > MAX_NOTE_BYTES:
        raise NoteFormatError(f"{what} is larger than {MAX_NOTE_BYTES} bytes")
    if not data:
        raise NoteFormatError(f"{what} is empty")
    return data


def _check_note_text(text: str) -> None:
    if not text.endswith("\n"):
        raise NoteFormatError("note text must end with a newline")
    for char in text:
        if (ord(char) < 0x20 and char != "\n") or ord(char) == 0x7F:
            raise NoteFormatError(f"note text contains control character {char!r}")
    if any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        raise NoteFormatError("note text is not valid Unicode")


def _check_key_name(name: str) -> None:
    if not name or "+" in name or any(c.isspace() for c in name):
        raise NoteFormatError(f"key name {name!r} is empty or contains '+' or whitespace")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise NoteFormatError(f"key name {name!r} contains a control character")


# -- keys ---------------------------------------------------------------------------------------


def ed25519_key_id(name: str, public_key: bytes) -> bytes:
    """The 4-byte key id of an Ed25519 signed-note key."""
    return hashlib.sha256(
        name.encode("utf-8") + b"\n" + bytes([ED25519_SIGNATURE_TYPE]) + public_key
    ).digest()[:4]


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@dataclass(frozen=True)
class NoteVerifier:
    """An Ed25519 signed-note public key under a name."""

    name: str
    public_key: bytes

    def __post_init__(self) -> None:
        _check_key_name(self.name)
        if len(self.public_key) != 32:
            raise NoteFormatError("an Ed25519 public key is 32 bytes")

    @classmethod
    def from_public_key(cls, name: str, key: Ed25519PublicKey) -> NoteVerifier:
        return cls(name, _raw_public(key))

    @property
    def key_id(self) -> bytes:
        return ed25519_key_id(self.name, self.public_key)

    def verifier_key(self) -> str:
        """`name+hexid+base64(0x01‖key)`, the text form other tools read."""
        encoded = _b64encode(bytes([ED25519_SIGNATURE_TYPE]) + self.public_key)
        return f"{self.name}+{self.key_id.hex()}+{encoded}"

    @classmethod
    def from_verifier_key(cls, text: str) -> NoteVerifier:
        parts = text.strip().split("+", 2)
        if len(parts) != 3:
            raise NoteFormatError("a verifier key reads NAME+HEXID+BASE64KEY")
        name, hex_id, encoded = parts
        _check_key_name(name)
        if not _HEX_KEY_ID.fullmatch(hex_id):
            raise NoteFormatError("a verifier key id is 8 lowercase hex digits")
        raw = _b64decode(encoded, "verifier key")
        if len(raw) != 33 or raw[0] != ED25519_SIGNATURE_TYPE:
            raise NoteFormatError("only Ed25519 verifier keys (type 0x01, 32 bytes) are supported")
        verifier = cls(name, raw[1:])
        if verifier.key_id.hex() != hex_id:
            raise NoteFormatError(f"verifier key id {hex_id} does not match its name and key")
        return verifier

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except InvalidSignature:
            return False
        return True

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "verifier_key": self.verifier_key()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NoteVerifier:
        verifier = cls.from_verifier_key(str(data["verifier_key"]))
        if verifier.name != data.get("name", verifier.name):
            raise NoteFormatError("verifier name does not match its key")
        return verifier


# -- signed notes -------------------------------------------------------------------------------


@dataclass(frozen=True)
class NoteSignature:
    name: str
    key_id: bytes
    signature: bytes

    def line(self) -> str:
        return f"{_SIGNATURE_PREFIX}{self.name} {_b64encode(self.key_id + self.signature)}\n"


@dataclass(frozen=True)
class SignedNote:
    """A note's text (ending in a newline) and its signature lines, in order."""

    text: str
    signatures: tuple[NoteSignature, ...] = field(default=())

    def to_text(self) -> str:
        return self.text + "\n" + "".join(sig.line() for sig in self.signatures)

    def to_dict(self) -> dict[str, Any]:
        return {"note": self.to_text()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SignedNote:
        return parse_signed_note(str(data["note"]))


def sign_note(text: str, name: str, private_key: Ed25519PrivateKey) -> SignedNote:
    """Sign `text` (which must end with a newline) as key `name`."""
    _check_note_text(text)
    _check_key_name(name)
    key_id = ed25519_key_id(name, _raw_public(private_key.public_key()))
    signature = private_key.sign(text.encode("utf-8"))
    return SignedNote(text, (NoteSignature(name, key_id, signature),))


def parse_signed_note(data: str | bytes) -> SignedNote:
    """Parse a signed note strictly; does not check any signature."""
    message = _as_text(data, "signed note")
    split = message.rfind("\n\n")
    if split < 0:
        raise NoteFormatError("signed note has no blank line before its signatures")
    text, block = message[: split + 1], message[split + 2 :]
    if not text.strip("\n"):
        raise NoteFormatError("signed note has no text")
    _check_note_text(text)
    if not block:
        raise NoteFormatError("signed note has no signatures")
    if not block.endswith("\n"):
        raise NoteFormatError("signed note's last signature line does not end with a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteFormatError(f"signed note has more than {MAX_SIGNATURES} signatures")
    signatures = []
    for line in lines:
        if not line.startswith(_SIGNATURE_PREFIX):
            raise NoteFormatError(f"signature line does not start with an em dash: {line[:40]!r}")
        parts = line[len(_SIGNATURE_PREFIX) :].split(" ")
        if len(parts) != 2:
            raise NoteFormatError("a signature line reads '— NAME BASE64'")
        name, encoded = parts
        _check_key_name(name)
        raw = _b64decode(encoded, f"signature of {name}")
        if len(raw) < 5:
            raise NoteFormatError(f"signature of {name} is too short")
        signatures.append(NoteSignature(name, raw[:4], raw[4:]))
    return SignedNote(text, tuple(signatures))


def verify_note(data: str | bytes | SignedNote, verifier: NoteVerifier) -> SignedNote:
    """Return the note if `verifier` signed it. Signatures by other keys are ignored, but every
    signature line claiming the verifier's name and key id must verify."""
    note = data if isinstance(data, SignedNote) else parse_signed_note(data)
    message = note.text.encode("utf-8")
    key_id = verifier.key_id
    matching = [sig for sig in note.signatures if (sig.name, sig.key_id) == (verifier.name, key_id)]
    if not matching:
        names = ", ".join(sorted({sig.name for sig in note.signatures}))
        raise SignatureMismatchError(
            f"the note is not signed by key {verifier.name} ({verifier.key_id.hex()}); "
            f"signed by: {names}"
        )
    for sig in matching:
        if len(sig.signature) != 64 or not verifier.verify(message, sig.signature):
            raise SignatureMismatchError(f"the signature of {verifier.name} does not verify")
    return note


# -- checkpoints --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """A tlog checkpoint body: the log's origin, its size and the root hash at that size."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin:
            raise NoteFormatError("checkpoint origin must be one non-empty line")
        if isinstance(self.size, bool) or not 0 <= self.size < merkle.MAX_TREE_SIZE:
            raise NoteFormatError(f"checkpoint size {self.size!r} is out of range")
        if len(self.root_hash) != merkle.HASH_SIZE:
            raise NoteFormatError("checkpoint root hash must be 32 bytes")
        for ext in self.extensions:
            if not ext or "\n" in ext:
                raise NoteFormatError("checkpoint extension lines must be non-empty single lines")

    def body(self) -> str:
        lines = [self.origin, str(self.size), _b64encode(self.root_hash), *self.extensions]
        text = "\n".join(lines) + "\n"
        _check_note_text(text)
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "origin": self.origin,
            "size": self.size,
            "root_hash": self.root_hash.hex(),
            "extensions": list(self.extensions),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Checkpoint:
        try:
            root = bytes.fromhex(str(data["root_hash"]))
            size = data["size"]
            if not isinstance(size, int):
                raise TypeError("size is not an integer")
            extensions = tuple(str(ext) for ext in data.get("extensions", ()))
            return cls(str(data["origin"]), size, root, extensions)
        except (KeyError, TypeError, ValueError) as exc:
            raise NoteFormatError(f"not a checkpoint record: {exc}") from exc


def parse_checkpoint_body(text: str) -> Checkpoint:
    """Parse the text of a checkpoint note (not its signatures)."""
    _check_note_text(text)
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise NoteFormatError("a checkpoint has an origin, a size and a root hash line")
    origin, size_text, root_text, *extensions = lines
    if not origin:
        raise NoteFormatError("checkpoint origin line is empty")
    size = _decimal(size_text, "checkpoint size")
    root = _b64decode(root_text, "checkpoint root hash")
    if len(root) != merkle.HASH_SIZE:
        raise NoteFormatError("checkpoint root hash is not 32 bytes")
    if any(not ext for ext in extensions):
        raise NoteFormatError("checkpoint has an empty extension line")
    return Checkpoint(origin, size, root, tuple(extensions))


def sign_checkpoint(checkpoint: Checkpoint, name: str, private_key: Ed25519PrivateKey) -> str:
    """The signed-note text of `checkpoint`, signed as key `name`."""
    return sign_note(checkpoint.body(), name, private_key).to_text()


def open_checkpoint(
    data: str | bytes | SignedNote, verifier: NoteVerifier, origin: str | None = None
) -> Checkpoint:
    """Verify a signed checkpoint and return its body; `origin` defaults to the key's name."""
    note = data if isinstance(data, SignedNote) else parse_signed_note(data)
    checkpoint = parse_checkpoint_body(note.text)
    verify_note(note, verifier)
    expected = verifier.name if origin is None else origin
    if checkpoint.origin != expected:
        raise SignatureMismatchError(
            f"checkpoint is for log {checkpoint.origin!r}, not {expected!r}"
        )
    return checkpoint


# -- tlog-proof ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TlogProof:
    """An offline-verifiable inclusion proof: entry index, proof hashes and a signed checkpoint."""

    index: int
    hashes: tuple[bytes, ...]
    checkpoint: str
    extra: bytes | None = None

    def __post_init__(self) -> None:
        if isinstance(self.index, bool) or not 0 <= self.index < merkle.MAX_TREE_SIZE:
            raise NoteFormatError(f"proof index {self.index!r} is out of range")
        if len(self.hashes) > MAX_PROOF_HASHES:
            raise NoteFormatError(f"a proof has at most {MAX_PROOF_HASHES} hashes")
        if any(len(value) != merkle.HASH_SIZE for value in self.hashes):
            raise NoteFormatError("every proof hash must be 32 bytes")
        if self.extra is not None and not self.extra:
            raise NoteFormatError("extra data, when present, must not be empty")

    def to_text(self) -> str:
        lines = [TLOG_PROOF_HEADER]
        if self.extra is not None:
            lines.append(f"extra {_b64encode(self.extra)}")
        lines.append(f"index {self.index}")
        lines.extend(_b64encode(value) for value in self.hashes)
        return "\n".join(lines) + "\n\n" + self.checkpoint

    def to_dict(self) -> dict[str, Any]:
        return {"proof": self.to_text()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TlogProof:
        return parse_tlog_proof(str(data["proof"]))


def parse_tlog_proof(data: str | bytes) -> TlogProof:
    """Parse a tlog-proof strictly (the embedded checkpoint is parsed but not verified)."""
    text = _as_text(data, "tlog-proof")
    split = text.find("\n\n")
    if split < 0:
        raise NoteFormatError("tlog-proof has no blank line before its checkpoint")
    head, checkpoint_text = text[:split].split("\n"), text[split + 2 :]
    if head[0] != TLOG_PROOF_HEADER:
        raise NoteFormatError(f"tlog-proof must start with {TLOG_PROOF_HEADER!r}")
    position = 1
    extra = None
    if position < len(head) and head[position].startswith("extra "):
        extra = _b64decode(head[position][len("extra ") :], "tlog-proof extra data")
        if not extra:
            raise NoteFormatError("tlog-proof extra line carries no data")
        position += 1
    if position >= len(head) or not head[position].startswith("index "):
        raise NoteFormatError("tlog-proof has no 'index N' line")
    index = _decimal(head[position][len("index ") :], "tlog-proof index")
    hash_lines = head[position + 1 :]
    if len(hash_lines) > MAX_PROOF_HASHES:
        raise NoteFormatError(f"tlog-proof has more than {MAX_PROOF_HASHES} hashes")
    hashes = []
    for number, line in enumerate(hash_lines):
        value = _b64decode(line, f"tlog-proof hash {number}")
        if len(value) != merkle.HASH_SIZE:
            raise NoteFormatError(f"tlog-proof hash {number} is not 32 bytes")
        hashes.append(value)
    note = parse_signed_note(checkpoint_text)
    parse_checkpoint_body(note.text)
    if note.to_text() != checkpoint_text:
        raise NoteFormatError("tlog-proof checkpoint is not in canonical form")
    return TlogProof(index, tuple(hashes), checkpoint_text, extra)


def verify_tlog_proof(
    data: str | bytes | TlogProof,
    verifier: NoteVerifier,
    leaf_hash: bytes,
    origin: str | None = None,
) -> Checkpoint:
    """Check that the entry with `leaf_hash` is in the log at the proof's index, under a
    checkpoint signed by `verifier`. Returns the checkpoint; raises ProofError or
    SignatureMismatchError (a definite no) or NoteFormatError (malformed input)."""
    proof = data if isinstance(data, TlogProof) else parse_tlog_proof(data)
    checkpoint = open_checkpoint(proof.checkpoint, verifier, origin)
    if proof.index >= checkpoint.size:
        raise ProofError(f"entry {proof.index} is beyond the checkpoint's size {checkpoint.size}")
    merkle.verify_inclusion(
        proof.index, checkpoint.size, leaf_hash, list(proof.hashes), checkpoint.root_hash
    )
    return checkpoint
