"""core.merkle against a brute-force RFC 9162 reference: roots, proofs from stored nodes, the
append frontier, and rejection of every malformed proof."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelward.core import merkle
from modelward.errors import ProofError, VerificationError

MAX = 70


def _reference_root(leaves: list[bytes]) -> bytes:
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return merkle.node_hash(_reference_root(leaves[:k]), _reference_root(leaves[k:]))


def _reference_path(m: int, leaves: list[bytes]) -> list[bytes]:
    n = len(leaves)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return [*_reference_path(m, leaves[:k]), _reference_root(leaves[k:])]
    return [*_reference_path(m - k, leaves[k:]), _reference_root(leaves[:k])]


def _reference_subproof(m: int, leaves: list[bytes], complete: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if complete else [_reference_root(leaves)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return [*_reference_subproof(m, leaves[:k], complete), _reference_root(leaves[k:])]
    return [*_reference_subproof(m - k, leaves[k:], False), _reference_root(leaves[:k])]


LEAVES = [merkle.leaf_hash(i.to_bytes(2, "big")) for i in range(MAX)]
LEVELS = merkle.complete_levels(LEAVES)


def _read(level: int, index: int) -> bytes:
    return LEVELS[level][index]


def test_known_hashes() -> None:
    assert merkle.EMPTY_ROOT.hex().startswith("e3b0c442")
    assert merkle.leaf_hash(b"") == hashlib.sha256(b"\x00").digest()
    assert (
        merkle.node_hash(b"a" * 32, b"b" * 32)
        == hashlib.sha256(b"\x01" + b"a" * 32 + b"b" * 32).digest()
    )
    assert merkle.root_from_leaves([]) == merkle.EMPTY_ROOT


@pytest.mark.parametrize("size", range(1, MAX + 1))
def test_proofs_match_brute_force_for_every_index(size: int) -> None:
    leaves = LEAVES[:size]
    root = _reference_root(leaves)
    assert merkle.root_from_leaves(leaves) == root
    assert merkle.root_from_nodes(size, _read) == root
    for index in range(size):
        proof = merkle.inclusion_proof(index, size, _read)
        assert proof == _reference_path(index, leaves)
        merkle.verify_inclusion(index, size, leaves[index], proof, root)
        with pytest.raises(ProofError):
            merkle.verify_inclusion(index, size, merkle.leaf_hash(b"other"), proof, root)
        if proof:
            with pytest.raises(ProofError):
                merkle.verify_inclusion(index, size, leaves[index], proof[:-1], root)
    for size1 in range(1, size + 1):
        proof = merkle.consistency_proof(size1, size, _read)
        assert proof == _reference_subproof(size1, leaves, True)
        merkle.verify_consistency(size1, size, proof, _reference_root(LEAVES[:size1]), root)


def test_append_frontier_stores_exactly_the_complete_nodes() -> None:
    edge = merkle.CompactRange()
    stored: dict[tuple[int, int], bytes] = {}
    for index, leaf in enumerate(LEAVES):
        completed_above = merkle.nodes_completed_by_append(
            index, leaf, merkle.reader_from_mapping(stored)
        )
        new = edge.append(leaf)
        assert new[0] == (0, index, leaf)
        assert new[1:] == completed_above
        for level, idx, value in new:
            assert LEVELS[level][idx] == value
            stored[(level, idx)] = value
        assert edge.root() == _reference_root(LEAVES[: index + 1])
        assert edge.size == index + 1
        rebuilt = merkle.CompactRange.from_reader(edge.size, merkle.reader_from_mapping(stored))
        assert rebuilt.hashes == edge.hashes
    expected = {(lv, i) for lv, level in enumerate(LEVELS) for i in range(len(level))}
    assert set(stored) == expected


def test_compact_range_rejects_wrong_edge() -> None:
    with pytest.raises(ProofError):
        merkle.CompactRange(3, [b"\x00" * 32])
    with pytest.raises(ProofError):
        merkle.CompactRange(1, [b"short"])


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=5000), st.data())
def test_large_trees_proofs_verify(size: int, data: st.DataObject) -> None:
    leaves = [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(size)]
    levels = merkle.complete_levels(leaves)

    def read(level: int, index: int) -> bytes:
        return levels[level][index]

    root = merkle.root_from_leaves(leaves)
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    merkle.verify_inclusion(
        index, size, leaves[index], merkle.inclusion_proof(index, size, read), root
    )
    size1 = data.draw(st.integers(min_value=1, max_value=size))
    root1 = merkle.root_from_leaves(leaves[:size1])
    proof = merkle.consistency_proof(size1, size, read)
    merkle.verify_consistency(size1, size, proof, root1, root)
    if size1 < size:
        with pytest.raises(ProofError):
            merkle.verify_consistency(size1, size, proof, merkle.leaf_hash(b"fork"), root)


@settings(max_examples=100, deadline=None)
@given(
    st.integers(min_value=2, max_value=300),
    st.data(),
)
def test_any_flipped_bit_is_rejected(size: int, data: st.DataObject) -> None:
    leaves = LEAVES[: min(size, MAX)]
    size = len(leaves)
    root = merkle.root_from_leaves(leaves)
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    proof = merkle.inclusion_proof(index, size, _read)
    position = data.draw(st.integers(min_value=0, max_value=len(proof) - 1))
    bit = data.draw(st.integers(min_value=0, max_value=255))
    changed = bytearray(proof[position])
    changed[bit // 8] ^= 1 << (bit % 8)
    proof[position] = bytes(changed)
    with pytest.raises(ProofError):
        merkle.verify_inclusion(index, size, leaves[index], proof, root)


def test_malformed_inputs_are_proof_errors() -> None:
    root = merkle.root_from_leaves(LEAVES[:4])
    proof = merkle.inclusion_proof(1, 4, _read)
    with pytest.raises(ProofError, match="32 bytes"):
        merkle.verify_inclusion(1, 4, b"x" * 31, proof, root)
    with pytest.raises(ProofError, match="32 bytes"):
        merkle.verify_inclusion(1, 4, LEAVES[1], [*proof[:-1], b"x" * 33], root)
    with pytest.raises(ProofError, match="outside"):
        merkle.verify_inclusion(4, 4, LEAVES[1], proof, root)
    with pytest.raises(ProofError):
        merkle.verify_inclusion(-1, 4, LEAVES[1], proof, root)
    with pytest.raises(ProofError, match="empty tree"):
        merkle.verify_consistency(0, 4, [], merkle.EMPTY_ROOT, root)
    with pytest.raises(ProofError):
        merkle.verify_consistency(0, 0, [], merkle.EMPTY_ROOT, merkle.EMPTY_ROOT)
    with pytest.raises(ProofError, match="smaller"):
        merkle.verify_consistency(5, 4, [], root, root)
    with pytest.raises(ProofError, match="equal sizes"):
        merkle.verify_consistency(4, 4, [root], root, root)
    with pytest.raises(ProofError, match="at most"):
        merkle.verify_inclusion(1, 4, LEAVES[1], [root] * 200, root)
    with pytest.raises(ProofError):
        merkle.inclusion_proof(0, 0, _read)
    with pytest.raises(ProofError):
        merkle.consistency_proof(0, 3, _read)
    with pytest.raises(ProofError):
        merkle.consistency_proof(4, 3, _read)
    with pytest.raises(ProofError, match="not available"):
        merkle.inclusion_proof(0, 4, merkle.reader_from_mapping({}))
    assert issubclass(ProofError, VerificationError)


def test_positions_are_logarithmic_for_huge_trees() -> None:
    size = 1_000_000
    groups = merkle.inclusion_proof_positions(123_457, size)
    assert len(groups) <= 20
    assert sum(len(group) for group in groups) <= 40
    groups = merkle.consistency_proof_positions(654_321, size)
    assert sum(len(group) for group in groups) <= 60
    assert merkle.frontier_positions(size)[0] == (19, 0)
    assert merkle.trailing_frontier(7) == [(0, 6), (1, 2), (2, 0)]
    assert merkle.trailing_frontier(8) == []
