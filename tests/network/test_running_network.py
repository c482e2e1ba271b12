"""The end-to-end suite the compose network's `e2e` service runs (`docker compose --profile e2e
run e2e`). With ``E2E_NODES`` (API URLs, comma-separated), ``E2E_ETH_RPC`` and ``E2E_SETUP``
(`bridge devnet deploy`'s JSON) set, it tests the running network they name; without them it starts the
same topology as processes with `bridge devnet up`, so `make test` runs the very same test."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bridge.devnet import free_base_port
from listeners.eth_deposits.escrow import deposit
from listeners.ethereum import ANVIL_KEY, Chain

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class Target:
    nodes: list[str]  # API URLs
    eth_rpc: str
    escrow: str


def bridge_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    return subprocess.run(
        [sys.executable, "-m", "bridge", *args], capture_output=True, text=True, timeout=120, env=env
    )


@pytest.fixture
async def target(tmp_path: Path) -> AsyncIterator[Target]:
    if nodes := os.environ.get("E2E_NODES"):
        setup = json.loads(Path(os.environ["E2E_SETUP"]).read_text())
        yield Target(nodes.split(","), os.environ["E2E_ETH_RPC"], setup["contracts"]["escrow"])
        return
    directory = tmp_path / "devnet"
    up = await asyncio.to_thread(
        bridge_cli, "devnet", "up", "--dir", str(directory), "--base-port", str(free_base_port(10))
    )
    try:
        assert up.returncode == 0, up.stderr
        manifest = json.loads(up.stdout)
        yield Target(
            [n["api"] for n in manifest["nodes"]], manifest["anvil"], manifest["contracts"]["escrow"]
        )
    finally:
        await asyncio.to_thread(bridge_cli, "devnet", "down", "--dir", str(directory))


async def _get(session: aiohttp.ClientSession, url: str) -> Any:
    try:
        async with session.get(url) as response:
            return await response.json() if response.status == 200 else None
    except (aiohttp.ClientError, TimeoutError):
        return None


async def test_validators_agree_and_credit_a_deposit(target: Target) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:

        async def statuses() -> list[Any]:
            return await asyncio.gather(*(_get(session, f"{api}/v1/status") for api in target.nodes))

        async with asyncio.timeout(120):  # every node a caught-up validator, blocks moving
            while not all(
                s and s["validator"] and s["caught_up"] and s["height"] >= 2 for s in await statuses()
            ):
                await asyncio.sleep(0.5)

        async with asyncio.timeout(60):  # one app hash at one height
            found = await statuses()
            while len({s["height"] for s in found}) != 1:
                await asyncio.sleep(0.05)
                found = await statuses()
        assert len({s["app_hash"] for s in found}) == 1, found

        recipient = "0x" + secrets.token_hex(20)  # a fresh account: the suite can run again
        chain = await Chain.connect(target.eth_rpc, ANVIL_KEY)
        try:
            made = await deposit(chain, target.escrow, 4242, recipient)
        finally:
            await chain.close()
        assert made["amount"] == 4242

        async def balances() -> list[Any]:
            found = await asyncio.gather(
                *(_get(session, f"{api}/v1/accounts/{recipient}") for api in target.nodes)
            )
            return [a and a["balance"] for a in found]

        async with asyncio.timeout(90):  # anvil mines a block a second; 2 confirmations
            while await balances() != ["4242"] * len(target.nodes):
                await asyncio.sleep(0.3)
