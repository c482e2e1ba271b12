"""Admission control: what a flood of free transactions can no longer do. A real ledger, the
solo engine's mempool (what `POST /v1/tx` feeds) and CometBFT's ABCI check_tx, on SQLite."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bridge.encoding import event_id
from bridge.engines import cometbft
from bridge.engines.abci.types import CheckTxRequest, CheckTxType
from bridge.engines.solo import SoloEngine
from bridge.errors import TxCode
from bridge.keys import NodeKey, account_id
from bridge.ledger import Genesis, governance
from bridge.ledger.app import MAX_NONCE_AHEAD
from bridge.txs import Transfer, encode_join
from tests.ledger_helpers import Chain, Chains, address, eth_account_id, genesis, new_eth_account, node_keys

BOND = 10**18
VALIDATOR = node_keys(1)[0]


@pytest.fixture
async def chains(tmp_path: Path) -> AsyncIterator[Chains]:
    c = Chains(tmp_path)
    yield c
    await c.close_all()


def rows(chain: Chain, table: str) -> int:
    return int(chain.ledger.state.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


async def test_future_nonces_are_bounded_and_what_cannot_execute_is_evicted(chains: Chains) -> None:
    # ed25519 signers: 10,000 signatures in a second (an EIP-712 one takes milliseconds).
    flooder, honest = NodeKey.from_seed(b"\x51" * 32), NodeKey.from_seed(b"\x52" * 32)
    accounts = [(account_id(flooder.public), 10**6), (account_id(honest.public), 10)]
    chain = await chains.open("a", genesis([VALIDATOR], accounts=accounts))
    engine = SoloEngine(chain.ledger, VALIDATOR)

    def transfer(key: NodeKey, to: NodeKey, amount: int, nonce: int) -> bytes:
        return chain.tx(key, "transfer", Transfer(to.public, amount).encode(), nonce)

    # Nonces 1..10000 from one funded key: nonce 0 never comes.
    codes = [(await engine.submit(transfer(flooder, honest, 1, nonce))).code for nonce in range(1, 10_001)]
    assert codes[: MAX_NONCE_AHEAD - 1] == [TxCode.OK] * (MAX_NONCE_AHEAD - 1)
    assert set(codes[MAX_NONCE_AHEAD - 1 :]) == {TxCode.BAD_NONCE}
    assert engine.mempool_size == MAX_NONCE_AHEAD - 1
    # An honest transfer gets in during the flood, and into the next block.
    assert (await engine.submit(transfer(honest, flooder, 7, 0))).ok
    result = await engine.make_block()
    assert [r.code for r in result.tx_results] == [TxCode.OK]  # no gapped transaction in a block
    assert await chain.ledger.balance(account_id(flooder.public)) == 10**6 + 7
    # The gap is never filled: the waiting transactions go after max_wait blocks.
    for _ in range(engine.mempool.max_wait + 1):
        assert not (await engine.make_block()).tx_results
    assert engine.mempool_size == 0 and await chain.ledger.nonce(flooder.public) == 0


async def test_a_join_flood_from_fresh_keys_is_refused_and_an_honest_join_passes(chains: Chains) -> None:
    candidate = NodeKey.from_seed(b"\x42" * 32)
    gen = dataclasses.replace(
        genesis([VALIDATOR], accounts=[(account_id(candidate.public), BOND)]), join_bond=BOND
    )
    chain = await chains.open("a", gen)
    engine = SoloEngine(chain.ledger, VALIDATOR)
    for i in range(3000):  # 3,000 fresh keys, one join each: nothing in the mempool
        spammer = NodeKey.from_seed(i.to_bytes(32, "big"))
        refused = await engine.submit(chain.tx(spammer, "join", encode_join(1), 0))
        assert refused.code == TxCode.INSUFFICIENT_BALANCE, refused
    assert engine.mempool_size == 0
    # One key, many nonces: none for free.
    spammer = NodeKey.from_seed(b"\x07" * 32)
    assert not any([(await engine.submit(chain.join(spammer, 1, n))).ok for n in range(1, 200)])

    # The honest candidate holds the bond: its join is taken, locks the bond, and is approved.
    assert (await engine.submit(chain.join(candidate, 5))).ok
    result = await engine.make_block()
    assert [r.code for r in result.tx_results] == [TxCode.OK]
    assert await chain.ledger.balance(account_id(candidate.public)) == 0  # locked
    rid = event_id(governance.JOIN, governance.join_body(candidate.public, 5, 0))
    assert (await engine.submit(chain.tx(VALIDATOR, "approve", rid))).ok
    await engine.make_block()
    assert chain.ledger.validators[candidate.public] == 5
    assert await chain.ledger.balance(account_id(candidate.public)) == BOND  # returned
    # Bounded tables: the validator's and the candidate's nonces, nothing pending.
    assert rows(chain, "nonces") == 2 and rows(chain, "resolutions") == 0
    assert not await chain.ledger.kv_items(governance.JOIN)


async def test_a_join_request_that_expires_returns_its_bond(chains: Chains) -> None:
    candidate = NodeKey.from_seed(b"\x43" * 32)
    gen = dataclasses.replace(
        genesis([VALIDATOR], accounts=[(account_id(candidate.public), BOND + 5)]),
        join_bond=BOND,
        expiration_periods=((governance.JOIN, 3),),
    )
    chain = await chains.open("a", gen)
    result = await chain.block(chain.join(candidate, 1))
    assert [r.code for r in result.tx_results] == [TxCode.OK]
    assert await chain.ledger.balance(account_id(candidate.public)) == 5
    # A second request needs a second bond.
    assert (await chain.block(chain.join(candidate, 1))).tx_results[0].code == TxCode.INSUFFICIENT_BALANCE
    outcomes = [o for r in await chain.blocks(4) for o in r.resolved]
    assert [status for _, _, status in outcomes] == ["expired"]
    assert await chain.ledger.balance(account_id(candidate.public)) == BOND + 5
    assert candidate.public not in chain.ledger.validators


async def test_a_proposal_carries_no_transaction_behind_a_nonce_gap(chains: Chains) -> None:
    user = new_eth_account()
    chain = await chains.open("a", genesis([VALIDATOR], accounts=[(eth_account_id(user), 100)]))
    to = address(new_eth_account())
    zero, two, three = (chain.transfer(user, to, 1, n) for n in (0, 2, 3))
    assert await chain.ledger.prepare_proposal([three, two, zero], 1 << 20) == [zero]
    assert await chain.ledger.prepare_proposal([three, two], 1 << 20) == []


async def test_cometbft_recheck_drops_a_transaction_that_waits_behind_a_gap(
    chains: Chains, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cometbft, "MEMPOOL_MAX_WAIT", 3)
    user = new_eth_account()
    gen = genesis([VALIDATOR], accounts=[(eth_account_id(user), 100)])
    chain = await chains.open("a", gen)
    app = cometbft.LedgerApplication(chain.ledger, gen, None)  # type: ignore[arg-type]
    to = address(new_eth_account())
    gapped, ready = chain.transfer(user, to, 1, 1), chain.transfer(user, to, 1, 0)
    assert (await app.check_tx(CheckTxRequest(gapped, CheckTxType.NEW))).code == 0
    codes = []
    for _ in range(5):
        await chain.block()
        codes.append((await app.check_tx(CheckTxRequest(gapped, CheckTxType.RECHECK))).code)
        assert (await app.check_tx(CheckTxRequest(ready, CheckTxType.RECHECK))).code == 0
    assert codes[:3] == [0, 0, 0] and codes[3] == TxCode.BAD_NONCE


def test_genesis_join_bond_round_trips_and_is_checked() -> None:
    gen = dataclasses.replace(genesis([VALIDATOR]), join_bond=BOND)
    assert Genesis.from_json(gen.to_json()) == gen
    assert Genesis.from_json({k: v for k, v in gen.to_json().items() if k != "join_bond"}).join_bond == 0
    with pytest.raises(Exception, match="join_bond"):
        Genesis.from_json({**gen.to_json(), "join_bond": "-1"})
