"""Values that cross the ledger's ABCI-shaped boundary."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, NamedTuple

from bridge.errors import ConfigError, TxCode
from bridge.hints import command
from bridge.keys import parse_account
from bridge.withdrawals.eip712 import Domain

# The join bond `bridge init` and `bridge devnet` write: one token of 18 decimals. A join
# request locks it until approved or expired (0 in a genesis: joins cost nothing).
DEFAULT_JOIN_BOND = 10**18


def _address(value: Any) -> bytes:
    """A non-zero 20-byte Ethereum address from 0x-prefixed hex."""
    if not isinstance(value, str) or len(value) != 42 or not value.startswith("0x"):
        raise ValueError(f"{value!r} is not an Ethereum address (0x and 40 hex digits)")
    address = bytes.fromhex(value[2:])
    if address == bytes(20):
        raise ValueError("the zero address")
    return address


@dataclass(frozen=True)
class Genesis:
    chain_id: str
    validators: tuple[tuple[bytes, int], ...]  # (ed25519 pubkey, power)
    accounts: tuple[tuple[str, int], ...] = ()  # (account, balance)
    time_ns: int = 0
    vote_fee: int = 0  # charged per new vote to the voter's account; refunded per ResolutionConfig
    # Per-network overrides of ResolutionConfig.expiration_period, in blocks: (type, blocks).
    expiration_periods: tuple[tuple[str, int], ...] = ()
    # Locked from a candidate's account by its join request until the request is approved or
    # expires: a flood of join requests costs capital (0: joins are free to ask for).
    join_bond: int = 0
    # The escrow that pays withdrawals (None: a network without the way back), and each
    # genesis validator's Ethereum signing address (ed25519 pubkey, 20 bytes), which it
    # signs withdrawal batches with. With an escrow, every validator has one.
    escrow: Domain | None = None
    signers: tuple[tuple[bytes, bytes], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "chain_id": self.chain_id,
            "time_ns": self.time_ns,
            "vote_fee": str(self.vote_fee),
            "expiration_periods": dict(self.expiration_periods),
            "join_bond": str(self.join_bond),
            "validators": [
                {"pubkey": k.hex(), "power": p}
                | ({"eth_signer": "0x" + signers[k].hex()} if k in signers else {})
                for k, p in self.validators
                for signers in [dict(self.signers)]
            ],
            "accounts": [{"id": a, "balance": str(b)} for a, b in self.accounts],
        } | (
            {"escrow": {"chain_id": self.escrow.chain_id, "address": "0x" + self.escrow.escrow.hex()}}
            if self.escrow
            else {}
        )

    @classmethod
    def from_json(cls, data: Any, source: str = "genesis") -> Genesis:
        key = "chain_id"
        try:
            chain_id = data["chain_id"]
            if not isinstance(chain_id, str) or not 0 < len(chain_id) <= 128:
                raise ValueError("must be a string of 1 to 128 characters")
            key = "validators"
            validators = tuple(
                sorted((bytes.fromhex(v["pubkey"]), int(v["power"])) for v in data["validators"])
            )
            if not validators or any(len(k) != 32 or p <= 0 for k, p in validators):
                raise ValueError("needs at least one 32-byte hex pubkey with a positive power")
            if len({k for k, _ in validators}) != len(validators):
                raise ValueError("a validator key is listed twice")
            key = "accounts"
            accounts = tuple(
                sorted((parse_account(a["id"]), int(a["balance"])) for a in data.get("accounts", []))
            )
            if len({a for a, _ in accounts}) != len(accounts) or any(b < 0 for _, b in accounts):
                raise ValueError("each account once, with a non-negative balance")
            key = "time_ns"
            time_ns = int(data.get("time_ns", 0))
            key = "vote_fee"
            vote_fee = int(data.get("vote_fee", 0))
            if vote_fee < 0:
                raise ValueError("cannot be negative")
            key = "join_bond"
            join_bond = int(data.get("join_bond", 0))
            if join_bond < 0:
                raise ValueError("cannot be negative")
            key = "expiration_periods"
            periods = tuple(sorted((str(t), int(n)) for t, n in data.get("expiration_periods", {}).items()))
            if any(n < 1 for _, n in periods):
                raise ValueError("each period is a positive number of blocks")
            key = "escrow"
            escrow = None
            if "escrow" in data:
                address = _address(data["escrow"]["address"])
                eth_chain_id = data["escrow"]["chain_id"]
                if not isinstance(eth_chain_id, int) or isinstance(eth_chain_id, bool) or eth_chain_id <= 0:
                    raise ValueError("chain_id must be a positive integer")
                escrow = Domain(eth_chain_id, address)
            key = "eth_signer"
            signers = tuple(
                sorted(
                    (bytes.fromhex(v["pubkey"]), _address(v["eth_signer"]))
                    for v in data["validators"]
                    if "eth_signer" in v
                )
            )
            if len({a for _, a in signers}) != len(signers):
                raise ValueError("two validators share an Ethereum signing address")
            if escrow is not None and len(signers) != len(validators):
                raise ValueError("with an escrow, every validator needs its Ethereum signing address")
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{source}: invalid {key!r}: {exc}") from None
        return cls(chain_id, validators, accounts, time_ns, vote_fee, periods, join_bond, escrow, signers)

    @classmethod
    def load(cls, path: Path) -> Genesis:
        try:
            return cls.from_json(json.loads(path.read_text()), str(path))
        except FileNotFoundError:
            raise ConfigError(
                f"genesis file {path} does not exist (run `{command('init --home DIR')}`)"
            ) from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path} is not valid JSON: {exc}") from None

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")


@dataclass(frozen=True)
class Block:
    height: int
    time_ns: int
    proposer: bytes
    txs: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class TxResult:
    code: TxCode = TxCode.OK
    log: str = ""

    @property
    def ok(self) -> bool:
        return self.code == TxCode.OK


class Outcome(StrEnum):
    """What became of a resolution: kept in the ledger's ``processed`` table (confirmed or
    failed) and reported in block results (all three)."""

    CONFIRMED = "confirmed"  # resolve ran and its writes stand
    FAILED = "failed"  # resolve raised: its writes were rolled back
    EXPIRED = "expired"  # not enough votes in time, or its type was retired


class Movement(NamedTuple):
    """A balance change and what made it: a transaction (``cause`` its type, ``ref`` its
    sha256) or a resolution (its type and id)."""

    account: str
    delta: int
    cause: str
    ref: bytes


@dataclass(frozen=True)
class BlockResult:
    tx_results: tuple[TxResult, ...]
    validator_updates: tuple[tuple[bytes, int], ...]  # (pubkey, new power; 0 = removed)
    app_hash: bytes
    resolved: tuple[tuple[bytes, str, Outcome], ...] = field(default=())  # (id, type, outcome)
    tx_hashes: tuple[bytes, ...] = ()  # sha256 of each transaction, in tx_results' order
    # What the block did, for readers such as the explorer (none of it is in the app hash,
    # which covers the writes themselves): balance changes in order, each transaction's
    # (type, signer) ("", b"" if it did not authenticate) and new resolutions per type.
    movements: tuple[Movement, ...] = ()
    senders: tuple[tuple[str, bytes], ...] = ()
    opened: tuple[tuple[str, int], ...] = ()
