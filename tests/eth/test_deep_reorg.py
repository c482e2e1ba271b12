"""A reorg deeper than the safety point that gives a credited deposit's escrow nonce to a
*different* deposit, on a real anvil (``anvil_reorg``), a real node, real HTTP.

D3 is credited at nonce N; the chain is reorganised so that D4 (another sender, recipient and
amount) takes nonce N and D3 is gone. D4 is credited, D3's credit is recorded as orphaned (a
liability the operator must cover: it is not taken back), every node reports it on /ready,
and "where is my deposit" tells both stories. When D3's transaction is mined again (nonce
N+1) it is reconciled: not credited twice, the orphan cleared, /ready clean of it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
from eth_account import Account

from bridge.node import Node
from listeners.ethereum import Chain
from resolutions.credit import CREDIT_ACCOUNT, Deposit
from tests.eth.conftest import Anvil, wait_for
from tests.eth.nodes import deposits_table, make_home, running
from tests.eth.test_faults import ETH, Depositor, get

# anvil's second default account (public test key, funded on every anvil chain).
SECOND_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
ORPHANED = b"orphaned:"


async def balance(node: Node, account: str) -> int:
    return await node.ledger.balance(account.lower())


async def problems(http: aiohttp.ClientSession, node: Node) -> tuple[int, list[str]]:
    code, body = await get(http, node.api_url + "/ready")
    return code, list(body["problems"])


async def where(http: aiohttp.ClientSession, node: Node, tx_hash: str) -> tuple[int, Any]:
    return await get(http, f"{node.api_url}/v1/deposits/{tx_hash}")


async def test_a_different_deposit_taking_a_credited_nonce_is_credited_and_the_old_one_orphaned(
    tmp_path: Path, anvil: Anvil, chain: Chain, bridge: dict[str, Any]
) -> None:
    alice = await Depositor.create(anvil, chain, bridge)
    chain_b = await Chain.connect(anvil.url, SECOND_KEY)
    r3, r4 = Account.create().address, Account.create().address
    table = deposits_table(anvil.url, bridge, required_confirmations=0)
    try:
        bob = await Depositor.create(anvil, chain_b, bridge)
        async with running(make_home(tmp_path / "n", table)) as node, aiohttp.ClientSession() as http:
            status = node.listener_status[ETH]
            raw3 = alice.sign(3000, r3)
            tx3 = await alice.send(raw3)
            block3 = await alice.block_of(tx3)
            await anvil.mine(1)
            await wait_for(lambda: balance(node, r3), timeout=20)
            await wait_for(lambda: status.info.get("last_block", -1) >= block3 + 1, timeout=20)
            (nonce,) = [
                Deposit.decode(bytes.fromhex(str(r["body"]))).nonce
                for r in await node.ledger.list_resolutions("confirmed", CREDIT_ACCOUNT, limit=10)
            ]

            # The chain from D3's block on is replaced by one where Bob's D4 comes first and
            # takes D3's escrow nonce; D3 is not in it.
            raw4 = bob.sign(4000, r4)
            depth = await anvil.head() - block3 + 1
            await anvil.rpc("anvil_reorg", depth, [[raw4, 0]])
            await anvil.mine(1)
            receipt3 = await anvil.rpc("eth_getTransactionReceipt", tx3)
            assert receipt3 is None, "D3 should be gone from the new chain"
            await wait_for(lambda: status.counters.get("reorgs_beyond_safety", 0) > 0, timeout=20)

            # D4 is credited (before the fix it was a `duplicate:`, never credited).
            await wait_for(lambda: balance(node, r4), timeout=20)
            assert await balance(node, r4) == 4000
            assert await balance(node, r3) == 3000  # not clawed back
            orphans = await node.ledger.kv_prefix(CREDIT_ACCOUNT, ORPHANED)
            assert [k[len(ORPHANED) : len(ORPHANED) + 32].hex() for k, _ in orphans] == [tx3[2:]]
            code, found = await problems(http, node)
            assert code == 503 and [p for p in found if p.startswith("orphaned_credits")] == [
                "orphaned_credits:count=1,amount=3000"
            ], found
            confirmed = await node.ledger.list_resolutions("confirmed", CREDIT_ACCOUNT, limit=10)
            (d4,) = [
                d
                for d in (Deposit.decode(bytes.fromhex(str(r["body"]))) for r in confirmed)
                if d.recipient == r4
            ]
            assert d4.nonce == nonce and d4.amount == 4000
            code, body = await where(http, node, "0x" + d4.tx_hash.hex())
            assert code == 200 and [(d["status"], d["recipient"]) for d in body["deposits"]] == [
                ("credited", r4)
            ], body
            code, body = await where(http, node, tx3)
            assert code == 200, body
            (d3,) = body["deposits"]
            assert d3["status"] == "orphaned" and d3["recipient"] == r3 and d3["amount"] == "3000", d3
            assert d3["nonce"] == nonce and 0 < d3["credited_height"] < d3["orphaned_height"], d3

            # D3's transaction mined again (Alice's nonce went back with the reorg): it takes
            # nonce N+1 and is reconciled with its orphaned credit, not credited twice.
            assert await alice.send(raw3) == tx3
            await alice.block_of(tx3)
            await anvil.mine(1)

            async def reconciled() -> bool:
                return not await node.ledger.kv_prefix(CREDIT_ACCOUNT, ORPHANED)

            await wait_for(reconciled, timeout=20)
            assert (await balance(node, r3), await balance(node, r4)) == (3000, 4000)
            assert not await node.ledger.kv_prefix(CREDIT_ACCOUNT, b"orphaned_total")
            code, found = await problems(http, node)
            assert not [p for p in found if p.startswith("orphaned_credits")], found
            assert f"reorg_beyond_safety:{ETH}" in found  # the reorg itself stays reported
            code, body = await where(http, node, tx3)
            assert code == 200 and [(d["status"], d["nonce"]) for d in body["deposits"]] == [
                ("credited", nonce + 1)
            ], body
            assert not await node.ledger.list_resolutions("failed", CREDIT_ACCOUNT, limit=10)
    finally:
        await chain_b.close()


async def test_a_deposit_shifted_by_a_deep_reorg_is_credited_once(
    tmp_path: Path, anvil: Anvil, chain: Chain, bridge: dict[str, Any]
) -> None:
    """D4 slips in front of D3 in the reorged chain (same block): nonce N is D4, N+1 is D3.
    The listener stores both in one chunk, so they resolve in one ledger block, in nonce
    order: D4 replaces D3 at N, then D3 at N+1 is reconciled. (In id order, D3 could come
    first and be credited twice; 3 runs in 6 did before the order was set.)"""
    alice = await Depositor.create(anvil, chain, bridge)
    chain_b = await Chain.connect(anvil.url, SECOND_KEY)
    r3, r4 = Account.create().address, Account.create().address
    table = deposits_table(anvil.url, bridge, required_confirmations=0)
    try:
        bob = await Depositor.create(anvil, chain_b, bridge)
        async with running(make_home(tmp_path / "n", table)) as node, aiohttp.ClientSession() as http:
            raw3 = alice.sign(3000, r3)
            tx3 = await alice.send(raw3)
            block3 = await alice.block_of(tx3)
            await anvil.mine(1)
            await wait_for(lambda: balance(node, r3), timeout=20)
            (first,) = await node.ledger.list_resolutions("confirmed", CREDIT_ACCOUNT, limit=10)
            nonce = Deposit.decode(bytes.fromhex(str(first["body"]))).nonce
            depth = await anvil.head() - block3 + 1
            await anvil.rpc("anvil_reorg", depth, [[bob.sign(4000, r4), 0], [raw3, 0]])
            await anvil.mine(1)

            async def settled() -> bool:
                done = await node.ledger.list_resolutions("confirmed", CREDIT_ACCOUNT, limit=10)
                return len(done) == 3 and not await node.ledger.pending(CREDIT_ACCOUNT)

            await wait_for(settled, timeout=20)
            assert await balance(node, r4) == 4000
            got = await balance(node, r3)
            assert got == 3000
            assert await node.ledger.kv_prefix(CREDIT_ACCOUNT, ORPHANED) == []
            code, found = await problems(http, node)
            assert not [p for p in found if p.startswith("orphaned_credits")], found
            code, body = await where(http, node, tx3)
            assert sorted((d["status"], d["nonce"] - nonce) for d in body["deposits"]) == [("credited", 1)], (
                body
            )
    finally:
        await chain_b.close()
