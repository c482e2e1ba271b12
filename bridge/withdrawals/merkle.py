"""OpenZeppelin's ``StandardMerkleTree`` (@openzeppelin/merkle-tree), byte for byte.

Leaves are ``keccak256(keccak256(abi.encode(values)))``; the tree sorts them by hash and
stores ``2n - 1`` nodes in one array (root at 0, leaf ``i`` at ``2n - 2 - i``, children of
``j`` at ``2j + 1`` and ``2j + 2``); a parent hashes its two children in sorted order, so a
proof needs no left/right flags and OpenZeppelin's ``MerkleProof.verify`` accepts it.

Why the double hash: ``verify`` alone cannot tell a leaf from an inner node (an inner node
with the rest of the proof verifies too). An inner node is the keccak of 64 bytes, a leaf
the keccak of a keccak, so nobody can present an inner node as a leaf of encoded values
without a second preimage.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eth_abi.abi import encode
from eth_utils.crypto import keccak

__all__ = ["MerkleTree", "leaf_hash", "node_hash", "verify"]


def leaf_hash(types: Sequence[str], values: Sequence[Any]) -> bytes:
    """OpenZeppelin's ``standardLeafHash``: ``keccak256(keccak256(abi.encode(values)))``."""
    return keccak(keccak(encode(list(types), list(values))))


def node_hash(a: bytes, b: bytes) -> bytes:
    """A parent: keccak of its children, smaller first (``Hashes.commutativeKeccak256``).
    Equal-length byte strings compare like the big-endian integers they are."""
    return keccak(a + b if a <= b else b + a)


def verify(proof: Sequence[bytes], root: bytes, leaf: bytes) -> bool:
    """``MerkleProof.verify``: fold the proof into the leaf and compare with the root."""
    if any(len(node) != 32 for node in (root, leaf, *proof)):
        return False  # bytes32 on chain: nothing else can be a node there
    computed = leaf
    for sibling in proof:
        computed = node_hash(computed, sibling)
    return computed == root


class MerkleTree:
    """The tree over distinct 32-byte leaf hashes (from :func:`leaf_hash`)."""

    def __init__(self, leaves: Sequence[bytes]) -> None:
        if not leaves:
            raise ValueError("a Merkle tree needs at least one leaf")
        if any(not isinstance(leaf, bytes) or len(leaf) != 32 for leaf in leaves):
            raise ValueError("Merkle leaves must be 32-byte hashes")
        ordered = sorted(leaves)
        if len(set(ordered)) != len(ordered):
            # Two equal leaves would share one proof: a withdrawal must be claimable alone.
            raise ValueError("duplicate Merkle leaf")
        n = len(ordered)
        nodes = [b""] * (2 * n - 1)
        for i, leaf in enumerate(ordered):
            nodes[2 * n - 2 - i] = leaf
        for j in range(n - 2, -1, -1):
            nodes[j] = node_hash(nodes[2 * j + 1], nodes[2 * j + 2])
        self.nodes: tuple[bytes, ...] = tuple(nodes)  # OpenZeppelin's ``dump().tree``
        self._index = {leaf: 2 * n - 2 - i for i, leaf in enumerate(ordered)}

    @property
    def root(self) -> bytes:
        return self.nodes[0]

    def __len__(self) -> int:
        return len(self._index)

    def proof(self, leaf: bytes) -> list[bytes]:
        """The siblings from ``leaf`` up to the root (empty for a one-leaf tree).
        KeyError for a hash that is not a leaf, inner nodes included."""
        j = self._index[leaf]
        proof = []
        while j > 0:
            proof.append(self.nodes[j + 1 if j % 2 else j - 1])
            j = (j - 1) // 2
        return proof
