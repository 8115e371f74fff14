"""The `modelward.consistency/v1` file against the RFC 9162 consistency vectors: every vector is
written as a file with two checkpoints signed by one key and decided as the vector says (a
vector whose roots are not 32 bytes cannot be written as checkpoints at all, and writing it must
fail). Then the file's own tampering cases."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from modelward.core import merkle
from modelward.core.checkpoint import Checkpoint, NoteVerifier, sign_checkpoint
from modelward.core.consistency import (
    ConsistencyProof,
    parse_consistency_proof,
    verify_consistency_proof,
)
from modelward.errors import (
    NoteFormatError,
    ProofError,
    SignatureMismatchError,
    SplitViewError,
)

ORIGIN = "example.com/log"
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
VERIFIER = NoteVerifier.from_public_key(ORIGIN, KEY.public_key())


def _b64(value: str | None) -> bytes:
    return base64.b64decode(value) if value is not None else b""


def _vectors(conformance: Path) -> list[tuple[str, dict[str, Any]]]:
    folder = conformance / "rfc9162" / "consistency"
    return [
        (str(p.relative_to(folder)), json.loads(p.read_text()))
        for p in sorted(folder.rglob("*.json"))
    ]


def _file(size1: int, root1: bytes, size2: int, root2: bytes, proof: list[bytes]) -> str:
    old = sign_checkpoint(Checkpoint(ORIGIN, size1, root1), ORIGIN, KEY)
    new = sign_checkpoint(Checkpoint(ORIGIN, size2, root2), ORIGIN, KEY)
    return ConsistencyProof(old, new, tuple(proof)).to_text()


def test_every_rfc9162_consistency_vector(conformance_dir: Path) -> None:
    vectors = _vectors(conformance_dir)
    assert len(vectors) == 98
    accepted = rejected = 0
    for name, case in vectors:
        roots = (_b64(case["root1"]), _b64(case["root2"]))
        if any(len(root) != 32 for root in roots):
            # A checkpoint cannot carry such a root: writing the file must fail.
            with pytest.raises(NoteFormatError):
                _file(case["size1"], roots[0], case["size2"], roots[1], [])
            continue
        try:
            text = _file(
                case["size1"],
                _b64(case["root1"]),
                case["size2"],
                _b64(case["root2"]),
                [_b64(h) for h in case["proof"] or []],
            )
            verify_consistency_proof(parse_consistency_proof(text), VERIFIER)
        except (ProofError, NoteFormatError):
            assert case["wantErr"], name
            rejected += 1
        else:
            assert not case["wantErr"], name
            accepted += 1
    assert accepted and rejected


LEAVES = [merkle.leaf_hash(b"%d" % i) for i in range(9)]
LEVELS = merkle.complete_levels(LEAVES)


def _honest(size1: int = 3, size2: int = 9) -> str:
    proof = merkle.consistency_proof(size1, size2, lambda lv, i: LEVELS[lv][i])
    return _file(
        size1,
        merkle.root_from_levels(LEVELS, size1),
        size2,
        merkle.root_from_levels(LEVELS, size2),
        proof,
    )


def test_honest_file_round_trips_and_verifies() -> None:
    text = _honest()
    assert text.startswith("modelward.consistency/v1\nold 3\nnew 9\n")
    parsed = parse_consistency_proof(text)
    assert parsed.to_text() == text
    old, new = verify_consistency_proof(text, VERIFIER)
    assert (old.size, new.size) == (3, 9)


def test_flipped_proof_byte_fails() -> None:
    lines = _honest().split("\n")
    raw = bytearray(base64.b64decode(lines[3]))
    raw[5] ^= 1
    lines[3] = base64.b64encode(bytes(raw)).decode()
    with pytest.raises(ProofError):
        verify_consistency_proof("\n".join(lines), VERIFIER)


def test_swapped_checkpoints_fail() -> None:
    parsed = parse_consistency_proof(_honest())
    swapped = ConsistencyProof(parsed.new_checkpoint, parsed.old_checkpoint, parsed.proof)
    with pytest.raises(ProofError):
        verify_consistency_proof(swapped.to_text(), VERIFIER)


def test_checkpoint_of_another_key_or_log_fails() -> None:
    other = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
    with pytest.raises(SignatureMismatchError, match="old checkpoint"):
        verify_consistency_proof(
            _honest(), NoteVerifier.from_public_key(ORIGIN, other.public_key())
        )
    parsed = parse_consistency_proof(_honest())
    foreign = sign_checkpoint(
        Checkpoint("other.example/log", 9, merkle.root_from_levels(LEVELS, 9)),
        ORIGIN,
        KEY,
    )
    with pytest.raises(SignatureMismatchError, match="new checkpoint"):
        verify_consistency_proof(
            ConsistencyProof(parsed.old_checkpoint, foreign, parsed.proof).to_text(), VERIFIER
        )


def test_same_size_different_root_is_a_split_view() -> None:
    text = _file(4, merkle.root_from_levels(LEVELS, 4), 4, bytes(32), [])
    with pytest.raises(SplitViewError):
        verify_consistency_proof(text, VERIFIER)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("modelward.consistency/v1\nold 3\nnew 9\n", "modelward.consistency/v1\nold 4\nnew 9\n"),
        ("modelward.consistency/v1\n", "modelward.consistency/v2\n"),
        ("\nnew 9\n", "\nnew 09\n"),
    ],
)
def test_malformed_headers_fail(old: str, new: str) -> None:
    with pytest.raises(NoteFormatError):
        parse_consistency_proof(_honest().replace(old, new, 1))


def test_truncated_or_extra_blocks_fail() -> None:
    text = _honest()
    for bad in (text[:-1], text + "\nextra\n", text.replace("\n\n", "\n", 1)):
        with pytest.raises(NoteFormatError):
            parse_consistency_proof(bad)
