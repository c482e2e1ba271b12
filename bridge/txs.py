"""Signed transaction envelopes and their payloads, in one canonical binary encoding.

An envelope is (chain id, type, signer, nonce, payload, signature). Validators sign with
their ed25519 key (32-byte signer); users sign their ``transfer`` and ``withdraw`` as EIP-712
typed data with named fields (``Transfer(string to,uint256 amount,uint64 nonce)``), with
their Ethereum key (20-byte signer = address), so a wallet shows what it signs. The domain
binds the ledger (``salt`` = keccak of its chain id) and, on a network with an escrow, the
escrow's chain id and address.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any, ClassVar, get_args

from eth_account import Account
from eth_account.messages import encode_defunct, encode_typed_data
from eth_utils.crypto import keccak

from bridge.encoding import MAX_U64, Reader, Writer
from bridge.errors import DecodeError, TxCode, TxError
from bridge.keys import NodeKey, verify_ed25519
from bridge.withdrawals.eip712 import Domain
from resolutions import MAX_BODY_BYTES

VERSION = 1
MAX_TX_BYTES = 1 << 20
MAX_VOTES_PER_TX = 2000
ED25519_PREFIX = b"bridge-tx-v1\x00"
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
# The typed data of each transaction a user (an Ethereum account) may sign.
USER_TYPES: Mapping[str, tuple[str, list[dict[str, str]]]] = MappingProxyType(
    {
        "transfer": (
            "Transfer",
            [{"name": "to", "type": "string"}, {"name": "amount", "type": "uint256"}],
        ),
        "withdraw": (
            "Withdraw",
            [{"name": "recipient", "type": "address"}, {"name": "amount", "type": "uint256"}],
        ),
    }
)


def user_domain(chain_id: str, escrow: Domain | None = None) -> dict[str, Any]:
    """The EIP-712 domain of a ledger's user transactions."""
    domain: dict[str, Any] = {"name": "bridge", "version": "1"}
    if escrow is not None:
        domain |= {"chainId": escrow.chain_id, "verifyingContract": "0x" + escrow.escrow.hex()}
    return domain | {"salt": keccak(text=chain_id)}


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

    def typed_data(self, escrow: Domain | None = None) -> dict[str, Any]:
        """What the user signs: the payload's fields by name, and the nonce. ``TxError`` for
        a type users cannot sign or a payload that does not decode."""
        if self.type not in USER_TYPES:
            raise TxError(TxCode.INVALID_PAYLOAD, f"an Ethereum account cannot sign {self.type!r}")
        primary, fields = USER_TYPES[self.type]
        payload = decode_payload(self)
        domain = user_domain(self.chain_id, escrow)
        domain_fields = [
            {"name": "name", "type": "string"},
            {"name": "version", "type": "string"},
            *([{"name": "chainId", "type": "uint256"}] if "chainId" in domain else []),
            *([{"name": "verifyingContract", "type": "address"}] if "verifyingContract" in domain else []),
            {"name": "salt", "type": "bytes32"},
        ]
        message: dict[str, Any]
        match payload:
            case Transfer(to=to, amount=amount):
                message = {"to": "0x" + to.hex(), "amount": amount}
            case Withdraw(recipient=recipient, amount=amount):
                message = {"recipient": "0x" + recipient.hex(), "amount": amount}
            case _:  # USER_TYPES names only the cases above
                raise TxError(TxCode.INVALID_PAYLOAD, f"an Ethereum account cannot sign {self.type!r}")
        return {
            "types": {
                "EIP712Domain": domain_fields,
                primary: [*fields, {"name": "nonce", "type": "uint64"}],
            },
            "primaryType": primary,
            "domain": domain,
            "message": message | {"nonce": self.nonce},
        }

    def sign_ed25519(self, key: NodeKey) -> Tx:
        if key.public != self.signer:  # not an assert: `python -O` would sign a useless tx
            raise ValueError("signer must be the key's public key")
        return replace(self, signature=key.sign(ED25519_PREFIX + self.unsigned()))

    def typed_data_json(self, escrow: Domain | None = None) -> dict[str, Any]:
        """:meth:`typed_data` as JSON for a wallet's ``eth_signTypedData_v4`` (or ``cast wallet
        sign --data``): bytes as 0x-hex, integers as decimal strings (uint256 exceeds JSON's)."""
        data = self.typed_data(escrow)
        data["domain"] = {k: "0x" + v.hex() if isinstance(v, bytes) else v for k, v in data["domain"].items()}
        data["message"] = {k: str(v) if isinstance(v, int) else v for k, v in data["message"].items()}
        return data

    def sign_eth(self, private_key: bytes | str, escrow: Domain | None = None) -> Tx:
        signed = Account.sign_message(encode_typed_data(full_message=self.typed_data(escrow)), private_key)
        return replace(self, signature=bytes(signed.signature))

    def verify(self, escrow: Domain | None = None) -> bool:
        """Whether the signature is the signer's. A user's is checked under the domain of
        ``escrow`` (the ledger's, from its genesis)."""
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
                encode_typed_data(full_message=self.typed_data(escrow)), signature=self.signature
            )
        except Exception:  # an undecodable payload, or eth-keys' errors on a malformed signature
            return False
        return bytes.fromhex(recovered[2:]) == self.signer


# -- payloads -- #
#
# One frozen dataclass per transaction type. ``Payload`` below is the list of types, written
# once: ``PAYLOADS`` and ``TX_TYPES`` derive from it, and the ledger handles a payload with
# ``match`` over it (mypy checks that every type is handled). Each class reads its fields
# from a Reader and writes them back in the one canonical encoding.


@dataclass(frozen=True)
class Vote:
    """One or more (resolution type, body) events a validator saw."""

    TX_TYPE: ClassVar[str] = "vote"
    BY_VALIDATOR: ClassVar[bool] = True  # only a validator may sign it

    events: tuple[tuple[str, bytes], ...]  # (resolution type, body) pairs

    def encode(self) -> bytes:
        w = Writer().u32(len(self.events))
        for event_type, body in self.events:
            w.text(event_type).blob(body)
        return w.finish()

    @classmethod
    def read(cls, r: Reader) -> Vote:
        n = r.u32()
        if n == 0 or n > MAX_VOTES_PER_TX:
            raise DecodeError(f"a vote carries 1 to {MAX_VOTES_PER_TX} events, not {n}")
        return cls(r.pairs(n, 64, MAX_BODY_BYTES))


@dataclass(frozen=True)
class VoteIds:
    """Votes for resolutions already open on the ledger, by their 32-byte ids: what a vote
    costs once some validator's ``vote`` carried the body (~310 bytes for a deposit). An id
    that is not open when the transaction runs (unknown, or processed since) counts nothing:
    its event is voted again, with its body if it is still unknown."""

    TX_TYPE: ClassVar[str] = "vote_ids"
    BY_VALIDATOR: ClassVar[bool] = True

    ids: tuple[bytes, ...]

    @property
    def events(self) -> tuple[bytes, ...]:
        """What counts against a block's vote budget, as a ``Vote``'s events do."""
        return self.ids

    def encode(self) -> bytes:
        return Writer().u32(len(self.ids)).raw(b"".join(self.ids)).finish()

    @classmethod
    def read(cls, r: Reader) -> VoteIds:
        n = r.u32()
        if n == 0 or n > MAX_VOTES_PER_TX:
            raise DecodeError(f"a vote carries 1 to {MAX_VOTES_PER_TX} ids, not {n}")
        data = r.fixed(32 * n)
        return cls(tuple(data[i : i + 32] for i in range(0, len(data), 32)))


@dataclass(frozen=True)
class Join:
    """A request by the signing ed25519 key to become a validator with ``power``, and to
    sign withdrawals with the Ethereum key of ``signer``: ``proof`` is that key's
    ``personal_sign`` of :func:`signer_claim` (so nobody registers an address it does not
    hold). On a network without an escrow both may be empty."""

    TX_TYPE: ClassVar[str] = "join"
    BY_VALIDATOR: ClassVar[bool] = False

    power: int
    signer: bytes = b""  # 20-byte Ethereum address, or empty
    proof: bytes = b""  # 65-byte signature, or empty

    def encode(self) -> bytes:
        w = Writer().u64(self.power)
        return (w.raw(self.signer).raw(self.proof) if self.signer else w).finish()

    @classmethod
    def read(cls, r: Reader) -> Join:
        power = r.u64()
        if not 0 < power < 2**63:  # CometBFT's powers are int64
            raise DecodeError("join power must be positive and below 2**63")
        if r.at_end():
            return cls(power)
        return cls(power, r.fixed(20), r.fixed(65))


def signer_claim(chain_id: str, pubkey: bytes) -> str:
    """The text a validator's Ethereum key signs (EIP-191 ``personal_sign``) to bind itself to
    the validator's ed25519 key on ledger ``chain_id``."""
    return f"bridge {chain_id}: Ethereum signer of validator {pubkey.hex()}"


def sign_claim(chain_id: str, pubkey: bytes, private_key: bytes) -> bytes:
    """The Ethereum key's proof for a join request (:func:`signer_claim`, ``personal_sign``)."""
    message = encode_defunct(text=signer_claim(chain_id, pubkey))
    return bytes(Account.sign_message(message, private_key).signature)


def claim_signer(chain_id: str, pubkey: bytes, proof: bytes) -> bytes | None:
    """The address whose proof ``proof`` is (None if it is no signature)."""
    try:
        address = Account.recover_message(
            encode_defunct(text=signer_claim(chain_id, pubkey)), signature=proof
        )
    except Exception:  # eth-keys raises several types for a malformed signature
        return None
    return bytes.fromhex(address[2:])


@dataclass(frozen=True)
class SignBatch:
    """A validator's Ethereum signature of a closed withdrawal batch (docs/withdrawals.md)."""

    TX_TYPE: ClassVar[str] = "sign_batch"
    BY_VALIDATOR: ClassVar[bool] = True

    batch_id: int
    valset_nonce: int  # the validator set it signs under: the newest
    signature: bytes  # 65 bytes

    def encode(self) -> bytes:
        return Writer().u64(self.batch_id).u64(self.valset_nonce).raw(self.signature).finish()

    @classmethod
    def read(cls, r: Reader) -> SignBatch:
        return cls(r.u64(), r.u64(), r.fixed(65))


@dataclass(frozen=True)
class SignValset:
    """A signature of validator set ``nonce`` by a member of set ``nonce - 1``: the escrow
    moves to the new set only with these. Signed by a member of the old set, which may no
    longer be a validator (it signs its own leaving)."""

    TX_TYPE: ClassVar[str] = "sign_valset"
    BY_VALIDATOR: ClassVar[bool] = False

    nonce: int
    signature: bytes  # 65 bytes

    def encode(self) -> bytes:
        return Writer().u64(self.nonce).raw(self.signature).finish()

    @classmethod
    def read(cls, r: Reader) -> SignValset:
        return cls(r.u64(), r.fixed(65))


@dataclass(frozen=True)
class Approve:
    """A validator's vote for a pending join or remove request (its resolution id)."""

    TX_TYPE: ClassVar[str] = "approve"
    BY_VALIDATOR: ClassVar[bool] = True

    request_id: bytes  # 32 bytes

    def encode(self) -> bytes:
        return Writer().raw(self.request_id).finish()

    @classmethod
    def read(cls, r: Reader) -> Approve:
        return cls(r.fixed(32))


@dataclass(frozen=True)
class Leave:
    """The signing validator steps down."""

    TX_TYPE: ClassVar[str] = "leave"
    BY_VALIDATOR: ClassVar[bool] = True

    def encode(self) -> bytes:
        return b""

    @classmethod
    def read(cls, r: Reader) -> Leave:
        return cls()


@dataclass(frozen=True)
class Remove:
    """A validator's vote to remove the validator ``pubkey``."""

    TX_TYPE: ClassVar[str] = "remove"
    BY_VALIDATOR: ClassVar[bool] = True

    pubkey: bytes  # 32-byte ed25519 key

    def encode(self) -> bytes:
        return Writer().raw(self.pubkey).finish()

    @classmethod
    def read(cls, r: Reader) -> Remove:
        return cls(r.fixed(32))


@dataclass(frozen=True)
class Transfer:
    """Moves ledger balance from the signer's account to ``to``."""

    TX_TYPE: ClassVar[str] = "transfer"
    BY_VALIDATOR: ClassVar[bool] = False

    to: bytes  # 20-byte address or 32-byte key
    amount: int

    def encode(self) -> bytes:
        return Writer().blob(self.to).uint(self.amount).finish()

    @classmethod
    def read(cls, r: Reader) -> Transfer:
        to = r.blob(32)
        if len(to) not in (20, 32):
            raise DecodeError("transfer recipient must be 20 or 32 bytes")
        amount = r.uint()
        if amount == 0:
            raise DecodeError("transfer amount must be positive")
        return cls(to, amount)


@dataclass(frozen=True)
class Withdraw:
    """Moves ledger balance of the signer back to Ethereum: paid by the escrow to
    ``recipient`` once the withdrawal's batch is signed by 2/3 of the validators."""

    TX_TYPE: ClassVar[str] = "withdraw"
    BY_VALIDATOR: ClassVar[bool] = False

    recipient: bytes  # 20-byte Ethereum address
    amount: int

    def encode(self) -> bytes:
        return Writer().blob(self.recipient).uint(self.amount).finish()

    @classmethod
    def read(cls, r: Reader) -> Withdraw:
        recipient = r.blob(20)
        if len(recipient) != 20 or recipient == bytes(20):
            raise DecodeError("withdraw recipient must be a non-zero 20-byte address")
        amount = r.uint()
        if amount == 0:
            raise DecodeError("withdraw amount must be positive")
        return cls(recipient, amount)


Payload = Vote | VoteIds | Join | Approve | Leave | Remove | Transfer | Withdraw | SignBatch | SignValset
"""Every transaction payload: the closed set of transaction types, in their wire order."""

PAYLOADS: Mapping[str, type[Payload]] = MappingProxyType({cls.TX_TYPE: cls for cls in get_args(Payload)})
"""Transaction type name -> payload class."""

TX_TYPES: tuple[str, ...] = tuple(PAYLOADS)


def decode_payload(tx: Tx) -> Payload:
    """The typed payload of ``tx``; ``TxError(INVALID_PAYLOAD)`` when it is malformed."""
    cls = PAYLOADS.get(tx.type)
    if cls is None:
        raise TxError(TxCode.UNKNOWN_TYPE, f"unknown transaction type {tx.type!r}")
    r = Reader(tx.payload)
    try:
        payload = cls.read(r)
        r.done()
    except DecodeError as exc:
        raise TxError(TxCode.INVALID_PAYLOAD, f"invalid {tx.type} payload: {exc}") from None
    return payload


def encode_join(power: int, signer: bytes = b"", proof: bytes = b"") -> bytes:
    if not 0 < power <= MAX_U64:
        raise ValueError("power must be a positive 64-bit integer")
    return Join(power, signer, proof).encode()
