"""The provenance package's private RFC 9162 helpers against a recursive reference."""

from __future__ import annotations

import hashlib

import pytest

from modelward.provenance import _merkle


def _reference_root(leaves: list[bytes]) -> bytes:
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return _merkle.node_hash(_reference_root(leaves[:k]), _reference_root(leaves[k:]))


def _leaves(n: int) -> list[bytes]:
    return [_merkle.leaf_hash(str(i).encode()) for i in range(n)]


def test_leaf_and_node_use_domain_separation() -> None:
    assert _merkle.leaf_hash(b"") == hashlib.sha256(b"\x00").digest()
    assert (
        _merkle.node_hash(b"a" * 32, b"b" * 32)
        == hashlib.sha256(b"\x01" + b"a" * 32 + b"b" * 32).digest()
    )


def test_rfc9162_empty_and_known_leaf() -> None:
    assert _merkle.root_from_leaf_hashes([]).hex() == (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    assert _merkle.leaf_hash(b"").hex() == (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    )


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 16, 17, 31])
def test_root_and_every_inclusion_proof_match_the_reference(size: int) -> None:
    leaves = _leaves(size)
    root = _merkle.root_from_leaf_hashes(leaves)
    assert root == _reference_root(leaves)
    for index in range(size):
        proof = _merkle.inclusion_proof(leaves, index)
        assert _merkle.verify_inclusion(leaves[index], index, size, proof, root)
        assert not _merkle.verify_inclusion(_merkle.leaf_hash(b"x"), index, size, proof, root)
        if proof:
            tampered = [bytes([proof[0][0] ^ 1]) + proof[0][1:], *proof[1:]]
            assert not _merkle.verify_inclusion(leaves[index], index, size, tampered, root)
            assert not _merkle.verify_inclusion(leaves[index], index, size, proof[:-1], root)
        assert not _merkle.verify_inclusion(leaves[index], index, size, [*proof, root], root)


def test_inclusion_rejects_wrong_index_and_size() -> None:
    leaves = _leaves(6)
    root = _merkle.root_from_leaf_hashes(leaves)
    proof = _merkle.inclusion_proof(leaves, 2)
    assert not _merkle.verify_inclusion(leaves[2], 3, 6, proof, root)
    assert not _merkle.verify_inclusion(leaves[2], 2, 4, proof, root)
    assert not _merkle.verify_inclusion(leaves[2], 9, 6, proof, root)
    assert not _merkle.verify_inclusion(leaves[2], 2, 6, [b"short"], root)
    with pytest.raises(IndexError):
        _merkle.inclusion_proof(leaves, 6)
