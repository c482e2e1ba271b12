"""What validators sign for the escrow (docs/withdrawals.md), computed with plain
``abi.encode`` as OpenZeppelin's ``EIP712`` and ``ECDSA`` do on chain.

Digests are ``keccak256(0x1901 || domainSeparator || structHash)``; an array member of a
struct hashes as ``keccak256`` of its elements' 32-byte words (EIP-712 ``encodeData``).
Signatures are 65 bytes ``r | s | v`` with ``v`` 27 or 28 and ``s`` in the lower half: the
only form ``ECDSA.recover`` accepts, so :func:`recover` refuses every other one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from eth_abi.abi import encode
from eth_keys.datatypes import PrivateKey, Signature
from eth_keys.exceptions import BadSignature
from eth_utils.crypto import keccak

from bridge.withdrawals.merkle import leaf_hash

__all__ = [
    "Domain",
    "batch_digest",
    "checkpoint",
    "recover",
    "sign",
    "valset_digest",
    "withdrawal_leaf",
]

NAME = "BridgeEscrow"
VERSION = "1"
DOMAIN_TYPEHASH = keccak(
    b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
BATCH_TYPEHASH = keccak(b"Batch(uint64 batchId,bytes32 root,uint256 total,uint64 valsetNonce)")
VALSET_TYPEHASH = keccak(b"ValidatorSet(uint64 nonce,address[] signers,uint256[] powers)")
WITHDRAWAL_LEAF_TYPES = ("uint64", "address", "uint256", "address", "uint256", "uint64")

# secp256k1's group order; OpenZeppelin's ECDSA refuses s above SECP256K1_N // 2.
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


@dataclass(frozen=True)
class Domain:
    """One escrow deployment: every digest and leaf binds to it, so nothing signed for one
    chain or escrow counts on another."""

    chain_id: int
    escrow: bytes

    def __post_init__(self) -> None:
        if len(self.escrow) != 20:
            raise ValueError("escrow must be a 20-byte address")

    def separator(self) -> bytes:
        return keccak(
            encode(
                ["bytes32", "bytes32", "bytes32", "uint256", "address"],
                [DOMAIN_TYPEHASH, keccak(text=NAME), keccak(text=VERSION), self.chain_id, self.escrow],
            )
        )


def _check_set(signers: Sequence[bytes], powers: Sequence[int]) -> None:
    # Sorting, non-zero addresses and total power are the ledger's and the contract's rules;
    # here only what would make the encoding itself meaningless.
    if len(signers) != len(powers):
        raise ValueError("signers and powers differ in length")


def checkpoint(nonce: int, signers: Sequence[bytes], powers: Sequence[int]) -> bytes:
    """``keccak256(abi.encode(uint64 nonce, address[] signers, uint256[] powers))``: three
    arguments, not one struct (which would add a leading offset word)."""
    _check_set(signers, powers)
    return keccak(encode(["uint64", "address[]", "uint256[]"], [nonce, list(signers), list(powers)]))


def _digest(domain: Domain, struct_hash: bytes) -> bytes:
    return keccak(b"\x19\x01" + domain.separator() + struct_hash)


def batch_digest(domain: Domain, batch_id: int, root: bytes, total: int, valset_nonce: int) -> bytes:
    """The EIP-712 digest of ``Batch(uint64 batchId,bytes32 root,uint256 total,uint64 valsetNonce)``."""
    struct_hash = keccak(
        encode(
            ["bytes32", "uint64", "bytes32", "uint256", "uint64"],
            [BATCH_TYPEHASH, batch_id, root, total, valset_nonce],
        )
    )
    return _digest(domain, struct_hash)


def valset_digest(domain: Domain, nonce: int, signers: Sequence[bytes], powers: Sequence[int]) -> bytes:
    """The EIP-712 digest of ``ValidatorSet(uint64 nonce,address[] signers,uint256[] powers)``."""
    _check_set(signers, powers)
    signers_hash = keccak(encode(["address"] * len(signers), list(signers)))
    powers_hash = keccak(encode(["uint256"] * len(powers), list(powers)))
    words = [VALSET_TYPEHASH, nonce, signers_hash, powers_hash]
    struct_hash = keccak(encode(["bytes32", "uint64", "bytes32", "bytes32"], words))
    return _digest(domain, struct_hash)


def withdrawal_leaf(domain: Domain, batch_id: int, id: int, recipient: bytes, amount: int) -> bytes:
    """A withdrawal's Merkle leaf; escrow, chain and batch are in it so that a proof for one
    batch or deployment proves nothing in another."""
    return leaf_hash(WITHDRAWAL_LEAF_TYPES, [id, recipient, amount, domain.escrow, domain.chain_id, batch_id])


def sign(digest: bytes, private_key: bytes) -> bytes:
    """A 65-byte ``r | s | v`` signature of a 32-byte digest (deterministic, low ``s``)."""
    if len(digest) != 32:
        raise ValueError("a digest is 32 bytes")
    raw = PrivateKey(private_key).sign_msg_hash(digest).to_bytes()  # r | s | y-parity (0 or 1)
    return raw[:64] + bytes([27 + raw[64]])


def recover(digest: bytes, signature: bytes) -> bytes | None:
    """The 20-byte address that signed ``digest``, or None for anything ``ECDSA.recover``
    would refuse: wrong length, ``v`` not 27/28, ``r`` outside ``[1, n)``, ``s`` zero or in
    the upper half (the malleable twin of a valid signature), or no recoverable key."""
    if len(digest) != 32:
        raise ValueError("a digest is 32 bytes")
    if len(signature) != 65:
        return None
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:64], "big")
    v = signature[64]
    if v not in (27, 28) or not 0 < r < SECP256K1_N or not 0 < s <= SECP256K1_N // 2:
        return None
    try:
        public = Signature(vrs=(v - 27, r, s)).recover_public_key_from_msg_hash(digest)
    except BadSignature:
        return None
    return bytes(public.to_canonical_address())
