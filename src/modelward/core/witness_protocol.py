"""The C2SP tlog-witness `add-checkpoint` call: its request body, its response lines, and the
witness's decision on a request given what it last cosigned.

Request body: `old <size>` line, zero to 63 base64 consistency-proof lines, a blank line, then a
signed checkpoint. Response body (200): one or more signature lines (`— name base64`).

`decide_add_checkpoint` implements the witness's checks in the order the spec gives them and says
"no" with a typed error the HTTP edge maps to the spec's status:

    NotFoundError           unknown origin                          404
    SignatureMismatchError  no trusted log signature verifies        403
    InputError              old size > checkpoint size, bad body     400
    StaleSizeError          old size is not the witness's size        409 (text/x.tlog.size)
    SplitViewError          same size as the witness's, another root  409
    ProofError              the consistency proof does not verify     422

Pure: the witness's last state is passed in; nothing is stored or signed here.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from modelward.core import merkle
from modelward.core.checkpoint import (
    Checkpoint,
    NoteSignature,
    NoteVerifier,
    SignedNote,
    parse_checkpoint_body,
    parse_signed_note,
    verify_note,
)
from modelward.errors import (
    InputError,
    NoteFormatError,
    NotFoundError,
    ProofError,
    SignatureMismatchError,
    SplitViewError,
    StaleSizeError,
)

MAX_PROOF_LINES = 63
MAX_REQUEST_BYTES = 1 << 20
SIZE_CONTENT_TYPE = "text/x.tlog.size"


def strict_b64(text: str, what: str) -> bytes:
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise NoteFormatError(f"{what} is not valid base64") from exc
    if base64.b64encode(data).decode("ascii") != text:
        raise NoteFormatError(f"{what} is not canonical base64")
    return data


def decimal_size(text: str, what: str) -> int:
    if not text.isascii() or not text.isdigit() or (len(text) > 1 and text[0] == "0"):
        raise NoteFormatError(f"{what} {text!r} is not a decimal number without leading zeros")
    value = int(text)
    if value >= merkle.MAX_TREE_SIZE:
        raise NoteFormatError(f"{what} {text} is too large")
    return value


@dataclass(frozen=True)
class AddCheckpointRequest:
    """An `add-checkpoint` request: the size the client believes the witness holds, a consistency
    proof from there, and the signed checkpoint (note text, possibly with several signatures)."""

    old_size: int
    proof: tuple[bytes, ...]
    checkpoint: str

    def to_text(self) -> str:
        lines = [f"old {self.old_size}", *(base64.b64encode(h).decode() for h in self.proof)]
        return "\n".join(lines) + "\n\n" + self.checkpoint


def parse_add_checkpoint(body: bytes | str) -> AddCheckpointRequest:
    """Parse a request body strictly (the checkpoint is parsed, not verified)."""
    if len(body) > MAX_REQUEST_BYTES:
        raise NoteFormatError(f"request body is larger than {MAX_REQUEST_BYTES} bytes")
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise NoteFormatError("request body is not UTF-8") from exc
    split = body.find("\n\n")
    if split < 0:
        raise NoteFormatError("request body has no blank line before the checkpoint")
    head, checkpoint = body[:split].split("\n"), body[split + 2 :]
    if not head[0].startswith("old "):
        raise NoteFormatError("request body must start with an 'old SIZE' line")
    old_size = decimal_size(head[0][len("old ") :], "old size")
    if len(head) - 1 > MAX_PROOF_LINES:
        raise NoteFormatError(f"a consistency proof has at most {MAX_PROOF_LINES} lines")
    proof = []
    for number, line in enumerate(head[1:]):
        value = strict_b64(line, f"consistency proof line {number + 1}")
        if len(value) != merkle.HASH_SIZE:
            raise NoteFormatError(f"consistency proof line {number + 1} is not a 32-byte hash")
        proof.append(value)
    note = parse_signed_note(checkpoint)
    parse_checkpoint_body(note.text)
    return AddCheckpointRequest(old_size, tuple(proof), checkpoint)


def parse_cosignature_lines(body: bytes | str) -> tuple[NoteSignature, ...]:
    """The signature lines of a 200 response (not yet verified: append them to the checkpoint
    and check them with `core.cosignature`)."""
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise NoteFormatError("witness response is not UTF-8") from exc
    if not body:
        raise NoteFormatError("witness response has no signature lines")
    # A signed note with a placeholder text reuses the strict signature-line parser.
    return parse_signed_note("x\n\n" + body).signatures


@dataclass(frozen=True)
class WitnessResponse:
    """An HTTP answer to `add-checkpoint`: status, media type (without parameters), body."""

    status: int
    content_type: str
    body: bytes


@dataclass(frozen=True)
class WitnessedState:
    """The latest checkpoint a witness cosigned for one log."""

    checkpoint: Checkpoint
    note: str  # the log-signed checkpoint as received


def decide_add_checkpoint(
    request: AddCheckpointRequest,
    logs: Mapping[str, Sequence[NoteVerifier]],
    latest: WitnessedState | None,
) -> tuple[Checkpoint, SignedNote]:
    """Accept the request's checkpoint or raise the typed refusal (see the module docstring).
    `logs` maps each known origin to the log keys trusted for it; `latest` is what the witness
    last cosigned for the checkpoint's origin. Returns the checkpoint and its verified note."""
    note = parse_signed_note(request.checkpoint)
    checkpoint = parse_checkpoint_body(note.text)
    verifiers = logs.get(checkpoint.origin)
    if not verifiers:
        raise NotFoundError(f"unknown log {checkpoint.origin!r}")
    if not _signed_by_any(note, verifiers):
        raise SignatureMismatchError(
            f"the checkpoint for {checkpoint.origin!r} is not signed by a trusted key of that log"
        )
    if latest is not None and latest.checkpoint.origin != checkpoint.origin:
        raise InputError("the witness state given is for another log")
    if request.old_size > checkpoint.size:
        raise InputError(
            f"old size {request.old_size} is larger than the checkpoint's size {checkpoint.size}"
        )
    current = 0 if latest is None else latest.checkpoint.size
    if request.old_size != current:
        raise StaleSizeError(
            f"the witness last cosigned size {current} of {checkpoint.origin!r}, "
            f"not {request.old_size}",
            current_size=current,
        )
    if checkpoint.size == 0 and checkpoint.root_hash != merkle.EMPTY_ROOT:
        raise ProofError("a checkpoint of size 0 must carry the empty tree's root")
    if latest is None or current == 0:
        if request.proof:
            raise ProofError("the consistency proof from size 0 must be empty")
        return checkpoint, note
    if checkpoint.size == current:
        if request.proof:
            raise ProofError("a consistency proof between equal sizes must be empty")
        if checkpoint.root_hash != latest.checkpoint.root_hash:
            raise SplitViewError(
                f"split view: log {checkpoint.origin!r} signed two different roots for size "
                f"{current} ({latest.checkpoint.root_hash.hex()} cosigned, "
                f"{checkpoint.root_hash.hex()} offered)"
            )
        return checkpoint, note
    merkle.verify_consistency(
        current,
        checkpoint.size,
        list(request.proof),
        latest.checkpoint.root_hash,
        checkpoint.root_hash,
    )
    return checkpoint, note


def _signed_by_any(note: SignedNote, verifiers: Sequence[NoteVerifier]) -> bool:
    for verifier in verifiers:
        try:
            verify_note(note, verifier)
        except SignatureMismatchError:
            continue
        return True
    return False
