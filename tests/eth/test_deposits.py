"""The eth_deposits listener and credit_account against a real anvil chain."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

from eth_account import Account

from bridge.node import Node
from listeners.eth_deposits.escrow import deposit
from listeners.ethereum import Chain
from tests.eth.conftest import Anvil, wait_for
from tests.eth.nodes import deposits_table, make_home, running


async def balance(node: Node, account: str) -> int:
    return await node.ledger.balance(account.lower())


async def test_deposit_is_credited_only_past_the_safety_point(
    tmp_path: Path, anvil: Anvil, chain: Chain, bridge: dict[str, Any]
) -> None:
    home = make_home(tmp_path / "n", deposits_table(anvil.url, bridge, required_confirmations=5))
    token = chain.contract("TestToken", bridge["token"])
    await chain.call(token.functions.mint(chain.account.address, 10**21))
    recipient = Account.create().address
    async with running(home) as node:
        made = await deposit(chain, bridge["escrow"], 1234, recipient)
        status = node.listener_status["eth_deposits"]
        # The listener has looked at the chain with the deposit 4 blocks deep: still unsafe.
        await anvil.mine(4)
        head = await anvil.head()
        await wait_for(lambda: status.info.get("safe_block", -1) >= head - 5)
        height = node.ledger.height
        await wait_for(lambda: node.ledger.height >= height + 5)
        assert await balance(node, recipient) == 0
        assert made["block"] > status.info["safe_block"]
        await anvil.mine(1)
        await wait_for(lambda: balance(node, recipient))
        assert await balance(node, recipient) == 1234


async def test_many_deposits_match_the_chain(
    tmp_path: Path, anvil: Anvil, chain: Chain, bridge: dict[str, Any]
) -> None:
    rng = random.Random(7)
    depositors = [Account.create() for _ in range(20)]
    recipients = [Account.create().address for _ in range(8)]
    token = chain.contract("TestToken", bridge["token"])
    for account in depositors:
        await anvil.rpc("anvil_setBalance", account.address, hex(10**20))
        await chain.call(token.functions.mint(account.address, 10**24))
    plans = [[(rng.randrange(1, 10**18), rng.choice(recipients)) for _ in range(25)] for _ in depositors]

    async def deposit_all(account: Any, plan: list[tuple[int, str]]) -> None:
        user = Chain(chain.w3, account)
        for amount, recipient in plan:
            await deposit(user, bridge["escrow"], amount, recipient)

    home = make_home(tmp_path / "n", deposits_table(anvil.url, bridge, block_sync_chunk_size=7))
    async with running(home) as node:
        # 20 depositors at once, 25 deposits each, while the node scans.
        await asyncio.gather(*(deposit_all(a, p) for a, p in zip(depositors, plans, strict=True)))
        # The truth, read independently from the chain's logs.
        escrow = chain.contract("BridgeEscrow", bridge["escrow"])
        logs = await escrow.events.Deposit().get_logs(from_block=bridge["deployment_block"])
        expected: dict[str, int] = {}
        for log in logs:
            key = log["args"]["recipient"].lower()
            expected[key] = expected.get(key, 0) + log["args"]["amount"]
        assert len(logs) == 500
        await wait_for(lambda: all_equal(node, expected), timeout=120, interval=0.2)
        processed = await node.ledger.list_resolutions("confirmed", "credit_account", limit=1000)
        assert len(processed) == 500


async def all_equal(node: Node, expected: dict[str, int]) -> bool:
    for account, amount in expected.items():
        if await node.ledger.balance(account) != amount:
            return False
    return True


async def test_fee_on_transfer_token_credits_what_the_escrow_received(
    tmp_path: Path, anvil: Anvil, chain: Chain
) -> None:
    from listeners.eth_deposits.escrow import deploy_bridge

    fee_token, _ = await chain.deploy("FeeToken", "Fee Token", "FEE", 100)  # 1% fee
    bridge = await deploy_bridge(chain, token=fee_token)
    await chain.call(chain.contract("FeeToken", fee_token).functions.mint(chain.account.address, 10**21))
    recipient = Account.create().address
    home = make_home(tmp_path / "n", deposits_table(anvil.url, bridge))
    async with running(home) as node:
        made = await deposit(chain, bridge["escrow"], 10_000, recipient)
        assert made["amount"] == 9_900
        await wait_for(lambda: balance(node, recipient))
        assert await balance(node, recipient) == 9_900


async def test_misconfiguration_stops_the_node_naming_the_key(
    tmp_path: Path, anvil: Anvil, chain: Chain, bridge: dict[str, Any], caplog: Any
) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"chain_id": 5}, "app.extensions.eth_deposits.chain_id"),
        ({"contract_address": "0x" + "12" * 20}, "app.extensions.eth_deposits.contract_address"),
        ({"contract_address": "0x1234"}, "app.extensions.eth_deposits.contract_address"),
        ({"rpc_url": None}, "app.extensions.eth_deposits.rpc_url"),
    ]
    for i, (override, key) in enumerate(cases):
        table = deposits_table(anvil.url, bridge, **override)
        table = {k: v for k, v in table.items() if v is not None}
        node = Node.from_home(make_home(tmp_path / f"n{i}", table))
        caplog.clear()
        code = await asyncio.wait_for(node.run(), 30)
        assert code == 1, override
        assert key in caplog.text, (override, caplog.text)


async def test_websocket_endpoint_and_new_heads_wake_the_scan(
    tmp_path: Path, anvil: Anvil, chain: Chain, bridge: dict[str, Any]
) -> None:
    ws_url = anvil.url.replace("http://", "ws://")
    # A poll interval far longer than the wait below: only a newHeads wake-up can be in time.
    table = deposits_table(ws_url, bridge, poll_interval=600)
    home = make_home(tmp_path / "n", table)
    token = chain.contract("TestToken", bridge["token"])
    await chain.call(token.functions.mint(chain.account.address, 10**21))
    recipient = Account.create().address
    async with running(home) as node:
        status = node.listener_status["eth_deposits"]
        await wait_for(lambda: "safe_block" in status.info)
        await asyncio.sleep(0.5)  # let the first pass go to sleep
        await deposit(chain, bridge["escrow"], 55, recipient)
        await wait_for(lambda: balance(node, recipient), timeout=60)
        assert await balance(node, recipient) == 55
