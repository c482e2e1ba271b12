"""Resource bounds against a hostile validator, on a real ledger file: a flood of bogus votes
fills neither the blocks nor the tables, honest deposits keep confirming, and processed ids
are pruned behind a watermark."""

from __future__ import annotations

from pathlib import Path

import resolutions.credit  # noqa: F401  (registers credit_account)
from bridge.errors import TxCode
from bridge.ledger import Block
from bridge.ledger.app import MAX_PENDING_PER_VALIDATOR, MAX_VOTES_PER_BLOCK
from bridge.txs import MAX_VOTES_PER_TX
from resolutions import ResolutionConfig, register_resolution
from resolutions.credit import CREDIT_ACCOUNT, Deposit, credited_key
from tests.ledger_helpers import Chains, credit_body, genesis, node_keys

ESCROW = "0x" + "e5" * 20


def deposit(nonce: int, *, escrow: str = ESCROW, amount: int = 1) -> bytes:
    """A canonical credit_account body (ABI words, built directly: tens of thousands are needed)."""
    recipient = bytes.fromhex("ab" * 19) + (nonce % 7).to_bytes(1, "big")
    words = [
        (31337).to_bytes(32, "big"),
        bytes(12) + bytes.fromhex(escrow[2:]),
        nonce.to_bytes(32, "big"),
        nonce.to_bytes(32, "big"),  # tx hash
        bytes(32),
        (100 + nonce).to_bytes(32, "big"),
        bytes(12) + bytes.fromhex("5e" * 20),
        bytes(12) + recipient,
        amount.to_bytes(32, "big"),
    ]
    return b"".join(words)


async def test_a_flood_of_bogus_votes_is_bounded_and_honest_deposits_confirm(tmp_path: Path) -> None:
    keys = node_keys(4)
    honest, attacker = keys[:3], keys[3]
    chains = Chains(tmp_path)
    c = await chains.open("flood", genesis(keys))
    ledger = c.ledger
    try:
        blocks, per_block, bogus_per_block = 6, 50, 6 * MAX_VOTES_PER_TX  # the attacker: 12,000 a block
        refused: dict[str, int] = {}
        for b in range(blocks):
            # The attacker floods the mempool first, with consecutive nonces.
            start = await ledger.nonce(attacker.public)
            flood = [
                c.vote(
                    attacker,
                    *(
                        (
                            CREDIT_ACCOUNT,
                            deposit(
                                10**9 + b * bogus_per_block + t * MAX_VOTES_PER_TX + i,
                                escrow="0x" + "66" * 20,
                            ),
                        )
                        for i in range(MAX_VOTES_PER_TX)
                    ),
                    nonce=start + t,
                )
                for t in range(bogus_per_block // MAX_VOTES_PER_TX)
            ]
            real = [(CREDIT_ACCOUNT, deposit(b * per_block + i)) for i in range(per_block)]
            votes = [c.vote(k, *real, nonce=await ledger.nonce(k.public)) for k in honest]
            proposal = await ledger.prepare_proposal([*flood, *votes], max_tx_bytes=100 << 20)
            assert all(v in proposal for v in votes)  # honest votes are never crowded out
            height = ledger.height + 1
            result = await ledger.finalize_block(Block(height, height, honest[0].public, tuple(proposal)))
            await ledger.commit()
            for tx in result.tx_results:
                if not tx.ok:
                    refused[tx.code.name] = refused.get(tx.code.name, 0) + 1
            assert sum(1 for _, t, s in result.resolved if s == "confirmed") == per_block

        # Every honest deposit is credited once; nothing bogus is.
        total = 0
        for n in range(blocks * per_block):
            d = Deposit.decode(deposit(n))
            assert await ledger.view.kv_get(CREDIT_ACCOUNT, credited_key(d.key)) is not None
            total += 1
        balances = [await ledger.balance("0x" + "ab" * 19 + f"{r:02x}") for r in range(7)]
        assert sum(balances) == total == blocks * per_block
        # The flood is bounded: the attacker's pending resolutions stop at the cap, and the
        # rest of its votes were refused or left out of the blocks.
        pending = await ledger.view.pending_created_by(attacker.public)
        assert pending == MAX_PENDING_PER_VALIDATOR
        assert refused.get(TxCode.TOO_MANY_PENDING.name, 0) > 0
        assert len(await ledger.pending(CREDIT_ACCOUNT)) == MAX_PENDING_PER_VALIDATOR
    finally:
        await chains.close_all()


async def test_a_block_never_executes_more_votes_than_its_budget(tmp_path: Path) -> None:
    keys = node_keys(1)
    chains = Chains(tmp_path)
    c = await chains.open("budget", genesis(keys))
    try:
        n = MAX_VOTES_PER_BLOCK // MAX_VOTES_PER_TX
        txs = [
            c.vote(
                keys[0],
                *((CREDIT_ACCOUNT, deposit(t * MAX_VOTES_PER_TX + i)) for i in range(MAX_VOTES_PER_TX)),
            )
            for t in range(n + 1)
        ]
        assert len(await c.ledger.prepare_proposal(txs, max_tx_bytes=100 << 20)) == n
        result = await c.block(*txs)  # a proposer that ignores the budget
        assert [t.code for t in result.tx_results] == [TxCode.OK] * n + [TxCode.BLOCK_FULL]
        assert len(result.resolved) == MAX_VOTES_PER_BLOCK
        assert await c.ledger.nonce(keys[0].public) == n + 1  # the refused one used its nonce
    finally:
        await chains.close_all()


async def test_processed_ids_are_pruned_behind_the_watermark(tmp_path: Path) -> None:
    register_resolution(
        "pruned_credit", ResolutionConfig(resolve=_noop_resolve, expiration_period=2, keep_processed=3)
    )
    keys = node_keys(1)
    chains = Chains(tmp_path)
    a, b = await chains.open("a", genesis(keys)), await chains.open("b", genesis(keys))
    try:
        event = ("pruned_credit", credit_body("0x" + "a1" * 20, 1))
        for chain in (a, b):
            result = await chain.block(chain.vote(keys[0], event))
            assert [s for _, _, s in result.resolved] == ["confirmed"]
            height = chain.ledger.height
            await chain.blocks(2)
            assert len(await chain.ledger.list_resolutions("confirmed", "pruned_credit")) == 1
            await chain.blocks(1)  # height + 3: the row is forgotten
            assert await chain.ledger.list_resolutions("confirmed", "pruned_credit") == []
            assert chain.ledger.height == height + 3
        assert a.ledger.app_hash == b.ledger.app_hash
        # A vote this late is a new event again (which is why types must opt in).
        result = await a.block(a.vote(keys[0], event))
        assert [s for _, _, s in result.resolved] == ["confirmed"]
    finally:
        await chains.close_all()


async def _noop_resolve(*_: object) -> None:
    pass
