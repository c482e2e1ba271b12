"""``credit_account`` when a reorg deeper than the safety point gives a credited deposit's
escrow nonce to another deposit (no anvil: bodies built with ``Deposit(...).encode()``).

- the same deposit moved by a reorg (same tx hash, recipient, amount) is a ``duplicate:``;
- a *different* deposit under a credited key is a replacement: it is credited, the old credit
  is recorded as orphaned (a liability: credited, no longer backed by the escrow), never
  debited;
- an orphaned deposit re-mined under a new key is reconciled: not credited again, the orphan
  cleared;
- two deposits of one transaction (even identical ones) are two deposits;
- every decision is deterministic (two ledgers, one app hash), and an unlucky order inside
  one block ends as a recorded liability, never a silent double credit.

The state layout is pinned here byte for byte (see ``resolutions/credit/__init__.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from eth_utils.address import to_checksum_address

from bridge.encoding import event_id
from bridge.eventstore import EventStore
from bridge.ledger.types import BlockResult
from bridge.queries import NodeView
from resolutions.credit import CREDIT_ACCOUNT, Deposit, credited_key, tx_key
from resolutions.credit.status import find_deposits, orphaned_credits
from tests.ledger_helpers import Chain, Chains, genesis, node_keys

KEYS = node_keys(4)
CHAIN = 31337
ESCROW = to_checksum_address("0x5fbdb2315678afecb367f032d93f642f64180aa3")
SENDER = to_checksum_address("0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266")
OTHER_SENDER = to_checksum_address("0x70997970c51812dc3a010c7d01b50e0d17dc79c8")
R3 = to_checksum_address("0x" + "c3" * 20)
R4 = to_checksum_address("0x" + "c4" * 20)
TX3, TX4 = b"\x33" * 32, b"\x44" * 32

# D3 is credited at nonce 7; a deep reorg gives nonce 7 to D4 (another tx, sender, recipient
# and amount) and re-mines D3's transaction after it, at nonce 8.
D3 = Deposit(CHAIN, ESCROW, 7, TX3, 2, 100, SENDER, R3, 3000)
D4 = Deposit(CHAIN, ESCROW, 7, TX4, 0, 100, OTHER_SENDER, R4, 4000)
D3_AGAIN = replace(D3, nonce=8, log_index=1, block_number=100)


@pytest.fixture
async def chains(tmp_path: Path) -> AsyncIterator[Chains]:
    pool = Chains(tmp_path)
    yield pool
    await pool.close_all()


def ev(d: Deposit) -> tuple[str, bytes]:
    return (CREDIT_ACCOUNT, d.encode())


def rid(d: Deposit) -> bytes:
    return event_id(*ev(d))


async def confirm(chain: Chain, *deposits: Deposit) -> BlockResult:
    """One block in which 3 of 4 validators vote for ``deposits``: all of them resolve."""
    events = [ev(d) for d in deposits]
    result = await chain.block(*(chain.vote(k, *events) for k in KEYS[:3]))
    assert {r: s for r, _, s in result.resolved} == {rid(d): "confirmed" for d in deposits}
    return result


async def kv(chain: Chain) -> dict[bytes, bytes]:
    return dict(await chain.ledger.kv_items(CREDIT_ACCOUNT, limit=1000))


async def balance(chain: Chain, account: str) -> int:
    return await chain.ledger.balance(account.lower())


def content(d: Deposit) -> bytes:
    """What makes two resolutions of one key the same deposit: (tx hash, recipient, amount)."""
    return d.tx_hash + bytes.fromhex(d.recipient[2:]) + d.amount.to_bytes(32, "big")


def described(d: Deposit) -> bytes:
    """The value of ``deposit:<key>``: tx hash, log index, recipient, amount."""
    return (
        d.tx_hash
        + d.log_index.to_bytes(8, "big")
        + bytes.fromhex(d.recipient[2:])
        + d.amount.to_bytes(32, "big")
    )


def orphan_record(d: Deposit, credited_at: int, orphaned_at: int) -> bytes:
    """One record of ``orphaned:<content>``: key, log index, credited and orphaned heights, resolution id."""
    h = credited_at.to_bytes(8, "big") + orphaned_at.to_bytes(8, "big")
    return d.key + d.log_index.to_bytes(8, "big") + h + rid(d)


def total(count: int, amount: int) -> bytes:
    return count.to_bytes(8, "big") + amount.to_bytes(32, "big")


def orphan_keys(state: dict[bytes, bytes]) -> list[bytes]:
    return [k for k in state if k.startswith((b"orphaned:", b"orphaned_total"))]


async def test_a_deposit_moved_by_a_reorg_stays_a_duplicate(chains: Chains) -> None:
    chain = await chains.open("ledger", genesis(KEYS))
    await confirm(chain, D3)
    moved = replace(D3, log_index=9, block_number=105)  # same tx, recipient, amount
    await confirm(chain, moved)
    state = await kv(chain)
    assert await balance(chain, R3) == 3000
    assert state[b"duplicate:" + rid(moved)] == D3.key
    assert state[credited_key(D3.key)] == (1).to_bytes(8, "big") + rid(D3)
    assert state[b"deposit:" + D3.key] == described(D3)
    assert tx_key(moved.tx_hash, moved.log_index) not in state
    assert orphan_keys(state) == []


async def test_a_different_deposit_under_a_credited_nonce_replaces_it_and_is_reconciled(
    chains: Chains, tmp_path: Path
) -> None:
    chain = await chains.open("ledger", genesis(KEYS))
    store = await EventStore.open(tmp_path / "events.sqlite")
    try:
        await confirm(chain, D3)  # height 1
        await chain.blocks(2)

        # Height 4: the chain now says nonce 7 is D4. D4 is credited; D3's credit stays with
        # its recipient and is recorded as orphaned.
        await confirm(chain, D4)
        state = await kv(chain)
        assert await balance(chain, R4) == 4000
        assert await balance(chain, R3) == 3000
        assert not [k for k in state if k.startswith(b"duplicate:")]
        assert state[credited_key(D4.key)] == (4).to_bytes(8, "big") + rid(D4)
        assert state[b"deposit:" + D4.key] == described(D4)
        assert state[tx_key(TX4, D4.log_index)] == D4.key
        assert state[tx_key(TX3, D3.log_index)] == D3.key
        assert state[b"orphaned:" + content(D3)] == orphan_record(D3, 1, 4)
        assert state[b"orphaned_total"] == total(1, 3000)
        assert await orphaned_credits(NodeView(chain.ledger, store)) == (1, 3000)  # what /ready reports

        # Where is my deposit: D4 credited, D3 orphaned (with both heights).
        (d4,) = await find_deposits(TX4, NodeView(chain.ledger, store))
        assert d4["status"] == "credited" and d4["credited_height"] == 4
        assert d4["recipient"] == R4 and d4["amount"] == "4000" and d4["nonce"] == 7
        (d3,) = await find_deposits(TX3, NodeView(chain.ledger, store))
        assert d3["status"] == "orphaned", d3
        assert (d3["credited_height"], d3["orphaned_height"]) == (1, 4)
        assert (d3["recipient"], d3["amount"], d3["nonce"], d3["log_index"]) == (R3, "3000", 7, 2)
        assert d3["resolution_id"] == rid(D3).hex()

        # Height 5: D3's transaction re-mined after D4 takes nonce 8: reconciled, not credited.
        await confirm(chain, D3_AGAIN)
        state = await kv(chain)
        assert await balance(chain, R3) == 3000
        assert await balance(chain, R4) == 4000
        assert orphan_keys(state) == []
        assert await orphaned_credits(NodeView(chain.ledger, store)) == (0, 0)
        assert state[credited_key(D3_AGAIN.key)] == (5).to_bytes(8, "big") + rid(D3_AGAIN)
        assert state[b"deposit:" + D3_AGAIN.key] == described(D3_AGAIN)
        assert state[tx_key(TX3, D3_AGAIN.log_index)] == D3_AGAIN.key
        (d3,) = await find_deposits(TX3, NodeView(chain.ledger, store))
        assert d3["status"] == "credited" and d3["credited_height"] == 5 and d3["nonce"] == 8
        assert d3["log_index"] == 1
    finally:
        await store.close()


async def test_several_orphans_of_one_key_and_one_content_do_not_overwrite_each_other(
    chains: Chains,
) -> None:
    """Nonce 7 flips D3 -> D4 -> D3 (its tx again) -> D5 over four heights; then two identical
    deposits of one transaction are both replaced: every credit given stays either backed by
    a key or recorded as orphaned, one record each."""
    chain = await chains.open("ledger", genesis(KEYS))
    d5 = Deposit(CHAIN, ESCROW, 7, b"\x55" * 32, 0, 200, OTHER_SENDER, R4, 5)
    d3_back = replace(D3, block_number=150)  # D3 at nonce 7 again: orphan of D3 reconciled
    await confirm(chain, D3)  # 1: R3 3000
    await confirm(chain, D4)  # 2: R4 4000, D3 orphaned
    await confirm(chain, d3_back)  # 3: D4 orphaned, D3 reconciled (no credit)
    state = await kv(chain)
    assert state[b"orphaned:" + content(D4)] == orphan_record(D4, 2, 3)
    assert b"orphaned:" + content(D3) not in state
    assert state[b"orphaned_total"] == total(1, 4000)
    await confirm(chain, d5)  # 4: D3 orphaned again, D5 credited
    state = await kv(chain)
    assert state[b"orphaned:" + content(D3)] == orphan_record(d3_back, 3, 4)
    assert state[b"orphaned_total"] == total(2, 7000)
    assert (await balance(chain, R3), await balance(chain, R4)) == (3000, 4005)
    assert 3000 + 4005 == 5 + 7000  # balances == backed (nonce 7 is D5) + liability

    # Two identical deposits of one tx (nonces 20, 21), both replaced at height 7.
    twin = Deposit(CHAIN, ESCROW, 20, b"\x66" * 32, 1, 300, SENDER, R3, 10)
    twin2 = replace(twin, nonce=21, log_index=2)
    await confirm(chain, twin, twin2)  # 5
    await chain.block()  # 6
    y = [Deposit(CHAIN, ESCROW, n, b"\x77" * 32, n, 400, OTHER_SENDER, R4, 1) for n in (20, 21)]
    await confirm(chain, *y)  # 7
    state = await kv(chain)
    records = state[b"orphaned:" + content(twin)]
    assert sorted([records[:152], records[152:]]) == sorted(
        [orphan_record(twin, 5, 7), orphan_record(twin2, 5, 7)]
    )
    assert state[b"orphaned_total"] == total(4, 7020)
    # One of them re-mined at nonce 22: one record reconciled, the other stays.
    await confirm(chain, replace(twin, nonce=22, log_index=0, block_number=401))  # 8
    state = await kv(chain)
    assert len(state[b"orphaned:" + content(twin)]) == 152
    assert state[b"orphaned_total"] == total(3, 7010)
    assert await balance(chain, R3) == 3020


async def test_two_deposits_of_one_transaction_are_both_credited(chains: Chains) -> None:
    chain = await chains.open("ledger", genesis(KEYS))
    a = Deposit(CHAIN, ESCROW, 10, TX3, 1, 300, SENDER, R3, 40)
    b = replace(a, nonce=11, log_index=2)  # identical content: same tx, recipient, amount
    c = replace(a, nonce=12, log_index=3, amount=2)
    await confirm(chain, a, b, c)
    state = await kv(chain)
    assert await balance(chain, R3) == 82
    assert not [k for k in state if k.startswith(b"duplicate:")]
    assert orphan_keys(state) == []
    for d in (a, b, c):
        assert state[credited_key(d.key)] == (1).to_bytes(8, "big") + rid(d)
        assert state[tx_key(d.tx_hash, d.log_index)] == d.key


def order(first: Deposit, second: Deposit) -> tuple[Deposit, Deposit]:
    """``first`` and ``second`` (moved to other blocks if needed) such that the ledger, which
    runs a block's resolutions by id, resolves ``first`` first."""
    for block in range(1000, 2000):
        f = replace(first, block_number=block)
        if rid(f) < rid(second):
            return f, second
    raise AssertionError("no block number orders them")


@pytest.mark.parametrize("replacement_id_first", [True, False])
async def test_a_deposit_shifted_by_an_insertion_in_one_block_is_untangled_in_nonce_order(
    chains: Chains, tmp_path: Path, replacement_id_first: bool
) -> None:
    """D3 credited at 7; the new chain has X at 7 and D3 at 8, both resolved in one block.
    credit_account resolves a block's deposits in nonce order whatever their ids: X replaces
    D3 at 7 first, then D3 at 8 is reconciled: no double credit, no liability. (By id, D3 at 8
    could come first and be credited again before nonce 7 said it moved.)"""
    chain = await chains.open("ledger", genesis(KEYS))
    x = replace(D4, block_number=500)
    await confirm(chain, D3)
    if replacement_id_first:
        x, again = order(x, D3_AGAIN)
    else:
        again, x = order(D3_AGAIN, x)
    await confirm(chain, x, again)
    state = await kv(chain)
    assert await balance(chain, R4) == 4000
    assert state[credited_key(x.key)] == (2).to_bytes(8, "big") + rid(x)
    assert state[credited_key(again.key)] == (2).to_bytes(8, "big") + rid(again)
    store = await EventStore.open(tmp_path / "events.sqlite")
    try:
        told = [(d["status"], d["nonce"]) for d in await find_deposits(TX3, NodeView(chain.ledger, store))]
    finally:
        await store.close()
    assert await balance(chain, R3) == 3000
    assert orphan_keys(state) == []
    assert told == [("credited", 8)]


async def test_two_ledgers_make_the_same_decisions_with_one_app_hash(chains: Chains) -> None:
    a = await chains.open("a", genesis(KEYS))
    b = await chains.open("b", genesis(KEYS))
    moved = replace(D3, log_index=5, block_number=101)
    script = [[D3], [moved], [D4], [], [D3_AGAIN, replace(D4, nonce=9, block_number=101)]]
    for deposits in script:
        ra = await confirm(a, *deposits) if deposits else await a.block()
        rb = await confirm(b, *deposits) if deposits else await b.block()
        assert ra.app_hash == rb.app_hash
    assert await kv(a) == await kv(b)
    assert await a.ledger.kv_items("", limit=1000) == await b.ledger.kv_items("", limit=1000)
