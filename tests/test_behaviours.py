"""Behaviours the design promises and no other test pins down:

1. exactly-once is keyed by the deposit's escrow nonce, not by where its log was mined;
2. a resolve that changes validator power and then raises leaves the validator set as it was;
3. the listener's progress lands in the same event-store transaction as the chunk's events;
4. logs with ``removed: true`` are ignored by every decoding path;
5. power changes made by a resolution move thresholds only from the next block.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Any, cast

import pytest
from eth_utils.address import to_checksum_address

from bridge.encoding import event_id
from bridge.eventstore import PENDING, EventStore
from bridge.ledger import governance
from bridge.ledger.types import BlockResult
from listeners import Service
from listeners.eth_deposits import EVENTS, EthDepositsConfig
from listeners.eth_deposits.decode import DEPOSIT_TOPIC, decode_log, deposit_bodies, deposit_body
from listeners.ethereum.client import EthClient
from listeners.ethereum.scanner import Scanner
from resolutions import ResolutionConfig, ResolveContext, register_resolution
from resolutions.credit import CREDIT_ACCOUNT, Deposit, credited_key, tx_key
from tests.ledger_helpers import Chain, Chains, credit_body, genesis, node_keys, register_credit

KEYS = node_keys(4)
CHAIN = 31337
ESCROW = to_checksum_address("0x5fbdb2315678afecb367f032d93f642f64180aa3")
SENDER = to_checksum_address("0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266")
RECIPIENT = to_checksum_address("0x" + "c3" * 20)
ALICE = "0x" + "a1" * 20


@pytest.fixture
async def chains(tmp_path: Path) -> AsyncIterator[Chains]:
    pool = Chains(tmp_path)
    yield pool
    await pool.close_all()


def statuses(result: BlockResult) -> dict[bytes, str]:
    return {rid: status for rid, _, status in result.resolved}


def deposit(
    nonce: int, *, tx: int = 0xAB, log_index: int = 3, block: int = 100, amount: int = 1000
) -> Deposit:
    return Deposit(CHAIN, ESCROW, nonce, bytes([tx]) * 32, log_index, block, SENDER, RECIPIENT, amount)


async def credit_kv(chain: Chain) -> dict[bytes, bytes]:
    return dict(await chain.ledger.kv_items(CREDIT_ACCOUNT, limit=1000))


# -- 1. exactly-once by (chain, escrow, nonce) -- #


async def test_credit_same_nonce_remined_at_another_position_is_a_duplicate(chains: Chains) -> None:
    chain = await chains.open("ledger", genesis(KEYS))
    first = deposit(7, log_index=3, block=100)
    # The same deposit (same nonce, tx hash, sender, recipient, amount) re-mined elsewhere.
    remined = replace(first, log_index=0, block_number=105)
    assert first.key == remined.key and first.encode() != remined.encode()
    ev1, ev2 = (CREDIT_ACCOUNT, first.encode()), (CREDIT_ACCOUNT, remined.encode())
    id1, id2 = event_id(*ev1), event_id(*ev2)

    result = await chain.block(*(chain.vote(k, ev1) for k in KEYS[:3]))
    assert statuses(result) == {id1: "confirmed"}
    assert await chain.ledger.balance(RECIPIENT.lower()) == 1000

    result = await chain.block(*(chain.vote(k, ev2) for k in KEYS[:3]))
    assert statuses(result) == {id2: "confirmed"}  # resolved, as a duplicate
    assert await chain.ledger.balance(RECIPIENT.lower()) == 1000
    kv = await credit_kv(chain)
    assert kv[b"duplicate:" + id2] == first.key
    assert kv[credited_key(first.key)] == (1).to_bytes(8, "big") + id1
    assert b"duplicate:" + id1 not in kv
    assert tx_key(first.tx_hash, first.log_index) in kv
    assert tx_key(remined.tx_hash, remined.log_index) not in kv
    assert await chain.ledger.kv_prefix(CREDIT_ACCOUNT, b"duplicate:") == [(b"duplicate:" + id2, first.key)]

    # Both positions confirmed in one block: still credited once.
    other = deposit(8, tx=0xCD, amount=5)
    moved = replace(other, log_index=9, block_number=222)
    events = [(CREDIT_ACCOUNT, other.encode()), (CREDIT_ACCOUNT, moved.encode())]
    result = await chain.block(*(chain.vote(k, *events) for k in KEYS[:3]))
    assert set(statuses(result).values()) == {"confirmed"} and len(result.resolved) == 2
    assert await chain.ledger.balance(RECIPIENT.lower()) == 1005
    kv = await credit_kv(chain)
    dups = [k for k in kv if k.startswith(b"duplicate:") and kv[k] == other.key]
    assert len(dups) == 1


async def test_credit_two_deposits_in_one_transaction_are_both_credited(chains: Chains) -> None:
    chain = await chains.open("ledger", genesis(KEYS))
    a = deposit(10, tx=0x77, log_index=1, block=300, amount=40)
    b = deposit(11, tx=0x77, log_index=2, block=300, amount=2)
    assert a.tx_hash == b.tx_hash and a.key != b.key
    events = [(CREDIT_ACCOUNT, a.encode()), (CREDIT_ACCOUNT, b.encode())]

    result = await chain.block(*(chain.vote(k, *events) for k in KEYS[:3]))
    assert statuses(result) == {event_id(*e): "confirmed" for e in events}
    assert await chain.ledger.balance(RECIPIENT.lower()) == 42
    kv = await credit_kv(chain)
    assert not [k for k in kv if k.startswith(b"duplicate:")]
    for d, e in ((a, events[0]), (b, events[1])):
        assert kv[credited_key(d.key)] == (1).to_bytes(8, "big") + event_id(*e)
        assert kv[tx_key(d.tx_hash, d.log_index)] == d.key


# -- 2. a resolve that changes power and raises changes nothing -- #


async def test_resolve_that_changes_power_then_raises_leaves_validators_unchanged(chains: Chains) -> None:
    newcomer = node_keys(1, offset=40)[0]
    write = {"on": True}

    async def resolve(ctx: ResolveContext) -> None:
        if write["on"]:
            await ctx.app.set_validator_power(KEYS[3].public, 9)
            await ctx.app.set_validator_power(newcomer.public, 5)
            await ctx.app.set_validator_power(KEYS[0].public, 0)
            assert await ctx.app.validator_power(KEYS[3].public) == 9
        raise RuntimeError("resolve failed after changing power")

    register_resolution("beh_power_then_raise", ResolutionConfig(resolve=resolve))
    event = ("beh_power_then_raise", b"x")
    rid = event_id(*event)
    # The same blocks on two ledgers: on one the failing resolve changed power first, on the
    # other it raised at once. A failed resolve is never half-applied: they must agree.
    a = await chains.open("a", genesis(KEYS))
    b = await chains.open("b", genesis(KEYS))
    before = dict(a.ledger.validators)
    for chain, on in ((a, True), (b, False)):
        write["on"] = on
        result = await chain.block(*(chain.vote(k, event) for k in KEYS[:3]))
        assert statuses(result) == {rid: "failed"}
        assert result.validator_updates == ()
        assert chain.ledger.validators == before
        assert await chain.ledger.state.validators() == before
        failed = await chain.ledger.list_resolutions("failed")
        assert [(r["id"], r["error"]) for r in failed] == [(rid.hex(), "RuntimeError")]
    assert a.ledger.app_hash == b.ledger.app_hash
    # Nothing of the failed resolve lingers into the next blocks either (e.g. a flag asking
    # to re-examine every pending resolution after a power change).
    for _ in range(2):
        ra, rb = await a.block(), await b.block()
        assert ra == rb
        assert a.ledger.app_hash == b.ledger.app_hash
    assert await a.ledger.kv_items("") == await b.ledger.kv_items("") == []
    assert a.ledger.validators == b.ledger.validators == before


# -- 3. listener progress and events in one transaction -- #


class _Client:
    """A chain whose every block holds one Deposit log (nonce = block number)."""

    def __init__(self) -> None:
        self.log_calls = 0

    async def block(self, tag: int | str) -> tuple[int, bytes] | None:
        assert isinstance(tag, int)
        return tag, tag.to_bytes(32, "big")

    async def logs(self, address: str, topics: Any, start: int, end: int, parse: Any) -> Any:
        self.log_calls += 1
        logs = [_log(deposit(n, tx=n % 256, log_index=0, block=n)) for n in range(start, end + 1)]
        return parse(logs)


class _FlakyStore:
    """A listener store whose transactions raise ``sqlite3.OperationalError`` at the
    ``fail_at``-th broadcast or the ``fail_at``-th write of ``last_block`` (counting across
    transactions), like a full disk would."""

    def __init__(self, inner: Any, *, broadcast_fail_at: int = 0, progress_fail_at: int = 0) -> None:
        self.inner = inner
        self.broadcasts = self.progress = 0
        self.broadcast_fail_at, self.progress_fail_at = broadcast_fail_at, progress_fail_at

    async def broadcast(self, event_type: str, data: bytes) -> None:
        await self.inner.broadcast(event_type, data)

    async def get(self, key: bytes) -> bytes | None:
        return cast(bytes | None, await self.inner.get(key))

    async def set(self, key: bytes, value: bytes) -> None:
        await self.inner.set(key, value)

    async def delete(self, key: bytes) -> None:
        await self.inner.delete(key)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Any]:
        async with self.inner.transaction() as tx:
            yield _FlakyTx(self, tx)


class _FlakyTx:
    def __init__(self, store: _FlakyStore, tx: Any) -> None:
        self.store, self.tx = store, tx

    async def broadcast(self, event_type: str, data: bytes) -> None:
        self.store.broadcasts += 1
        if self.store.broadcasts == self.store.broadcast_fail_at:
            raise sqlite3.OperationalError("database or disk is full")
        await self.tx.broadcast(event_type, data)

    async def set(self, key: bytes, value: bytes) -> None:
        if key == b"last_block":
            self.store.progress += 1
            if self.store.progress == self.store.progress_fail_at:
                raise sqlite3.OperationalError("database or disk is full")
        await self.tx.set(key, value)

    async def get(self, key: bytes) -> bytes | None:
        return cast(bytes | None, await self.tx.get(key))

    async def delete(self, key: bytes) -> None:
        await self.tx.delete(key)


def _scanner(store: Any) -> Scanner:
    service = Service("eth_deposits", logging.getLogger("listeners.eth_deposits"), {}, b"\x01" * 32, "c")
    config = EthDepositsConfig.model_validate(
        {
            "rpc_url": "http://127.0.0.1:1",
            "contract_address": ESCROW,
            "chain_id": CHAIN,
            "block_sync_chunk_size": 10,
            "max_chunk_size": 10,
        }
    )
    return Scanner(service, store, config, cast(EthClient, _Client()), EVENTS)


def _bodies(first: int, last: int) -> set[bytes]:
    return {deposit(n, tx=n % 256, log_index=0, block=n).encode() for n in range(first, last + 1)}


async def _stored(path: Path) -> tuple[int | None, set[bytes]]:
    """(last_block, bodies of the stored events) as a freshly opened store reads them."""
    store = await EventStore.open(path)
    try:
        raw = await store.scoped("eth_deposits").get(b"last_block")
        events = await store.select(PENDING, 10_000)
        return (None if raw is None else int.from_bytes(raw, "big")), {e.body for e in events}
    finally:
        await store.close()


@pytest.mark.parametrize(
    "fail", [{"broadcast_fail_at": 15}, {"progress_fail_at": 2}], ids=["events", "progress"]
)
async def test_listener_progress_is_stored_with_its_events(tmp_path: Path, fail: dict[str, int]) -> None:
    path = tmp_path / "events.sqlite"
    store = await EventStore.open(path)
    try:
        flaky = _FlakyStore(store.scoped("eth_deposits"), **fail)
        scanner = _scanner(flaky)
        await scanner.load()
        # Chunks 0-9, 10-19, 20-29 of one deposit a block; the second chunk's write fails.
        with pytest.raises(sqlite3.OperationalError):
            await scanner.scan(29)
    finally:
        await store.close()

    assert await _stored(path) == (9, _bodies(0, 9))

    # A restart resumes after the last stored chunk and stores the rest.
    store = await EventStore.open(path)
    try:
        scanner = _scanner(store.scoped("eth_deposits"))
        await scanner.load()
        assert scanner.last_block == 9
        await scanner.scan(29)
    finally:
        await store.close()
    assert await _stored(path) == (29, _bodies(0, 29))


# -- 4. removed logs are never deposits -- #


def _log(d: Deposit, *, removed: bool = False, **overrides: Any) -> dict[str, Any]:
    log: dict[str, Any] = {
        "address": d.escrow.lower(),
        "topics": [
            DEPOSIT_TOPIC,
            "0x" + f"{d.nonce:064x}",
            "0x" + "00" * 12 + d.sender[2:].lower(),
            "0x" + "00" * 12 + d.recipient[2:].lower(),
        ],
        "data": "0x" + f"{d.amount:064x}",
        "blockNumber": hex(d.block_number),
        "transactionHash": "0x" + d.tx_hash.hex(),
        "logIndex": hex(d.log_index),
        "removed": removed,
    }
    log.update(overrides)
    return log


DEPOSITS = [deposit(n, tx=0x10 + n, log_index=n, block=500 + n, amount=7 * n + 1) for n in range(4)]


def test_removed_log_is_ignored_by_decode_log_and_deposit_body() -> None:
    for d in DEPOSITS:
        assert decode_log(_log(d), CHAIN, ESCROW) == d
        assert deposit_body(_log(d), CHAIN, ESCROW) == d.encode()
        assert decode_log(_log(d, removed=True), CHAIN, ESCROW) is None
        assert deposit_body(_log(d, removed=True), CHAIN, ESCROW) is None
        # the general path of deposit_body (a short data word) too
        short = _log(d, removed=True, data=hex(d.amount))
        assert deposit_body(short, CHAIN, ESCROW) is None
        assert deposit_body({**short, "removed": False}, CHAIN, ESCROW) == d.encode()


@pytest.mark.parametrize("removed_at", range(len(DEPOSITS)))
def test_removed_log_is_ignored_by_deposit_bodies_fast_path(removed_at: int) -> None:
    logs = [_log(d, removed=i == removed_at) for i, d in enumerate(DEPOSITS)]
    expected = [d.encode() for i, d in enumerate(DEPOSITS) if i != removed_at]
    assert deposit_bodies(logs, CHAIN, ESCROW) == expected
    assert deposit_bodies([logs[removed_at]], CHAIN, ESCROW) == []


@pytest.mark.parametrize("removed_at", range(len(DEPOSITS)))
def test_removed_log_is_ignored_by_deposit_bodies_general_path(removed_at: int) -> None:
    # The last log has a short data word: the chunk takes the general path.
    unusual = (len(DEPOSITS) - 1 + removed_at) % len(DEPOSITS)
    logs = [
        _log(d, removed=i == removed_at, **({"data": hex(d.amount)} if i == unusual else {}))
        for i, d in enumerate(DEPOSITS)
    ]
    expected = [d.encode() for i, d in enumerate(DEPOSITS) if i != removed_at]
    assert deposit_bodies(logs, CHAIN, ESCROW) == expected


# -- 5. power changes move thresholds from the next block -- #


async def test_resolution_confirmed_in_the_block_that_removes_one_of_its_voters(chains: Chains) -> None:
    # Six validators of power 1: 2/3 needs 4. The test type sorts after validator_remove, so
    # it resolves after the removal within the block.
    keys = node_keys(6)
    a, b, c, d, e, _ = keys
    name = "zz_beh_credit"
    assert name > governance.REMOVE
    register_credit(name)
    chain = await chains.open("ledger", genesis(keys))
    event = (name, credit_body(ALICE, 11))
    rid = event_id(*event)
    remove_id = event_id(governance.REMOVE, governance.remove_body(d.public, 0))

    await chain.block(*(chain.vote(k, event) for k in (a, b, c)))
    await chain.block(*(chain.tx(k, "remove", d.public) for k in (a, b, c)))
    # In one block: the removal of D reaches 4 of 6, and D's vote is the credit's 4th.
    result = await chain.block(chain.tx(e, "remove", d.public), chain.vote(d, event))
    assert all(t.ok for t in result.tx_results)
    assert statuses(result) == {remove_id: "confirmed", rid: "confirmed"}
    assert result.validator_updates == ((d.public, 0),)
    assert await chain.ledger.balance(ALICE) == 11


async def test_resolution_short_of_threshold_waits_for_the_block_after_a_removal(chains: Chains) -> None:
    # Four of power 1: 2/3 needs 3. Two votes pass only once D is gone (2 of 3), which counts
    # from the next block, not within the block that removes D.
    a, b, c, d = KEYS
    name = "zz_beh_credit"
    register_credit(name)
    chain = await chains.open("ledger", genesis(KEYS))
    event = (name, credit_body(ALICE, 5))
    rid = event_id(*event)
    remove_id = event_id(governance.REMOVE, governance.remove_body(d.public, 0))

    await chain.block(chain.vote(a, event), chain.tx(a, "remove", d.public), chain.tx(b, "remove", d.public))
    result = await chain.block(chain.tx(c, "remove", d.public), chain.vote(b, event))
    assert statuses(result) == {remove_id: "confirmed"}
    assert result.validator_updates == ((d.public, 0),)
    assert await chain.ledger.balance(ALICE) == 0

    result = await chain.block()
    assert statuses(result) == {rid: "confirmed"}
    assert await chain.ledger.balance(ALICE) == 5


def test_thresholds_fraction_sanity() -> None:
    # The arithmetic the two tests above rely on.
    from bridge.ledger import passes

    assert not passes(3, 5, Fraction(2, 3)) and passes(4, 6, Fraction(2, 3))
    assert passes(2, 3, Fraction(2, 3)) and not passes(2, 4, Fraction(2, 3))
