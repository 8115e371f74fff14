"""Signed notes, checkpoints and tlog-proofs: round trips, strict parsing, wrong keys, tampering."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from modelward.core import merkle
from modelward.core.checkpoint import (
    MAX_NOTE_BYTES,
    Checkpoint,
    NoteVerifier,
    TlogProof,
    ed25519_key_id,
    open_checkpoint,
    parse_checkpoint_body,
    parse_signed_note,
    parse_tlog_proof,
    sign_checkpoint,
    sign_note,
    verify_note,
    verify_tlog_proof,
)
from modelward.errors import InputError, NoteFormatError, ProofError, SignatureMismatchError

ORIGIN = "example.com/modelward"
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
VERIFIER = NoteVerifier.from_public_key(ORIGIN, KEY.public_key())
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))

LEAVES = [merkle.leaf_hash(bytes([i])) for i in range(11)]
LEVELS = merkle.complete_levels(LEAVES)
ROOT = merkle.root_from_leaves(LEAVES)


def _read(level: int, index: int) -> bytes:
    return LEVELS[level][index]


def _signed(size: int = 11, root: bytes = ROOT) -> str:
    return sign_checkpoint(Checkpoint(ORIGIN, size, root), ORIGIN, KEY)


def _proof_text(index: int = 5) -> str:
    hashes = tuple(merkle.inclusion_proof(index, 11, _read))
    return TlogProof(index, hashes, _signed(), b"entry").to_text()


def test_key_id_and_verifier_key_follow_signed_note() -> None:
    raw = KEY.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    expected = hashlib.sha256(ORIGIN.encode() + b"\n\x01" + raw).digest()[:4]
    assert ed25519_key_id(ORIGIN, raw) == expected == VERIFIER.key_id
    text = VERIFIER.verifier_key()
    encoded = base64.b64encode(b"\x01" + raw).decode()
    assert text == f"{ORIGIN}+{expected.hex()}+{encoded}"
    assert NoteVerifier.from_verifier_key(text) == VERIFIER
    assert NoteVerifier.from_dict(VERIFIER.to_dict()) == VERIFIER


@pytest.mark.parametrize(
    "text",
    [
        "nameonly",
        "a+b+c+d",
        f"{ORIGIN}+DEADBEEF+AAAA",
        f"{ORIGIN}+00000000+" + base64.b64encode(b"\x01" + b"\x00" * 32).decode(),
        f"{ORIGIN}+{VERIFIER.key_id.hex()}+" + base64.b64encode(b"\x02" + b"\x00" * 32).decode(),
        f"bad name+{VERIFIER.key_id.hex()}+AA==",
    ],
)
def test_bad_verifier_keys_are_rejected(text: str) -> None:
    with pytest.raises(NoteFormatError):
        NoteVerifier.from_verifier_key(text)


def test_checkpoint_round_trip_and_verify() -> None:
    note = _signed()
    lines = note.split("\n")
    assert lines[:4] == [ORIGIN, "11", base64.b64encode(ROOT).decode(), ""]
    assert lines[4].startswith(f"— {ORIGIN} ")
    assert note.endswith("\n")
    checkpoint = open_checkpoint(note, VERIFIER)
    assert checkpoint == Checkpoint(ORIGIN, 11, ROOT)
    assert Checkpoint.from_dict(checkpoint.to_dict()) == checkpoint
    assert parse_signed_note(note).to_text() == note
    extended = Checkpoint(ORIGIN, 11, ROOT, ("ext one", "ext two"))
    assert open_checkpoint(sign_checkpoint(extended, ORIGIN, KEY), VERIFIER) == extended


def test_signatures_by_other_keys_are_ignored_but_one_by_ours_is_needed() -> None:
    note = _signed()
    cosigned = (
        note
        + sign_note(parse_signed_note(note).text, "witness.example", OTHER_KEY).signatures[0].line()
    )
    assert open_checkpoint(cosigned, VERIFIER).size == 11
    only_other = sign_checkpoint(Checkpoint(ORIGIN, 11, ROOT), "witness.example", OTHER_KEY)
    with pytest.raises(SignatureMismatchError, match="not signed by"):
        open_checkpoint(only_other, VERIFIER)


def test_wrong_key_and_wrong_origin_are_rejected() -> None:
    forged = sign_checkpoint(Checkpoint(ORIGIN, 11, ROOT), ORIGIN, OTHER_KEY)
    with pytest.raises(SignatureMismatchError):
        open_checkpoint(forged, VERIFIER)
    other_log = sign_checkpoint(Checkpoint("other.example/log", 11, ROOT), ORIGIN, KEY)
    with pytest.raises(SignatureMismatchError, match=r"other\.example"):
        open_checkpoint(other_log, VERIFIER)


def test_same_key_id_with_a_bad_signature_is_rejected() -> None:
    note = _signed()
    text, sig_line = note.split("\n\n")
    encoded = sig_line.strip().split(" ")[2]
    raw = bytearray(base64.b64decode(encoded))
    raw[10] ^= 1
    bad = f"{text}\n\n— {ORIGIN} {base64.b64encode(bytes(raw)).decode()}\n"
    with pytest.raises(SignatureMismatchError, match="does not verify"):
        verify_note(bad, VERIFIER)


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("\n11\n", "\n12\n"),
        (ORIGIN + "\n", "example.com/other\n"),
    ],
)
def test_tampered_body_is_rejected(before: str, after: str) -> None:
    note = _signed().replace(before, after, 1)
    with pytest.raises(SignatureMismatchError):
        open_checkpoint(note, VERIFIER, origin=None if "other" not in after else after.strip())


def test_tampered_root_is_rejected() -> None:
    note = _signed()
    other = base64.b64encode(merkle.leaf_hash(b"x")).decode()
    with pytest.raises(SignatureMismatchError):
        open_checkpoint(note.replace(base64.b64encode(ROOT).decode(), other), VERIFIER)


def _malformed_notes() -> list[tuple[str, str | bytes]]:
    good = _signed()
    text, sigs = good.split("\n\n")
    root_line = base64.b64encode(ROOT).decode()
    return [
        ("empty", ""),
        ("no blank line", text + "\n" + sigs),
        ("no signatures", text + "\n\n"),
        ("signature without newline", good[:-1]),
        ("truncated signature", good[:-20] + "\n"),
        ("hyphen not em dash", good.replace("— ", "- ")),
        ("extra space in signature", good.replace(f"— {ORIGIN} ", f"— {ORIGIN}  ")),
        ("bad base64", good.replace(f"— {ORIGIN} ", f"— {ORIGIN} !!")),
        ("non-canonical base64 padding", good.replace("=\n", "\n")),
        ("control character", good.replace(ORIGIN + "\n", ORIGIN + "\t\n", 1)),
        ("carriage return", good.replace("\n", "\r\n")),
        ("not UTF-8", good.encode() + b"\xff"),
        ("huge", "a" * (MAX_NOTE_BYTES + 1)),
        ("too many signatures", good + (sigs.splitlines()[0] + "\n") * 120),
        ("leading zero size", good.replace("\n11\n", "\n011\n")),
        ("plus sign size", good.replace("\n11\n", "\n+11\n")),
        ("unicode digit size", good.replace("\n11\n", "\n1\u0661\n")),
        ("negative size", good.replace("\n11\n", "\n-1\n")),
        ("missing root line", good.replace(root_line + "\n", "")),
        ("short root", good.replace(root_line, base64.b64encode(b"x" * 31).decode())),
        ("empty extension line", good.replace(root_line + "\n", root_line + "\n\n")),
        ("empty origin", good.replace(ORIGIN + "\n", "\n", 1)),
    ]


@pytest.mark.parametrize(
    ("label", "note"), _malformed_notes(), ids=[n for n, _ in _malformed_notes()]
)
def test_malformed_checkpoints_are_input_errors(label: str, note: str | bytes) -> None:
    with pytest.raises(NoteFormatError) as caught:
        open_checkpoint(note, VERIFIER)
    assert isinstance(caught.value, InputError), label


def test_checkpoint_body_rules() -> None:
    with pytest.raises(NoteFormatError):
        parse_checkpoint_body(f"{ORIGIN}\n1\n")
    with pytest.raises(NoteFormatError):
        parse_checkpoint_body(f"{ORIGIN}\n{2**63}\n{base64.b64encode(ROOT).decode()}\n")
    with pytest.raises(NoteFormatError):
        Checkpoint(ORIGIN, 1, b"short")
    with pytest.raises(NoteFormatError):
        sign_note("no newline", ORIGIN, KEY)
    with pytest.raises(NoteFormatError):
        sign_note("text\n", "bad+name", KEY)


def test_tlog_proof_round_trip_and_verify() -> None:
    text = _proof_text()
    lines = text.split("\n")
    assert lines[0] == "c2sp.org/tlog-proof@v1"
    assert lines[1] == "extra " + base64.b64encode(b"entry").decode()
    assert lines[2] == "index 5"
    parsed = parse_tlog_proof(text)
    assert parsed.to_text() == text
    assert TlogProof.from_dict(parsed.to_dict()) == parsed
    checkpoint = verify_tlog_proof(text, VERIFIER, LEAVES[5])
    assert checkpoint.size == 11
    no_extra = TlogProof(5, parsed.hashes, parsed.checkpoint).to_text()
    assert no_extra.split("\n")[1] == "index 5"
    assert verify_tlog_proof(no_extra, VERIFIER, LEAVES[5]).root_hash == ROOT


def test_tlog_proof_for_wrong_entry_or_key_is_rejected() -> None:
    text = _proof_text()
    with pytest.raises(ProofError):
        verify_tlog_proof(text, VERIFIER, LEAVES[6])
    wrong_index = text.replace("index 5\n", "index 6\n")
    with pytest.raises(ProofError):
        verify_tlog_proof(wrong_index, VERIFIER, LEAVES[5])
    beyond = text.replace("index 5\n", "index 11\n")
    with pytest.raises(ProofError, match="beyond"):
        verify_tlog_proof(beyond, VERIFIER, LEAVES[5])
    other = NoteVerifier.from_public_key(ORIGIN, OTHER_KEY.public_key())
    with pytest.raises(SignatureMismatchError):
        verify_tlog_proof(text, other, LEAVES[5])


def _malformed_proofs() -> list[tuple[str, str]]:
    good = _proof_text()
    head, checkpoint = good.split("\n\n", 1)
    lines = head.split("\n")
    return [
        ("empty", ""),
        ("wrong header", good.replace("tlog-proof@v1", "tlog-proof@v2")),
        ("no index", "\n".join([lines[0], *lines[3:]]) + "\n\n" + checkpoint),
        ("index leading zero", good.replace("index 5", "index 05")),
        ("index not a number", good.replace("index 5", "index five")),
        (
            "extra after index",
            "\n".join([lines[0], lines[2], lines[1], *lines[3:]]) + "\n\n" + checkpoint,
        ),
        ("bad hash base64", good.replace(lines[3], lines[3][:-2] + "!!")),
        ("short hash", good.replace(lines[3], base64.b64encode(b"x" * 20).decode())),
        ("no blank line", head + "\n" + checkpoint),
        ("truncated checkpoint", head + "\n\n" + checkpoint.split("\n\n")[0] + "\n"),
        ("trailing garbage", good + "junk\n"),
        ("too many hashes", "\n".join([*lines, *[lines[3]] * 70]) + "\n\n" + checkpoint),
        ("empty extra", good.replace(lines[1], "extra ")),
    ]


@pytest.mark.parametrize(
    ("label", "text"), _malformed_proofs(), ids=[n for n, _ in _malformed_proofs()]
)
def test_malformed_tlog_proofs_are_rejected(label: str, text: str) -> None:
    with pytest.raises(NoteFormatError):
        parse_tlog_proof(text)
