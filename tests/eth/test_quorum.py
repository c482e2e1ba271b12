"""``rpc_quorum``: several providers must return the same logs before the listener believes
them. Real anvil behind fault proxies (tests/rpcproxy.py), one of which lies; a real node."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from eth_account import Account

from bridge.node import Node
from listeners.eth_deposits import EthDepositsConfig
from listeners.ethereum import Chain
from resolutions.credit import CREDIT_ACCOUNT, Deposit
from tests.eth.conftest import Anvil, wait_for
from tests.eth.nodes import deposits_table, make_home, running
from tests.eth.test_faults import ETH, Depositor, assert_credited_once, chain_truth, get, listener_metric
from tests.rpcproxy import RpcProxy

DISAGREEMENT = f"rpc_disagreement:{ETH}"


@asynccontextmanager
async def proxies(anvil: Anvil, count: int) -> AsyncIterator[list[RpcProxy]]:
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(RpcProxy(anvil.url, seed=i)) for i in range(count)]


async def nonces(node: Node, status: str | None = "confirmed") -> list[int]:
    found = await node.ledger.list_resolutions(status, CREDIT_ACCOUNT, limit=1000)
    return sorted(Deposit.decode(bytes.fromhex(str(r["body"]))).nonce for r in found)


async def problems(http: aiohttp.ClientSession, node: Node) -> tuple[int, list[str]]:
    status, body = await get(http, node.api_url + "/ready")
    return status, list(body["problems"])


async def ready(http: aiohttp.ClientSession, node: Node) -> bool:
    return await problems(http, node) == (200, [])


async def no_events(node: Node) -> bool:
    """Whether the node's EventStore is empty: nothing stored, or everything voted and resolved."""
    return await node.store.counts() == {}


def test_rpc_quorum_is_at_least_one_and_at_most_the_endpoints() -> None:
    table = {"rpc_url": ["http://a", "http://b"], "contract_address": "0x" + "12" * 20, "chain_id": 1}
    prefix = "app.extensions.eth_deposits"
    assert EthDepositsConfig.parse(table, prefix).rpc_quorum == 1
    assert EthDepositsConfig.parse({**table, "rpc_quorum": 2}, prefix).rpc_quorum == 2
    for wrong in (0, 3, "two"):
        with pytest.raises(ValueError, match=rf"^{prefix}\.rpc_quorum: "):
            EthDepositsConfig.parse({**table, "rpc_quorum": wrong}, prefix)


async def test_two_honest_providers_of_three_outvote_a_liar(
    tmp_path: Path, anvil: Anvil, chain: Chain, bridge: dict[str, Any]
) -> None:
    depositor = await Depositor.create(anvil, chain, bridge)
    alice, bob, carol, dave, fake = (Account.create().address for _ in range(5))
    blocks = [await depositor.deposit(amount, to) for amount, to in [(100, alice), (200, bob), (300, carol)]]
    async with proxies(anvil, 3) as (liar, honest, spare), aiohttp.ClientSession() as http:
        # Asked first, the liar invents a deposit, hides nonce 1 and inflates nonce 2.
        liar.fabricated_log.on(block=blocks[0], recipient=fake, amount=10**24)
        liar.omitted_log.on(nonce=1)
        liar.wrong_amount.on(nonce=2, amount=10**24)
        urls = [liar.url, honest.url, spare.url]
        table = deposits_table(liar.url, bridge, rpc_url=urls, rpc_quorum=2)
        async with running(make_home(tmp_path / "n", table)) as node:
            status = node.listener_status[ETH]
            await assert_credited_once(node, {alice.lower(): 100, bob.lower(): 200, carol.lower(): 300}, 3)
            assert await nonces(node) == [0, 1, 2]
            assert await node.ledger.balance(fake.lower()) == 0
            # It was heard (all three lies in the first chunk's answer) and outvoted.
            assert (liar.fabricated_log.hits, liar.omitted_log.hits, liar.wrong_amount.hits) == (1, 1, 1)
            assert spare.calls["eth_getLogs"] >= 1
            assert status.counters["rpc_disagreements"] >= 1
            assert await listener_metric(http, node.api_url, "rpc_disagreements") >= 1
            await wait_for(lambda: ready(http, node), timeout=20)

            # The spare provider goes down: the liar's lie (a deposit at the end of every range)
            # now stands one against one, and the listener stalls and says so instead of voting.
            spare.server_error.on()
            liar.fabricated_log.on(block=None)
            block = await depositor.deposit(400, dave)

            async def stalled() -> bool:
                return await problems(http, node) == (503, [DISAGREEMENT])

            await wait_for(stalled, timeout=20)
            assert status.info["last_block"] < block
            assert await node.ledger.balance(dave.lower()) == 0
            assert await nonces(node, None) == [0, 1, 2]

            spare.server_error.off()  # back: two agree again
            await assert_credited_once(
                node, {alice.lower(): 100, bob.lower(): 200, carol.lower(): 300, dave.lower(): 400}, 4
            )
            assert await node.ledger.balance(fake.lower()) == 0
            assert await nonces(node, None) == [0, 1, 2, 3]
            await wait_for(lambda: ready(http, node), timeout=20)
            assert node.fatal is None


@pytest.mark.parametrize("lie", ["fabricated_log", "omitted_log", "wrong_amount"])
async def test_two_of_two_stall_rather_than_believe_one_liar(
    tmp_path: Path, anvil: Anvil, chain: Chain, bridge: dict[str, Any], lie: str
) -> None:
    depositor = await Depositor.create(anvil, chain, bridge)
    alice, bob = Account.create().address, Account.create().address
    await depositor.deposit(100, alice)
    await depositor.deposit(200, bob)
    async with proxies(anvil, 2) as (honest, liar), aiohttp.ClientSession() as http:
        liar.fault(lie).on()  # every answer with a deposit in it (fabricated: every answer)
        table = deposits_table(honest.url, bridge, rpc_url=[honest.url, liar.url], rpc_quorum=2)
        async with running(make_home(tmp_path / "n", table)) as node:
            status = node.listener_status[ETH]

            async def reported() -> bool:
                disagreements = await listener_metric(http, node.api_url, "rpc_disagreements")
                return disagreements >= 2 and await problems(http, node) == (503, [DISAGREEMENT])

            await wait_for(reported, timeout=20)
            # Stuck on the one chunk that holds both deposits: nothing stored, nothing voted.
            assert "last_block" not in status.info
            assert await no_events(node)
            assert await nonces(node, None) == []
            assert liar.fault(lie).hits >= 2

            liar.fault(lie).off()
            expected, deposits = await chain_truth(chain, bridge)
            await assert_credited_once(node, expected, deposits)
            await wait_for(lambda: ready(http, node), timeout=20)


async def test_without_a_quorum_a_lying_provider_is_believed(
    tmp_path: Path, anvil: Anvil, chain: Chain, bridge: dict[str, Any]
) -> None:
    """Why rpc_quorum exists: with one provider (or failover), the provider's word is the truth."""
    depositor = await Depositor.create(anvil, chain, bridge)
    alice, bob, fake = (Account.create().address for _ in range(3))
    first = await depositor.deposit(100, alice)
    await depositor.deposit(200, bob)
    async with proxies(anvil, 1) as (liar,):
        liar.fabricated_log.on(block=first, recipient=fake, amount=10**24)
        liar.omitted_log.on(nonce=1)
        async with running(make_home(tmp_path / "n", deposits_table(liar.url, bridge))) as node:
            await wait_for(lambda: node.ledger.balance(fake.lower()), timeout=20)
            assert await node.ledger.balance(fake.lower()) == 10**24  # a deposit that never happened
            await wait_for(lambda: no_events(node), timeout=20)
            assert await nonces(node, None) == [0, 10**9 + first]  # nonce 1 skipped, silently
            assert await node.ledger.balance(bob.lower()) == 0
            assert node.listener_status[ETH].problems == set()
