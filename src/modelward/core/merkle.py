"""RFC 9162 Merkle tree math: hashes, roots, inclusion and consistency proofs.

The tree is addressed by complete subtrees: node `(level, index)` is the hash of the `2**level`
leaves starting at `index * 2**level`; level 0 holds the leaf hashes. A log that stores every
complete-subtree node as leaves are appended (see `CompactRange` and `nodes_completed_by_append`)
can answer any proof with O(log n) lookups, through a `NodeReader` or a batch of `positions`.

Pure: hashes in, hashes out. Does not store, read files or know what a leaf's bytes mean.
Verification follows RFC 9162 §2.1.3.2 and §2.1.4.2, with two stricter rules: leaf and proof
hashes must be 32 bytes, and a consistency proof from the empty tree is always rejected.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence

from modelward.errors import ProofError

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
MAX_TREE_SIZE = 1 << 63
MAX_PROOF_LENGTH = 128

Position = tuple[int, int]
"""A complete subtree: (level, index)."""

NodeReader = Callable[[int, int], bytes]
"""Returns the hash of the complete subtree (level, index)."""

_sha256 = hashlib.sha256


def leaf_hash(data: bytes) -> bytes:
    """SHA-256(0x00 ‖ data)."""
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 ‖ left ‖ right)."""
    return _sha256(b"\x01" + left + right).digest()


# -- tree shapes -------------------------------------------------------------------------------


def _check_size(size: int, what: str = "tree size") -> None:
    if isinstance(size, bool) or not isinstance(size, int) or size < 0 or size >= MAX_TREE_SIZE:
        raise ProofError(f"{what} {size!r} is not an integer between 0 and 2**63 - 1")


def _split(size: int) -> int:
    """The largest power of two strictly smaller than `size` (size >= 2)."""
    return 1 << ((size - 1).bit_length() - 1)


def subtree_positions(start: int, end: int) -> list[Position]:
    """The complete subtrees, left to right, whose concatenation is the leaves [start, end) of a
    range whose `start` is aligned as RFC 9162's recursion aligns it (a multiple of the largest
    power of two not exceeding `end - start`)."""
    positions: list[Position] = []
    remaining = end - start
    offset = start
    while remaining > 0:
        level = remaining.bit_length() - 1
        positions.append((level, offset >> level))
        offset += 1 << level
        remaining -= 1 << level
    return positions


def frontier_positions(size: int) -> list[Position]:
    """The right edge of a tree of `size` leaves: its maximal complete subtrees, left to right."""
    _check_size(size)
    return subtree_positions(0, size)


def fold_subtrees(hashes: Sequence[bytes]) -> bytes:
    """The hash of a range made of complete subtrees given left to right (fold from the right)."""
    if not hashes:
        return EMPTY_ROOT
    result = hashes[-1]
    for left in reversed(hashes[:-1]):
        result = node_hash(left, result)
    return result


def inclusion_proof_positions(index: int, size: int) -> list[list[Position]]:
    """For each element of the inclusion proof of leaf `index` in a tree of `size` (leaf sibling
    first), the complete subtrees whose fold is that element."""
    _check_size(size)
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < size:
        raise ProofError(f"leaf index {index!r} is outside a tree of size {size}")
    path: list[list[Position]] = []
    start, end = 0, size
    while end - start > 1:
        k = _split(end - start)
        if index < start + k:
            path.append(subtree_positions(start + k, end))
            end = start + k
        else:
            path.append(subtree_positions(start, start + k))
            start += k
    path.reverse()
    return path


def consistency_proof_positions(size1: int, size2: int) -> list[list[Position]]:
    """For each element of the consistency proof between tree sizes, the complete subtrees whose
    fold is that element (RFC 9162 §2.1.4.1)."""
    _check_size(size1, "first tree size")
    _check_size(size2, "second tree size")
    if size1 == 0 or size1 > size2:
        raise ProofError(f"no consistency proof exists from size {size1} to size {size2}")
    proof: list[list[Position]] = []
    start, end, m, complete = 0, size2, size1, True
    while True:
        n = end - start
        if m == n:
            if not complete:
                proof.append(subtree_positions(start, end))
            break
        k = _split(n)
        if m <= k:
            proof.append(subtree_positions(start + k, end))
            end = start + k
        else:
            proof.append(subtree_positions(start, start + k))
            start += k
            m -= k
            complete = False
    proof.reverse()
    return proof


def _resolve(groups: list[list[Position]], node_reader: NodeReader) -> list[bytes]:
    return [fold_subtrees([node_reader(level, idx) for level, idx in group]) for group in groups]


def inclusion_proof(index: int, size: int, node_reader: NodeReader) -> list[bytes]:
    """The RFC 9162 inclusion proof of leaf `index`, from complete-subtree hashes."""
    return _resolve(inclusion_proof_positions(index, size), node_reader)


def consistency_proof(size1: int, size2: int, node_reader: NodeReader) -> list[bytes]:
    """The RFC 9162 consistency proof from `size1` to `size2`, from complete-subtree hashes."""
    return _resolve(consistency_proof_positions(size1, size2), node_reader)


def root_from_nodes(size: int, node_reader: NodeReader) -> bytes:
    """The root of a tree of `size` leaves, from the hashes of its right edge."""
    return fold_subtrees([node_reader(level, idx) for level, idx in frontier_positions(size)])


def reader_from_mapping(nodes: Mapping[Position, bytes]) -> NodeReader:
    """A `NodeReader` over a mapping; a missing node is a `ProofError`."""

    def read(level: int, index: int) -> bytes:
        try:
            return nodes[(level, index)]
        except KeyError:
            raise ProofError(f"tree node (level {level}, index {index}) is not available") from None

    return read


# -- whole trees ------------------------------------------------------------------------------


def complete_levels(leaf_hashes: Sequence[bytes]) -> list[list[bytes]]:
    """Every complete-subtree hash, level by level: `levels[l][i]` is node (l, i)."""
    levels: list[list[bytes]] = [list(leaf_hashes)]
    sha = _sha256
    current = levels[0]
    while len(current) > 1:
        pairs = len(current) // 2
        nxt = [sha(b"\x01" + current[2 * i] + current[2 * i + 1]).digest() for i in range(pairs)]
        levels.append(nxt)
        current = nxt
    return levels


def root_from_levels(levels: Sequence[Sequence[bytes]], size: int) -> bytes:
    """The root of the tree of the first `size` leaves, from `complete_levels` output."""
    if size > (len(levels[0]) if levels else 0):
        raise ProofError(f"tree of size {size} is larger than the leaves given")

    def read(level: int, index: int) -> bytes:
        return levels[level][index]

    return root_from_nodes(size, read)


def root_from_leaves(leaf_hashes: Sequence[bytes]) -> bytes:
    """The RFC 9162 root (MTH) of the given leaf hashes; EMPTY_ROOT for none."""
    if not leaf_hashes:
        return EMPTY_ROOT
    return root_from_levels(complete_levels(leaf_hashes), len(leaf_hashes))


# -- appending --------------------------------------------------------------------------------


def trailing_frontier(size: int) -> list[Position]:
    """The right-edge nodes a leaf appended at index `size` merges with, lowest level first."""
    _check_size(size)
    positions: list[Position] = []
    level = 0
    while (size >> level) & 1:
        positions.append((level, (size >> level) - 1))
        level += 1
    return positions


def nodes_completed_by_append(
    size: int, new_leaf: bytes, node_reader: NodeReader
) -> list[tuple[int, int, bytes]]:
    """The (level, index, hash) of the nodes above level 0 that become complete when `new_leaf`
    is appended to a tree of `size` leaves, lowest first. Reads only the nodes it merges with."""
    _check_hash(new_leaf, "leaf hash")
    completed: list[tuple[int, int, bytes]] = []
    current = new_leaf
    for level, idx in trailing_frontier(size):
        current = node_hash(node_reader(level, idx), current)
        completed.append((level + 1, (size >> (level + 1)), current))
    return completed


class CompactRange:
    """The right edge of a growing tree: one hash per maximal complete subtree.

    `append` returns the new complete nodes (level, index, hash), level 0 first, so a store can
    persist them; `root` is the tree's current root.
    """

    def __init__(self, size: int = 0, hashes: Iterable[bytes] = ()) -> None:
        _check_size(size)
        self._hashes = list(hashes)
        if len(self._hashes) != size.bit_count():
            raise ProofError(
                f"a tree of size {size} has {size.bit_count()} edge hashes, not {len(self._hashes)}"
            )
        for value in self._hashes:
            _check_hash(value, "edge hash")
        self._size = size

    @classmethod
    def from_reader(cls, size: int, node_reader: NodeReader) -> CompactRange:
        return cls(size, [node_reader(level, idx) for level, idx in frontier_positions(size)])

    @property
    def size(self) -> int:
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        return tuple(self._hashes)

    def append(self, new_leaf: bytes) -> list[tuple[int, int, bytes]]:
        _check_hash(new_leaf, "leaf hash")
        size = self._size
        completed = [(0, size, new_leaf)]
        current = new_leaf
        level = 0
        while (size >> level) & 1:
            current = node_hash(self._hashes.pop(), current)
            level += 1
            completed.append((level, size >> level, current))
        self._hashes.append(current)
        self._size = size + 1
        return completed

    def root(self) -> bytes:
        return fold_subtrees(self._hashes)


# -- verification -----------------------------------------------------------------------------


def _check_hash(value: object, what: str) -> None:
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        size = len(value) if isinstance(value, bytes) else type(value).__name__
        raise ProofError(f"{what} must be {HASH_SIZE} bytes, got {size}")


def _check_bytes(value: object, what: str) -> None:
    # Roots are only compared, so a root of the wrong length can only fail to match; two equal
    # roots of equal sizes are consistent whatever their length (as the RFC 9162 vectors expect).
    if not isinstance(value, bytes):
        raise ProofError(f"{what} must be bytes, got {type(value).__name__}")


def _check_proof(proof: Sequence[bytes]) -> None:
    if len(proof) > MAX_PROOF_LENGTH:
        raise ProofError(f"proof has {len(proof)} hashes; at most {MAX_PROOF_LENGTH} are possible")
    for position, value in enumerate(proof):
        _check_hash(value, f"proof hash {position}")


def root_from_inclusion_proof(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root implied by an inclusion proof (RFC 9162 §2.1.3.2); ProofError if malformed."""
    _check_size(size)
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < size:
        raise ProofError(f"leaf index {index!r} is outside a tree of size {size}")
    _check_hash(leaf, "leaf hash")
    _check_proof(proof)
    fn, sn = index, size - 1
    result = leaf
    for sibling in proof:
        if sn == 0:
            raise ProofError("inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            result = node_hash(sibling, result)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            result = node_hash(result, sibling)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof is shorter than the tree is deep")
    return result


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Raise ProofError unless `proof` shows leaf `index` of the tree of `size` under `root`."""
    _check_bytes(root, "root hash")
    if root_from_inclusion_proof(index, size, leaf, proof) != root:
        raise ProofError(f"inclusion proof for leaf {index} does not lead to the tree's root")


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Raise ProofError unless `proof` shows the tree of `size2` extends the tree of `size1`."""
    _check_size(size1, "first tree size")
    _check_size(size2, "second tree size")
    _check_bytes(root1, "first root")
    _check_bytes(root2, "second root")
    _check_proof(proof)
    if size1 == 0:
        raise ProofError("a consistency proof from the empty tree is not accepted")
    if size1 > size2:
        raise ProofError(f"tree size {size2} is smaller than the earlier size {size1}")
    if size1 == size2:
        if proof:
            raise ProofError("a consistency proof between equal sizes must be empty")
        if root1 != root2:
            raise ProofError(f"two different roots for the same tree size {size1}")
        return
    path = list(proof)
    if size1 & (size1 - 1) == 0:
        path.insert(0, root1)
    if not path:
        raise ProofError("consistency proof is empty")
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    first = second = path[0]
    for value in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is longer than needed")
        if fn & 1 or fn == sn:
            first = node_hash(value, first)
            second = node_hash(value, second)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            second = node_hash(second, value)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof is shorter than needed")
    if first != root1:
        raise ProofError(f"consistency proof does not lead to the root of size {size1}")
    if second != root2:
        raise ProofError(f"consistency proof does not lead to the root of size {size2}")
