"""Providers that lie about the head: one that lags, one that jumps back, one that runs
ahead. Real anvil behind the fault proxy (tests/rpcproxy.py), a real node. Also the proxy's
lie modes themselves, over plain JSON-RPC."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
from eth_account import Account

from listeners.ethereum import Chain
from tests.eth.conftest import Anvil, wait_for
from tests.eth.nodes import deposits_table, make_home, running
from tests.eth.test_faults import ETH, Depositor, assert_credited_once, chain_truth
from tests.eth.test_quorum import proxies
from tests.rpcproxy import DEPOSIT_TOPIC, LogsQuery, RpcProxy, _parser, configure


def scanned_once(queries: list[LogsQuery]) -> bool:
    """Whether the ranges answered ``ok`` never overlap: no block was scanned twice."""
    ranges = sorted((q.from_block, q.to_block) for q in queries if q.outcome == "ok")
    return all(a[1] < b[0] for a, b in zip(ranges, ranges[1:], strict=False))


async def test_a_lagging_head_delays_votes_and_loses_nothing(
    tmp_path: Path, anvil: Anvil, chain: Chain, bridge: dict[str, Any]
) -> None:
    depositor = await Depositor.create(anvil, chain, bridge)
    alice, bob = Account.create().address, Account.create().address
    await depositor.deposit(100, alice)
    await anvil.mine(10)
    async with RpcProxy(anvil.url) as proxy:
        proxy.lagging_head.on(blocks=5)  # and blocks above its head are unknown to it
        table = deposits_table(proxy.url, bridge, required_confirmations=2)
        async with running(make_home(tmp_path / "n", table)) as node:
            status = node.listener_status[ETH]
            await assert_credited_once(node, {alice.lower(): 100}, 1)
            block = await depositor.deposit(200, bob)
            await anvil.mine(5)
            # 5 confirmations: safe for an honest head, not for one 5 blocks behind.
            head = await anvil.head()
            assert head - 2 >= block > head - 5 - 2
            await wait_for(lambda: status.info.get("safe_block") == head - 5 - 2, timeout=20)
            await wait_for(lambda: status.info.get("last_block") == head - 5 - 2, timeout=20)
            assert await node.ledger.balance(bob.lower()) == 0
            assert max(q.to_block for q in proxy.logs) < block  # never asked past its safety point
            assert proxy.lagging_head.hits > 0

            proxy.lagging_head.off()
            expected, deposits = await chain_truth(chain, bridge)
            await assert_credited_once(node, expected, deposits)
            assert scanned_once(proxy.logs)
            assert status.counters.get("reorgs_beyond_safety", 0) == 0


async def test_a_head_that_jumps_back_makes_the_listener_wait_not_rescan(
    tmp_path: Path, anvil: Anvil, chain: Chain, bridge: dict[str, Any]
) -> None:
    depositor = await Depositor.create(anvil, chain, bridge)
    alice, bob = Account.create().address, Account.create().address
    await depositor.deposit(100, alice)
    await anvil.mine(30)
    async with RpcProxy(anvil.url) as proxy:
        async with running(make_home(tmp_path / "n", deposits_table(proxy.url, bridge))) as node:
            status = node.listener_status[ETH]
            await assert_credited_once(node, {alice.lower(): 100}, 1)
            top = await anvil.head()
            await wait_for(lambda: status.info.get("last_block") == top, timeout=20)

            # The head drops 20 blocks below the last one scanned, and blocks above it vanish.
            proxy.head_jump_back.on(blocks=20)
            asked = len(proxy.logs)
            await wait_for(lambda: status.info.get("safe_block") == top - 20, timeout=20)
            block = await depositor.deposit(200, bob)
            calls = proxy.calls["eth_blockNumber"]
            await wait_for(lambda: proxy.calls["eth_blockNumber"] >= calls + 3, timeout=20)  # 3 more passes
            # Waiting: no rescan, no reorg, no new deposit, no crash.
            assert len(proxy.logs) == asked
            assert status.info["last_block"] == top
            assert await node.ledger.balance(bob.lower()) == 0
            assert proxy.head_jump_back.hits >= 3
            assert node.fatal is None and status.problems == set()

            proxy.head_jump_back.off()
            expected, deposits = await chain_truth(chain, bridge)
            await assert_credited_once(node, expected, deposits)
            assert status.info["last_block"] >= block
            assert scanned_once(proxy.logs)
            assert status.counters.get("reorgs_beyond_safety", 0) == 0


async def test_with_a_quorum_a_head_running_ahead_pushes_the_safety_point_nowhere(
    tmp_path: Path, anvil: Anvil, chain: Chain, bridge: dict[str, Any]
) -> None:
    depositor = await Depositor.create(anvil, chain, bridge)
    alice = Account.create().address
    async with proxies(anvil, 2) as (ahead, honest):
        ahead.lagging_head.on(blocks=-1000)  # claims a head 1,000 blocks past the real one
        urls = [ahead.url, honest.url]
        table = deposits_table(ahead.url, bridge, rpc_url=urls, rpc_quorum=2, required_confirmations=3)
        async with running(make_home(tmp_path / "n", table)) as node:
            status = node.listener_status[ETH]
            for amount in (100, 200, 300):
                await depositor.deposit(amount, alice)
                await anvil.mine(1)
                head = await anvil.head()
                await wait_for(lambda: status.info.get("safe_block") == head - 3, timeout=20)  # noqa: B023
                assert max(q.to_block for q in [*ahead.logs, *honest.logs]) <= head - 3
            await anvil.mine(3)
            await assert_credited_once(node, {alice.lower(): 600}, 3)
            assert ahead.lagging_head.hits > 0
            assert status.counters.get("rpc_disagreements", 0) == 0  # heads differ; that is no lie


# -- the proxy's lie modes themselves -- #


async def test_proxy_lies_as_told(anvil: Anvil, chain: Chain, bridge: dict[str, Any]) -> None:
    depositor = await Depositor.create(anvil, chain, bridge)
    recipient = Account.create().address
    blocks = [await depositor.deposit(amount, recipient) for amount in (7, 8, 9)]
    await anvil.mine(10)
    head = await anvil.head()
    flt = {
        "address": bridge["escrow"],
        "topics": [DEPOSIT_TOPIC],
        "fromBlock": hex(blocks[0]),
        "toBlock": hex(blocks[-1]),
    }

    async with RpcProxy(anvil.url) as proxy, aiohttp.ClientSession() as http:

        async def rpc(method: str, *params: Any) -> Any:
            body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
            async with http.post(proxy.url, json=body) as response:
                return (await response.json())["result"]

        async def deposits() -> list[tuple[int, int]]:
            """(escrow nonce, amount) of each Deposit log the proxy answers."""
            return [
                (int(log["topics"][1], 16), int(log["data"], 16)) for log in await rpc("eth_getLogs", flt)
            ]

        truth = await deposits()
        assert truth == [(0, 7), (1, 8), (2, 9)]

        proxy.lagging_head.on(blocks=4)
        assert int(await rpc("eth_blockNumber"), 16) == head - 4
        assert await rpc("eth_getBlockByNumber", hex(head), False) is None
        assert int((await rpc("eth_getBlockByNumber", "latest", False))["number"], 16) == head - 4
        proxy.lagging_head.on(blocks=-1000)
        assert int(await rpc("eth_blockNumber"), 16) == head + 1000
        proxy.lagging_head.off()

        proxy.head_jump_back.on(blocks=6)
        first = int(await rpc("eth_blockNumber"), 16)
        await anvil.mine(2)  # frozen: the head does not follow upstream
        assert (first, int(await rpc("eth_blockNumber"), 16)) == (head - 6, head - 6)
        proxy.head_jump_back.off()
        assert int(await rpc("eth_blockNumber"), 16) == head + 2

        proxy.fabricated_log.on(block=blocks[1], nonce=77, amount=5)
        lied = await rpc("eth_getLogs", flt)
        assert [(int(log["topics"][1], 16), int(log["data"], 16)) for log in lied] == [
            (0, 7),
            (1, 8),
            (77, 5),
            (2, 9),
        ]
        real = await rpc("eth_getBlockByNumber", hex(blocks[1]), False)
        assert lied[2]["blockHash"] == real["hash"] and lied[2]["address"] == bridge["escrow"]
        proxy.fabricated_log.off()
        proxy.omitted_log.on(nonce=1)
        assert await deposits() == [(0, 7), (2, 9)]
        proxy.omitted_log.on(nonce=None)
        assert await deposits() == [(1, 8), (2, 9)]
        proxy.omitted_log.off()
        proxy.wrong_amount.on(nonce=2, amount=1)
        assert await deposits() == [(0, 7), (1, 8), (2, 1)]
        proxy.wrong_amount.on(nonce=None, amount=None)
        assert await deposits() == [(0, 70), (1, 8), (2, 9)]
        proxy.wrong_amount.on(rate=0.0)  # on, but never fires
        assert await deposits() == truth

        # The same modes over the HTTP control endpoint and from the command line.
        async with http.post(f"{proxy.url}/_proxy/faults/omitted_log", json={"enabled": True, "nonce": 0}):
            pass
        assert await deposits() == [(1, 8), (2, 9)]
        async with http.get(f"{proxy.url}/_proxy") as response:
            faults = (await response.json())["faults"]
        assert faults["omitted_log"]["hits"] == 3 and faults["head_jump_back"]["blocks"] == 6

    cli = RpcProxy(anvil.url)
    args = ["--upstream", anvil.url, "--lagging-head", "1", "--lag", "3", "--head-jump-back", "0.5"]
    args += ["--fabricated-log", "1", "--lie-block", "9", "--omitted-log", "1", "--wrong-amount", "0.2"]
    configure(cli, _parser().parse_args([*args, "--lie-nonce", "4"]))
    assert (cli.lagging_head.enabled, cli.lagging_head.blocks) == (True, 3)
    assert (cli.head_jump_back.rate, cli.fabricated_log.block) == (0.5, 9)
    assert (cli.omitted_log.nonce, cli.wrong_amount.nonce, cli.wrong_amount.rate) == (4, 4, 0.2)
