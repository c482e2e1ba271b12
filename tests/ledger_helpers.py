"""Helpers for driving real ledgers in tests: keys, signed transactions, test resolution types."""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

from bridge.encoding import Reader, Writer
from bridge.keys import NodeKey, account_id
from bridge.ledger import Block, BlockResult, Genesis, Ledger
from bridge.txs import Transfer, Tx, Vote, encode_join
from resolutions import Resolution, ResolutionConfig, ResolveContext, register_resolution

CHAIN_ID = "bridge-test"


def node_keys(n: int, offset: int = 0) -> list[NodeKey]:
    """Deterministic validator keys, sorted by public key like the ledger sorts them."""
    return sorted((NodeKey.from_seed(bytes([i + 1 + offset]) * 32) for i in range(n)), key=lambda k: k.public)


def genesis(
    keys: Iterable[NodeKey],
    powers: Iterable[int] | None = None,
    accounts: Iterable[tuple[str, int]] = (),
    chain_id: str = CHAIN_ID,
) -> Genesis:
    keys = list(keys)
    power_list = [1] * len(keys) if powers is None else list(powers)
    validators = tuple(sorted((k.public, p) for k, p in zip(keys, power_list, strict=True)))
    return Genesis(chain_id, validators, tuple(sorted(accounts)))


def address(account: LocalAccount) -> bytes:
    return bytes.fromhex(account.address[2:])


def eth_account_id(account: LocalAccount) -> str:
    return account_id(address(account))


def new_eth_account() -> LocalAccount:
    account: LocalAccount = Account.create()
    return account


# -- a test resolution type: the body is (account, amount), resolve credits it -- #


def credit_body(account: str, amount: int) -> bytes:
    return Writer().text(account).uint(amount).finish()


def register_credit(
    name: str,
    *,
    expiration_period: int = 14400,
    threshold: Fraction = Fraction(2, 3),
    fail_after_write: bool = False,
) -> list[Resolution]:
    """Register ``name``; every resolve call is appended to the returned list. With
    ``fail_after_write`` the resolve credits, writes its kv state and then raises."""
    calls: list[Resolution] = []

    async def resolve(ctx: ResolveContext) -> None:
        calls.append(ctx.resolution)
        r = Reader(ctx.resolution.body)
        account, amount = r.text(), r.uint()
        r.done()
        await ctx.app.credit(account, amount)
        await ctx.app.set(b"resolved:" + ctx.resolution.id, ctx.block.height.to_bytes(8, "big"))
        if fail_after_write:
            raise RuntimeError("resolve failed after writing")

    register_resolution(
        name,
        ResolutionConfig(
            resolve=resolve, confirmation_threshold=threshold, expiration_period=expiration_period
        ),
    )
    return calls


# -- driving one ledger -- #


class Chain:
    """Signs transactions with the next nonce of each signer and runs blocks on a ledger."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.nonces: dict[bytes, int] = {}
        self.closed = False

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            await self.ledger.close()

    def _nonce(self, signer: bytes, nonce: int | None) -> int:
        if nonce is None:
            nonce = self.nonces.get(signer, 0)
        self.nonces[signer] = max(self.nonces.get(signer, 0), nonce + 1)
        return nonce

    def tx(self, key: NodeKey, type_: str, payload: bytes = b"", nonce: int | None = None) -> bytes:
        tx = Tx(self.ledger.chain_id, type_, key.public, self._nonce(key.public, nonce), payload)
        return tx.sign_ed25519(key).encode()

    def user_tx(self, account: LocalAccount, type_: str, payload: bytes, nonce: int | None = None) -> bytes:
        signer = address(account)
        tx = Tx(self.ledger.chain_id, type_, signer, self._nonce(signer, nonce), payload)
        return tx.sign_eth(account.key, self.ledger.escrow).encode()

    def vote(self, key: NodeKey, *events: tuple[str, bytes], nonce: int | None = None) -> bytes:
        return self.tx(key, "vote", Vote(tuple(events)).encode(), nonce)

    def transfer(self, account: LocalAccount, to: bytes, amount: int, nonce: int | None = None) -> bytes:
        return self.user_tx(account, "transfer", Transfer(to, amount).encode(), nonce)

    def join(self, key: NodeKey, power: int, nonce: int | None = None) -> bytes:
        return self.tx(key, "join", encode_join(power), nonce)

    async def block(self, *txs: bytes, commit: bool = True) -> BlockResult:
        height = self.ledger.height + 1
        proposer = min(self.ledger.validators)
        result = await self.ledger.finalize_block(Block(height, height * 10**9, proposer, txs))
        if commit:
            await self.ledger.commit()
        return result

    async def blocks(self, n: int) -> list[BlockResult]:
        return [await self.block() for _ in range(n)]


class Chains:
    """Opens ledgers in one directory and closes whatever is still open at the end, so a
    failing test does not leak SQLite connections (and their threads)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.chains: list[Chain] = []

    async def open(self, name: str, gen: Genesis | None = None) -> Chain:
        ledger = await Ledger.open(self.directory / f"{name}.sqlite")
        chain = Chain(ledger)
        self.chains.append(chain)
        if gen is not None:
            await ledger.init_chain(gen)
        return chain

    async def close_all(self) -> None:
        for chain in self.chains:
            await chain.close()
