"""modelward's exported consistency proof (`modelward.consistency/v1`): two signed checkpoints of
one log and the RFC 9162 consistency proof between them, checkable offline.

C2SP tlog-proof has no consistency form, so this is our own small format, in the same style:

    modelward.consistency/v1
    old <size of the older checkpoint>
    new <size of the newer checkpoint>
    <base64 proof hash>            (zero to 63 lines, RFC 9162 §2.1.4 order)
    <blank line>
    <older signed checkpoint>      (a C2SP signed note, verbatim)
    <blank line>
    <newer signed checkpoint>

Every line ends in a newline. Neither checkpoint body nor a signature block contains a blank
line, so the file splits into exactly five blocks at blank lines. The sizes on the `old`/`new`
lines must equal the checkpoints' sizes. Pure: parsing and verification only.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from modelward.core import merkle
from modelward.core.checkpoint import (
    Checkpoint,
    NoteVerifier,
    open_checkpoint,
    parse_checkpoint_body,
    parse_signed_note,
)
from modelward.core.witness_protocol import MAX_PROOF_LINES, decimal_size, strict_b64
from modelward.errors import (
    NoteFormatError,
    ProofError,
    SignatureMismatchError,
    SplitViewError,
    VerificationError,
)

CONSISTENCY_HEADER = "modelward.consistency/v1"
MAX_FILE_BYTES = 1 << 20


@dataclass(frozen=True)
class ConsistencyProof:
    """Two signed checkpoints (note texts) and the proof that the newer extends the older."""

    old_checkpoint: str
    new_checkpoint: str
    proof: tuple[bytes, ...]

    def sizes(self) -> tuple[int, int]:
        old = parse_checkpoint_body(parse_signed_note(self.old_checkpoint).text)
        new = parse_checkpoint_body(parse_signed_note(self.new_checkpoint).text)
        return old.size, new.size

    def to_text(self) -> str:
        old_size, new_size = self.sizes()
        lines = [CONSISTENCY_HEADER, f"old {old_size}", f"new {new_size}"]
        lines.extend(base64.b64encode(value).decode("ascii") for value in self.proof)
        return "\n".join(lines) + "\n\n" + self.old_checkpoint + "\n" + self.new_checkpoint


def parse_consistency_proof(data: str | bytes) -> ConsistencyProof:
    """Parse a `modelward.consistency/v1` file strictly (signatures are not checked here)."""
    if len(data) > MAX_FILE_BYTES:
        raise NoteFormatError(f"consistency proof file is larger than {MAX_FILE_BYTES} bytes")
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise NoteFormatError("consistency proof file is not UTF-8") from exc
    if not data.endswith("\n"):
        raise NoteFormatError("consistency proof file must end with a newline")
    blocks = data[:-1].split("\n\n")
    if len(blocks) != 5:
        raise NoteFormatError(
            "a consistency proof file has a header, then two signed checkpoints, separated by "
            "blank lines"
        )
    head = blocks[0].split("\n")
    if head[0] != CONSISTENCY_HEADER:
        raise NoteFormatError(f"consistency proof file must start with {CONSISTENCY_HEADER!r}")
    if len(head) < 3 or not head[1].startswith("old ") or not head[2].startswith("new "):
        raise NoteFormatError("consistency proof file needs 'old SIZE' and 'new SIZE' lines")
    old_size = decimal_size(head[1][len("old ") :], "old size")
    new_size = decimal_size(head[2][len("new ") :], "new size")
    if len(head) - 3 > MAX_PROOF_LINES:
        raise NoteFormatError(f"a consistency proof has at most {MAX_PROOF_LINES} hashes")
    proof = []
    for number, line in enumerate(head[3:]):
        value = strict_b64(line, f"consistency proof hash {number}")
        if len(value) != merkle.HASH_SIZE:
            raise NoteFormatError(f"consistency proof hash {number} is not 32 bytes")
        proof.append(value)
    old_text = blocks[1] + "\n\n" + blocks[2] + "\n"
    new_text = blocks[3] + "\n\n" + blocks[4] + "\n"
    for text, size, which in ((old_text, old_size, "old"), (new_text, new_size, "new")):
        note = parse_signed_note(text)
        if note.to_text() != text:
            raise NoteFormatError(f"the {which} checkpoint is not in canonical form")
        if parse_checkpoint_body(note.text).size != size:
            raise NoteFormatError(f"the '{which}' line does not match the {which} checkpoint")
    return ConsistencyProof(old_text, new_text, tuple(proof))


def verify_checkpoint_consistency(
    old: Checkpoint, new: Checkpoint, proof: tuple[bytes, ...] | list[bytes]
) -> None:
    """Raise ProofError unless `new` extends `old` (same log); SplitViewError for two roots of
    one size. A size-0 checkpoint is consistent with any later one (its root must be empty)."""
    if old.origin != new.origin:
        raise ProofError(f"the checkpoints are of two logs: {old.origin!r} and {new.origin!r}")
    if old.size > new.size:
        raise ProofError(f"the 'new' checkpoint (size {new.size}) is older than size {old.size}")
    if old.size == new.size and old.root_hash != new.root_hash:
        raise SplitViewError(
            f"split view: two different roots for size {old.size} of {old.origin!r}"
        )
    if old.size == 0:
        if old.root_hash != merkle.EMPTY_ROOT:
            raise ProofError("a checkpoint of size 0 must carry the empty tree's root")
        if proof:
            raise ProofError("a consistency proof from size 0 must be empty")
        return
    merkle.verify_consistency(old.size, new.size, list(proof), old.root_hash, new.root_hash)


def verify_consistency_proof(
    data: str | bytes | ConsistencyProof, verifier: NoteVerifier, origin: str | None = None
) -> tuple[Checkpoint, Checkpoint]:
    """Check both checkpoints' signatures by `verifier` (of log `origin`, default the key's
    name) and the proof between them. Returns (old, new). Raises NoteFormatError for a malformed
    file, SignatureMismatchError or ProofError (SplitViewError) for one that does not hold."""
    proof = data if isinstance(data, ConsistencyProof) else parse_consistency_proof(data)
    try:
        old = open_checkpoint(proof.old_checkpoint, verifier, origin)
    except SignatureMismatchError as exc:
        raise SignatureMismatchError(f"old checkpoint: {exc}") from exc
    try:
        new = open_checkpoint(proof.new_checkpoint, verifier, origin)
    except SignatureMismatchError as exc:
        raise SignatureMismatchError(f"new checkpoint: {exc}") from exc
    verify_checkpoint_consistency(old, new, proof.proof)
    return old, new


def _same_tree(a: Checkpoint, b: Checkpoint) -> bool:
    return (a.origin, a.size, a.root_hash) == (b.origin, b.size, b.root_hash)


def anchor_checkpoint(
    proof_checkpoint: Checkpoint,
    trusted: Checkpoint,
    consistency: ConsistencyProof | None,
    verifier: NoteVerifier,
    origin: str | None = None,
) -> str:
    """Tie a proof's (verified) checkpoint to a checkpoint the caller trusts (verified too): the
    same tree, or two trees of one history shown by a consistency proof between exactly these
    two checkpoints, in either order. Returns how they were tied ("same" or "consistent");
    raises ProofError (SplitViewError for two roots of one size) or VerificationError."""
    if proof_checkpoint.origin != trusted.origin:
        raise ProofError(
            f"the proof is from log {proof_checkpoint.origin!r}, "
            f"the checkpoint from {trusted.origin!r}"
        )
    if _same_tree(proof_checkpoint, trusted):
        return "same"
    if proof_checkpoint.size == trusted.size:
        raise SplitViewError(
            f"split view: the proof's checkpoint and the given one both have size "
            f"{trusted.size} of {trusted.origin!r} but different roots"
        )
    if consistency is None:
        raise VerificationError(
            f"the proof's checkpoint (size {proof_checkpoint.size}) is not the given checkpoint "
            f"(size {trusted.size}); give a consistency proof between them "
            "(modelward audit consistency OLD NEW)"
        )
    old, new = verify_consistency_proof(consistency, verifier, origin)
    older, newer = sorted((proof_checkpoint, trusted), key=lambda c: c.size)
    if not (_same_tree(old, older) and _same_tree(new, newer)):
        raise ProofError(
            f"the consistency proof is between sizes {old.size} and {new.size}, not between "
            f"the proof's checkpoint (size {proof_checkpoint.size}) and the given one "
            f"(size {trusted.size})"
        )
    return "consistent"
