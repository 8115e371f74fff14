"""Minimal RFC 9162 Merkle tree hashing for dataset record trees: root, inclusion proof, verify.

Private to `modelward.provenance` until `modelward.core.merkle` is available; the functions take
and return raw 32-byte hashes and do no I/O. Leaf hash = SHA-256(0x00 ‖ data), node hash =
SHA-256(0x01 ‖ left ‖ right), the empty tree's root = SHA-256(""), and trees split at the largest
power of two smaller than their size (RFC 9162 §2.1.1). Does not do consistency proofs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(size: int) -> int:
    """The largest power of two strictly smaller than `size` (size >= 2)."""
    return 1 << ((size - 1).bit_length() - 1)


def root_from_leaf_hashes(leaves: Sequence[bytes]) -> bytes:
    """The Merkle tree hash of leaves that are already leaf hashes."""
    if not leaves:
        return EMPTY_ROOT
    # Bottom-up: RFC 9162's recursive split yields the same tree as pairing left to right and
    # promoting an odd last node unchanged, which avoids deep recursion on large datasets.
    level = list(leaves)
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """The audit path (RFC 9162 §2.1.3.1) for leaf `index`, nearest sibling first."""
    if not 0 <= index < len(leaves):
        raise IndexError(f"leaf {index} is outside a tree of {len(leaves)} leaves")
    proof: list[bytes] = []
    level = list(leaves)
    position = index
    while len(level) > 1:
        sibling = position ^ 1
        if sibling < len(level):
            proof.append(level[sibling])
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
        position //= 2
    return proof


def root_from_inclusion_proof(
    leaf: bytes, index: int, tree_size: int, proof: Sequence[bytes]
) -> bytes | None:
    """The root implied by an audit path (RFC 9162 §2.1.3.2), or None if the path is malformed."""
    if not 0 <= index < tree_size or any(len(h) != HASH_SIZE for h in proof):
        return None
    fn, sn = index, tree_size - 1
    result = leaf
    for sibling in proof:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            result = node_hash(sibling, result)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            result = node_hash(result, sibling)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        return None
    return result


def verify_inclusion(
    leaf: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    computed = root_from_inclusion_proof(leaf, index, tree_size, proof)
    return computed is not None and computed == root
