"""`bridge devnet up | status | down` as a user runs them: four validators, anvil and the
escrow from one command, a deposit credited on every node, everything stopped by `down`."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from bridge.demo import ANVIL_KEY
from bridge.devnet import free_base_port

pytestmark = pytest.mark.e2e


def bridge(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    return subprocess.run(
        [sys.executable, "-m", "bridge", *args], capture_output=True, text=True, timeout=120, env=env
    )


async def test_devnet_up_status_deposit_down(tmp_path: Path) -> None:
    directory = tmp_path / "devnet"
    base = free_base_port(10)  # 4 nodes, and anvil at base + 95
    up = await asyncio.to_thread(bridge, "devnet", "up", "--dir", str(directory), "--base-port", str(base))
    try:
        assert up.returncode == 0, up.stderr
        manifest = json.loads(up.stdout)
        assert len(manifest["nodes"]) == 4

        shown = await asyncio.to_thread(bridge, "devnet", "status", "--dir", str(directory))
        assert shown.returncode == 0 and shown.stdout.count("validator") == 4, shown.stdout

        made = await asyncio.to_thread(
            bridge,
            "deposit",
            "--rpc",
            manifest["anvil"],
            "--escrow",
            manifest["contracts"]["escrow"],
            "--amount",
            "4242",
            "--recipient",
            "0x" + "ab" * 20,
            "--private-key",
            ANVIL_KEY,
        )
        assert made.returncode == 0, made.stderr
        async with aiohttp.ClientSession() as session:

            async def balances() -> list[str]:
                out = []
                for node in manifest["nodes"]:
                    async with session.get(f"{node['api']}/v1/accounts/0x{'ab' * 20}") as response:
                        out.append((await response.json())["balance"])
                return out

            async with asyncio.timeout(90):  # anvil mines a block a second: 2 confirmations
                while await balances() != ["4242"] * 4:
                    await asyncio.sleep(0.3)
    finally:
        down = await asyncio.to_thread(bridge, "devnet", "down", "--dir", str(directory))
    assert down.returncode == 0 and "stopped 5" in down.stdout, down.stdout + down.stderr
    assert not list(directory.glob("**/*.pid"))
    again = await asyncio.to_thread(bridge, "devnet", "status", "--dir", str(directory))
    assert again.returncode != 0 and again.stderr.startswith("error: ")
