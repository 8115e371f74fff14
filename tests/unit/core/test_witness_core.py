"""C2SP cosignatures and the tlog-witness `add-checkpoint` decision: formats as the specs write
them, honest growth accepted, and every refusal the spec names (stale size, split view, rewritten
history, wrong or unknown log key, malformed bodies)."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from modelward.core import merkle
from modelward.core.checkpoint import (
    Checkpoint,
    NoteVerifier,
    parse_signed_note,
    sign_checkpoint,
)
from modelward.core.cosignature import (
    CosignerKey,
    add_signatures,
    cosign,
    cosigned_message,
    tally_cosignatures,
    verify_cosignature,
)
from modelward.core.witness_protocol import (
    AddCheckpointRequest,
    WitnessedState,
    decide_add_checkpoint,
    parse_add_checkpoint,
    parse_cosignature_lines,
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

ORIGIN = "example.com/log"
LOG_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
OTHER_LOG_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(2, 34)))
LOG = NoteVerifier.from_public_key(ORIGIN, LOG_KEY.public_key())
WITNESS_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(100, 132)))
WITNESS = CosignerKey.from_public_key("witness.example/w1", WITNESS_KEY.public_key())
LOGS = {ORIGIN: [LOG]}


def _tree(count: int, fork_at: int | None = None) -> list[list[bytes]]:
    leaves = [merkle.leaf_hash(b"entry %d" % i) for i in range(count)]
    if fork_at is not None:
        leaves[fork_at] = merkle.leaf_hash(b"rewritten entry %d" % fork_at)
    return merkle.complete_levels(leaves)


def _root(levels: list[list[bytes]], size: int) -> bytes:
    return merkle.root_from_levels(levels, size)


def _note(levels: list[list[bytes]], size: int, key: Ed25519PrivateKey = LOG_KEY) -> str:
    return sign_checkpoint(Checkpoint(ORIGIN, size, _root(levels, size)), ORIGIN, key)


def _proof(levels: list[list[bytes]], old: int, new: int) -> tuple[bytes, ...]:
    if old in (0, new):
        return ()
    return tuple(merkle.consistency_proof(old, new, lambda lv, i: levels[lv][i]))


def _state(levels: list[list[bytes]], size: int) -> WitnessedState:
    note = _note(levels, size)
    return WitnessedState(Checkpoint(ORIGIN, size, _root(levels, size)), note)


HONEST = _tree(20)
FORK = _tree(20, fork_at=3)


# -- cosignatures -------------------------------------------------------------------------------


def test_cosigner_key_id_and_vkey_follow_the_spec() -> None:
    raw = WITNESS_KEY.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    expected = hashlib.sha256(b"witness.example/w1\n\x04" + raw).digest()[:4]
    assert WITNESS.key_id == expected
    encoded = base64.b64encode(b"\x04" + raw).decode()
    assert WITNESS.vkey() == f"witness.example/w1+{expected.hex()}+{encoded}"
    assert CosignerKey.from_vkey(WITNESS.vkey()) == WITNESS


@pytest.mark.parametrize(
    "text",
    [
        LOG.verifier_key(),  # a log (type 0x01) key is not a cosigner key
        "w+00000000+" + base64.b64encode(b"\x04" + b"\x00" * 32).decode(),
        "w",
        "bad name+12345678+AA==",
    ],
)
def test_bad_witness_vkeys_are_refused(text: str) -> None:
    with pytest.raises(NoteFormatError):
        CosignerKey.from_vkey(text)


def test_cosigned_message_is_the_spec_layout() -> None:
    body = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    assert cosigned_message(body, 1679315147) == (
        b"cosignature/v1\ntime 1679315147\n" + body.encode()
    )


def test_cosignature_round_trip_and_timestamp_layout() -> None:
    note = parse_signed_note(_note(HONEST, 5))
    line = cosign(note.text, WITNESS.name, WITNESS_KEY, 1_700_000_000)
    assert line.key_id == WITNESS.key_id
    assert line.signature[:8] == (1_700_000_000).to_bytes(8, "big")
    assert len(line.signature) == 72
    cosigned = add_signatures(note, [line])
    assert verify_cosignature(cosigned, WITNESS, now=1_700_000_000).timestamp == 1_700_000_000
    # the log signature still verifies and the cosignature line parses back
    reparsed = parse_signed_note(cosigned.to_text())
    assert reparsed == cosigned


def test_tampered_cosignatures_fail() -> None:
    note = parse_signed_note(_note(HONEST, 5))
    line = cosign(note.text, WITNESS.name, WITNESS_KEY, 1_700_000_000)
    later = type(line)(
        line.name, line.key_id, (1_700_000_001).to_bytes(8, "big") + line.signature[8:]
    )
    with pytest.raises(SignatureMismatchError, match="does not verify"):
        verify_cosignature(add_signatures(note, [later]), WITNESS)
    other_note = parse_signed_note(_note(HONEST, 6))
    with pytest.raises(SignatureMismatchError, match="does not verify"):
        verify_cosignature(add_signatures(other_note, [line]), WITNESS)
    with pytest.raises(SignatureMismatchError, match="no cosignature"):
        verify_cosignature(note, WITNESS)
    with pytest.raises(SignatureMismatchError, match="future"):
        verify_cosignature(add_signatures(note, [line]), WITNESS, now=1_600_000_000)


def test_tally_counts_only_trusted_valid_cosignatures() -> None:
    note = parse_signed_note(_note(HONEST, 5))
    second_key = Ed25519PrivateKey.from_private_bytes(bytes(range(50, 82)))
    second = CosignerKey.from_public_key("witness.example/w2", second_key.public_key())
    third = CosignerKey.from_public_key(
        "witness.example/w3", Ed25519PrivateKey.generate().public_key()
    )
    good = cosign(note.text, WITNESS.name, WITNESS_KEY, 10)
    bad = cosign(note.text, second.name, second_key, 10)
    bad = type(bad)(bad.name, bad.key_id, bad.signature[:-1] + bytes([bad.signature[-1] ^ 1]))
    tally = tally_cosignatures(add_signatures(note, [good, bad]), [WITNESS, second, third])
    assert [c.name for c in tally.vouched] == [WITNESS.name]
    assert tally.missing == (third.name,)
    assert len(tally.invalid) == 1 and second.name in tally.invalid[0]


def test_tally_counts_each_witness_key_once() -> None:
    """The same key trusted twice, or a copy of it under another name (whose cosignature line is
    the same signature under another key id), is one witness, not two."""
    note = parse_signed_note(_note(HONEST, 5))
    good = cosign(note.text, WITNESS.name, WITNESS_KEY, 10)
    alias = CosignerKey("witness.example/copy", WITNESS.public_key)
    copied = type(good)(alias.name, alias.key_id, good.signature)
    cosigned = add_signatures(note, [good, copied])
    tally = tally_cosignatures(cosigned, [WITNESS, WITNESS, alias])
    assert [c.name for c in tally.vouched] == [WITNESS.name]
    assert tally.missing == () and tally.invalid == ()
    assert len(tally.duplicates) == 2
    assert all(WITNESS.name in d and "counted once" in d for d in tally.duplicates)
    assert tally.to_dict()["duplicates"] == list(tally.duplicates)


# -- request format -----------------------------------------------------------------------------


def test_request_round_trip() -> None:
    request = AddCheckpointRequest(5, _proof(HONEST, 5, 11), _note(HONEST, 11))
    text = request.to_text()
    assert text.startswith("old 5\n")
    assert parse_add_checkpoint(text.encode()) == request


@pytest.mark.parametrize(
    "body",
    [
        "old 05\n\n" + _note(HONEST, 5),
        "old -1\n\n" + _note(HONEST, 5),
        "old five\n\n" + _note(HONEST, 5),
        "5\n\n" + _note(HONEST, 5),
        "old 5\nnot base64!\n\n" + _note(HONEST, 5),
        "old 5\n" + base64.b64encode(b"short").decode() + "\n\n" + _note(HONEST, 5),
        "old 5\n"
        + "\n".join([base64.b64encode(bytes(32)).decode()] * 64)
        + "\n\n"
        + _note(HONEST, 5),
        "old 5\n" + _note(HONEST, 5),
        "old 5\n\nnot a checkpoint\n",
    ],
)
def test_malformed_requests_are_refused(body: str) -> None:
    with pytest.raises(NoteFormatError):
        parse_add_checkpoint(body)


def test_response_lines_parse_strictly() -> None:
    note = parse_signed_note(_note(HONEST, 5))
    line = cosign(note.text, WITNESS.name, WITNESS_KEY, 10).line()
    assert parse_cosignature_lines(line)[0].name == WITNESS.name
    for bad in ("", "no dash\n", line.rstrip("\n")):
        with pytest.raises(NoteFormatError):
            parse_cosignature_lines(bad)


# -- the witness's decision -----------------------------------------------------------------------


def _decide(old: int, new: int, latest: WitnessedState | None, levels=HONEST, key=LOG_KEY):  # type: ignore[no-untyped-def]
    request = AddCheckpointRequest(old, _proof(levels, old, new), _note(levels, new, key))
    return decide_add_checkpoint(request, LOGS, latest)


def test_first_checkpoint_is_accepted_then_honest_growth() -> None:
    checkpoint, _ = _decide(0, 5, None)
    assert checkpoint.size == 5
    for old, new in ((5, 6), (6, 13), (13, 13), (13, 20)):
        checkpoint, _ = _decide(old, new, _state(HONEST, old))
        assert checkpoint.size == new


def test_stale_old_size_gets_the_witness_size() -> None:
    with pytest.raises(StaleSizeError) as caught:
        _decide(0, 11, _state(HONEST, 7))
    assert caught.value.current_size == 7
    with pytest.raises(StaleSizeError) as caught:
        _decide(5, 11, None)
    assert caught.value.current_size == 0


def test_old_size_beyond_the_checkpoint_is_a_bad_request() -> None:
    request = AddCheckpointRequest(9, (), _note(HONEST, 5))
    with pytest.raises(InputError, match="larger"):
        decide_add_checkpoint(request, LOGS, _state(HONEST, 9))


def test_rewritten_history_is_refused() -> None:
    """The log rewrote entry 3 after the witness cosigned size 5: no proof from the witness's
    size 5 (honest root) leads to the forked tree, whatever the log sends."""
    latest = _state(HONEST, 5)
    with pytest.raises(ProofError):
        _decide(5, 12, latest, levels=FORK)
    # nor does an honest-looking proof taken from the honest tree
    request = AddCheckpointRequest(5, _proof(HONEST, 5, 12), _note(FORK, 12))
    with pytest.raises(ProofError):
        decide_add_checkpoint(request, LOGS, latest)


def test_split_view_is_refused() -> None:
    with pytest.raises(SplitViewError, match="split view"):
        _decide(8, 8, _state(HONEST, 8), levels=FORK)


def test_wrong_log_key_and_unknown_log_are_refused() -> None:
    with pytest.raises(SignatureMismatchError):
        _decide(0, 5, None, key=OTHER_LOG_KEY)
    other = sign_checkpoint(Checkpoint("other.example/log", 5, _root(HONEST, 5)), ORIGIN, LOG_KEY)
    with pytest.raises(NotFoundError):
        decide_add_checkpoint(AddCheckpointRequest(0, (), other), LOGS, None)


def test_proof_from_zero_must_be_empty_and_equal_sizes_need_no_proof() -> None:
    request = AddCheckpointRequest(0, (bytes(32),), _note(HONEST, 5))
    with pytest.raises(ProofError):
        decide_add_checkpoint(request, LOGS, None)
    request = AddCheckpointRequest(5, (bytes(32),), _note(HONEST, 5))
    with pytest.raises(ProofError):
        decide_add_checkpoint(request, LOGS, _state(HONEST, 5))


def test_flipped_proof_byte_is_refused() -> None:
    proof = list(_proof(HONEST, 5, 12))
    proof[0] = bytes([proof[0][0] ^ 1]) + proof[0][1:]
    request = AddCheckpointRequest(5, tuple(proof), _note(HONEST, 12))
    with pytest.raises(ProofError):
        decide_add_checkpoint(request, LOGS, _state(HONEST, 5))


def test_the_spec_example_cosignature_line_has_the_layout_we_read() -> None:
    """tlog-cosignature's example: key id, then the u64 timestamp of its example message
    (`time 1679315147`), then a 64-byte signature."""
    note = parse_signed_note(
        "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n"
        "— example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5"
        "/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
        "— witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJs"
        "X3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n"
    )
    cosignature = note.signatures[1]
    assert len(cosignature.signature) == 72
    assert int.from_bytes(cosignature.signature[:8], "big") == 1679315147
