"""Acceptance of the CometBFT engine: real `cometbft` processes, real anvil, four validators."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from eth_account import Account

from bridge.devnet import Ports
from bridge.txs import Tx, Vote, VoteIds, decode_payload
from listeners.ethereum import Chain
from tests.eth.conftest import Anvil
from tests.network.conftest import Network, deposit_many, make_network

pytestmark = pytest.mark.e2e
RECIPIENTS = [Account.create().address for _ in range(7)]


async def credited_everywhere(net: Network, nodes: list[int], expected: dict[str, int]) -> bool:
    for i in nodes:
        for account, amount in expected.items():
            if await net.balance(i, account) != amount:
                return False
    return True


async def confirmed_credits(net: Network, i: int) -> int:
    data = await net.get(i, "/v1/resolutions?status=confirmed&type=credit_account&limit=1000")
    return len(data["resolutions"])


async def no_duplicates(net: Network, i: int) -> bool:
    entries = (await net.get(i, "/v1/kv/credit_account?limit=1000"))["entries"]
    return not [e for e in entries if e["key"].startswith("duplicate:")]


async def test_fifty_deposits_are_credited_on_all_four_with_one_app_hash(
    network: Network, anvil: Anvil, chain: Chain, bridge: dict[str, Any]
) -> None:
    expected = await deposit_many(chain, bridge["escrow"], RECIPIENTS, 50)
    await anvil.mine(2)
    await network.wait(
        lambda: credited_everywhere(network, [0, 1, 2, 3], expected), what="50 credits on 4 nodes"
    )
    await network.same_app_hash([0, 1, 2, 3])
    for i in range(4):
        assert await confirmed_credits(network, i) == 50
        assert await no_duplicates(network, i)


async def test_one_validator_killed_then_restarted(
    network: Network, anvil: Anvil, chain: Chain, bridge: dict[str, Any]
) -> None:
    network.kill(3)
    expected = await deposit_many(chain, bridge["escrow"], RECIPIENTS, 10)
    await anvil.mine(2)
    # 3 of 4 equal validators hold 3/4 > 2/3 of the power: consensus and the bridge go on.
    await network.wait(
        lambda: credited_everywhere(network, [0, 1, 2], expected), what="credits without node3"
    )
    network.start(3)
    await network.wait(lambda: credited_everywhere(network, [3], expected), what="node3 catching up")
    await network.same_app_hash([0, 1, 2, 3])
    assert await confirmed_credits(network, 3) == 10


async def test_quorum_lost_then_regained_credits_every_deposit_once(
    network: Network, anvil: Anvil, chain: Chain, bridge: dict[str, Any]
) -> None:
    network.kill(2)
    network.kill(3)
    stalled = [(await network.status(i))["height"] for i in (0, 1)]  # type: ignore[index]
    expected = await deposit_many(chain, bridge["escrow"], RECIPIENTS, 10)
    await anvil.mine(2)
    # Give the survivors time to see the deposits: with half the power, no block, no credit.
    await asyncio.sleep(3)
    for i in (0, 1):
        status = await network.status(i)
        assert status is not None and status["height"] <= stalled[i] + 1
        for account in expected:
            assert await network.balance(i, account) == 0
    network.start(2)
    network.start(3)
    await network.wait(
        lambda: credited_everywhere(network, [0, 1, 2, 3], expected), what="credits after restart"
    )
    await network.same_app_hash([0, 1, 2, 3])
    for i in range(4):
        assert await confirmed_credits(network, i) == 10
        assert await no_duplicates(network, i)


async def test_a_backlog_is_introduced_by_shares_and_voted_by_id_with_a_validator_down(
    tmp_path: Path, anvil: Anvil, chain: Chain, bridge: dict[str, Any]
) -> None:
    """60 deposits found at once by validators whose transactions carry 8 votes: each
    introduces its share with the bodies and votes for the others' by id; the share of the
    validator that is down is introduced by the others once it is overdue."""
    expected = await deposit_many(chain, bridge["escrow"], RECIPIENTS, 60)
    await anvil.mine(2)
    net = await make_network(tmp_path, anvil.url, bridge)
    try:
        for home in net.homes:
            with (home / "config.toml").open("a") as config:
                config.write("\n[broadcaster]\nmax_votes_per_tx = 8\n")
        for i in range(3):
            net.start(i)
        await net.wait(
            lambda: credited_everywhere(net, [0, 1, 2], expected), timeout=120, what="60 credits on 3 nodes"
        )
        await net.same_app_hash([0, 1, 2])
        for i in range(3):
            assert await confirmed_credits(net, i) == 60
            assert await no_duplicates(net, i)

        bodies, ids = 0, 0
        rpc = f"http://127.0.0.1:{Ports.of(net.base_port, 0).rpc}"
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{rpc}/status") as answer:
                height = int((await answer.json())["result"]["sync_info"]["latest_block_height"])
            for h in range(1, height + 1):
                async with session.get(f"{rpc}/block", params={"height": str(h)}) as answer:
                    block = (await answer.json())["result"]["block"]
                for raw in block["data"]["txs"] or []:
                    payload = decode_payload(Tx.decode(base64.b64decode(raw)))
                    if isinstance(payload, Vote):
                        bodies += len(payload.events)
                    elif isinstance(payload, VoteIds):
                        ids += len(payload.ids)
        # Every credit took 3 votes; had each voter sent the bodies there would be 180.
        assert ids > 0 and bodies + ids >= 180 and bodies < 120, (bodies, ids)

        net.start(3)
        await net.wait(lambda: credited_everywhere(net, [3], expected), what="node3 catching up")
        await net.same_app_hash([0, 1, 2, 3])
    finally:
        await net.close()
