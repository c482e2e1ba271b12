"""Signed transaction envelopes and their payloads, in one canonical binary encoding.

An envelope is (chain id, type, signer, nonce, payload, signature). Validators sign with
their ed25519 key (32-byte signer); users sign EIP-712 typed data with their Ethereum key
(20-byte signer = address), so any wallet can produce a transaction.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data

from bridge.encoding import MAX_U64, Reader, Writer
from bridge.errors import DecodeError, TxCode, TxError
from bridge.keys import NodeKey, verify_ed25519
from resolutions import MAX_BODY_BYTES

VERSION = 1
TX_TYPES = ("vote", "join", "approve", "leave", "remove", "transfer")
MAX_TX_BYTES = 1 << 20
MAX_VOTES_PER_TX = 2000
ED25519_PREFIX = b"bridge-tx-v1\x00"
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
EIP712_DOMAIN = {"name": "bridge", "version": "1"}
EIP712_TYPES = {
    "Transaction": [
        {"name": "chainId", "type": "string"},
        {"name": "txType", "type": "string"},
        {"name": "nonce", "type": "uint64"},
        {"name": "payload", "type": "bytes"},
    ]
}


@dataclass(frozen=True)
class Tx:
    chain_id: str
    type: str
    signer: bytes
    nonce: int
    payload: bytes
    signature: bytes = b""

    def unsigned(self) -> bytes:
        return (
            Writer()
            .u8(VERSION)
            .text(self.chain_id)
            .text(self.type)
            .blob(self.signer)
            .u64(self.nonce)
            .blob(self.payload)
            .finish()
        )

    def encode(self) -> bytes:
        return Writer().raw(self.unsigned()).blob(self.signature).finish()

    def hash(self) -> bytes:
        return hashlib.sha256(self.encode()).digest()

    @classmethod
    def decode(cls, data: bytes) -> Tx:
        if len(data) > MAX_TX_BYTES:
            raise TxError(TxCode.TOO_LARGE, f"transaction of {len(data)} bytes exceeds {MAX_TX_BYTES}")
        try:
            r = Reader(data)
            if (v := r.u8()) != VERSION:
                raise DecodeError(f"unknown transaction version {v}")
            tx = cls(r.text(128), r.text(32), r.blob(32), r.u64(), r.blob(), r.blob(65))
            r.done()
        except DecodeError as exc:
            raise TxError(TxCode.MALFORMED, f"malformed transaction: {exc}") from None
        if tx.type not in TX_TYPES:
            raise TxError(TxCode.UNKNOWN_TYPE, f"unknown transaction type {tx.type!r}")
        if len(tx.signer) not in (20, 32):
            raise TxError(TxCode.MALFORMED, "signer must be a 20-byte address or 32-byte key")
        return tx

    # -- signing -- #

    def typed_data(self) -> dict[str, Any]:
        return {
            "types": EIP712_TYPES,
            "primaryType": "Transaction",
            "domain": EIP712_DOMAIN,
            "message": {
                "chainId": self.chain_id,
                "txType": self.type,
                "nonce": self.nonce,
                "payload": self.payload,
            },
        }

    def sign_ed25519(self, key: NodeKey) -> Tx:
        assert key.public == self.signer, "signer must be the key's public key"
        return replace(self, signature=key.sign(ED25519_PREFIX + self.unsigned()))

    def sign_eth(self, private_key: bytes | str) -> Tx:
        signed = Account.sign_message(encode_typed_data(full_message=self.typed_data()), private_key)
        return replace(self, signature=bytes(signed.signature))

    def verify(self) -> bool:
        if len(self.signer) == 32:
            return verify_ed25519(self.signer, self.signature, ED25519_PREFIX + self.unsigned())
        # One encoding per signature, as Ethereum requires of transactions: s in the lower half
        # and v 27 or 28. eth_account also recovers from (n - s, flipped v) and from v = 0, 35,
        # 37, ...: each would give the same transfer another tx hash.
        if len(self.signature) != 65 or self.signature[64] not in (27, 28):
            return False
        if not 0 < int.from_bytes(self.signature[32:64], "big") <= SECP256K1_N // 2:
            return False
        try:
            recovered = Account.recover_message(
                encode_typed_data(full_message=self.typed_data()), signature=self.signature
            )
        except Exception:  # eth-keys raises several types for a malformed signature
            return False
        return bytes.fromhex(recovered[2:]) == self.signer


# -- payloads -- #


@dataclass(frozen=True)
class Vote:
    events: tuple[tuple[str, bytes], ...]  # (resolution type, body) pairs

    def encode(self) -> bytes:
        w = Writer().u32(len(self.events))
        for event_type, body in self.events:
            w.text(event_type).blob(body)
        return w.finish()


@dataclass(frozen=True)
class Transfer:
    to: bytes  # 20-byte address or 32-byte key
    amount: int

    def encode(self) -> bytes:
        return Writer().blob(self.to).uint(self.amount).finish()


def decode_payload(tx: Tx) -> Any:
    """The typed payload of ``tx``; ``TxError(INVALID_PAYLOAD)`` when it is malformed."""
    r = Reader(tx.payload)
    try:
        out: Any
        if tx.type == "vote":
            n = r.u32()
            if n == 0 or n > MAX_VOTES_PER_TX:
                raise DecodeError(f"a vote carries 1 to {MAX_VOTES_PER_TX} events, not {n}")
            out = Vote(r.pairs(n, 64, MAX_BODY_BYTES))
        elif tx.type == "join":
            out = r.u64()
            if not 0 < out < 2**63:  # CometBFT's powers are int64
                raise DecodeError("join power must be positive and below 2**63")
        elif tx.type in ("approve", "remove"):
            out = r.fixed(32)
        elif tx.type == "leave":
            out = None
        else:  # transfer
            to = r.blob(32)
            if len(to) not in (20, 32):
                raise DecodeError("transfer recipient must be 20 or 32 bytes")
            amount = r.uint()
            if amount == 0:
                raise DecodeError("transfer amount must be positive")
            out = Transfer(to, amount)
        r.done()
        return out
    except DecodeError as exc:
        raise TxError(TxCode.INVALID_PAYLOAD, f"invalid {tx.type} payload: {exc}") from None


def encode_join(power: int) -> bytes:
    if not 0 < power <= MAX_U64:
        raise ValueError("power must be a positive 64-bit integer")
    return Writer().u64(power).finish()
