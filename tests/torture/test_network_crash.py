"""Crash torture of a 4-validator CometBFT network: deposits stream into a real anvil while
random validators (real `bridge start` subprocesses, each with its `cometbft` child) are killed
with SIGKILL, never more than one at a time, and restarted. At the end all four nodes hold
exactly the chain's truth, read independently with eth_getLogs, with one app hash."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from eth_account import Account

from listeners.ethereum import Chain
from resolutions.credit import CREDIT_ACCOUNT, Deposit
from tests.eth.conftest import Anvil
from tests.eth.test_faults import Depositor, chain_truth
from tests.network.conftest import Network

pytestmark = [pytest.mark.torture, pytest.mark.e2e]

SEED = 4_100_010
KILLS = 10
PER_KILL = 6
NODES = [0, 1, 2, 3]


async def heights(net: Network, nodes: list[int]) -> dict[int, int]:
    found = await asyncio.gather(*(net.status(i) for i in nodes))
    return {i: s["height"] for i, s in zip(nodes, found, strict=True) if s is not None}


async def test_validators_killed_one_at_a_time_during_a_deposit_stream(
    network: Network, anvil: Anvil, chain: Chain, bridge: dict[str, Any]
) -> None:
    net = network
    rng = random.Random(SEED)
    depositor = await Depositor.create(anvil, chain, bridge)
    recipients = [Account.from_key(rng.randbytes(32)).address for _ in range(8)]
    victims: list[int] = []

    for _ in range(KILLS):
        victim = rng.choice(NODES)
        victims.append(victim)
        others = [i for i in NODES if i != victim]
        net.kill(victim)
        # 3 of 4 equal powers are > 2/3: blocks and credits go on while the victim is down.
        deposits = asyncio.create_task(depositor.stream(rng, recipients, PER_KILL, max_pause=0.1))
        try:
            start = await heights(net, others)
            assert len(start) == 3, f"a survivor does not answer: {start}"
            more = rng.randrange(1, 8)

            async def survivors_moved(start: dict[int, int] = start, more: int = more) -> bool:
                now = await heights(net, list(start))
                return len(now) == 3 and all(now[i] >= start[i] + more for i in start)

            await net.wait(survivors_moved, what=f"3 survivors of node{victim}'s death making {more} blocks")
        finally:
            await deposits
        net.start(victim)

        # Back in consensus before anyone else dies: never two down at once.
        async def rejoined(victim: int = victim, others: list[int] = others) -> bool:
            status = await net.status(victim)
            if status is None or not status["caught_up"]:
                return False
            now = await heights(net, others)
            return bool(now) and status["height"] >= min(now.values())

        await net.wait(rejoined, what=f"node{victim} caught up after its restart")

    assert len(set(victims)) > 1, victims
    await anvil.mine(3)  # the last deposits past the safety point (2 confirmations)
    expected, count = await chain_truth(chain, bridge)
    assert count == KILLS * PER_KILL

    async def credited_everywhere() -> bool:
        for i in NODES:
            for account, amount in expected.items():
                if await net.balance(i, account) != amount:
                    return False
        return True

    await net.wait(credited_everywhere, what="every deposit credited on all 4")
    await net.same_app_hash(NODES)
    query = f"/v1/resolutions?type={CREDIT_ACCOUNT}&limit=1000"
    for i in NODES:
        confirmed = (await net.get(i, query + "&status=confirmed"))["resolutions"]
        nonces = sorted(Deposit.decode(bytes.fromhex(r["body"])).nonce for r in confirmed)
        assert nonces == list(range(count)), f"node{i}"
        assert (await net.get(i, query + "&status=failed"))["resolutions"] == []
        entries = (await net.get(i, f"/v1/kv/{CREDIT_ACCOUNT}?limit=1000"))["entries"]
        assert sum(keyed(e, b"credited:") for e in entries) == count, f"node{i}"
        assert not [e for e in entries if keyed(e, b"duplicate:")], f"node{i}"


def keyed(entry: dict[str, str], prefix: bytes) -> bool:
    """Whether a /v1/kv entry's key starts with ``prefix`` (keys that are not UTF-8 come as hex)."""
    return entry["key"].startswith((prefix.decode(), "0x" + prefix.hex()))
