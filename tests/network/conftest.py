"""A real CometBFT network of bridge nodes (subprocesses) on 127.0.0.1, over a real anvil."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bridge.devnet import Ports, free_base_port, write_devnet
from bridge.node import BUNDLED_COMETBFT
from listeners.ethereum import Chain
from tests.eth.conftest import Anvil, anvil, bridge, chain  # noqa: F401  (fixtures)


def deposits_table(anvil_url: str, deployed: dict[str, Any]) -> dict[str, Any]:
    return {
        "rpc_url": anvil_url,
        "contract_address": deployed["escrow"],
        "chain_id": deployed["chain_id"],
        "starting_height": deployed["deployment_block"],
        "required_confirmations": 2,
        "poll_interval": 0.2,
    }


class Network:
    def __init__(self, homes: list[Path], base_port: int) -> None:
        self.homes, self.base_port = homes, base_port
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3))

    def api(self, i: int) -> str:
        return f"http://127.0.0.1:{Ports.of(self.base_port, i).api}"

    def start(self, i: int) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
        with (self.homes[i] / "node.log").open("ab") as log:
            self.procs[i] = subprocess.Popen(
                [sys.executable, "-m", "bridge", "start", "--home", str(self.homes[i])],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )

    def kill(self, i: int) -> None:
        self.procs[i].send_signal(signal.SIGKILL)
        self.procs[i].wait()

    def stop(self, i: int) -> int:
        self.procs[i].send_signal(signal.SIGTERM)
        return self.procs[i].wait(timeout=30)

    async def get(self, i: int, path: str) -> Any:
        try:
            async with self.session.get(self.api(i) + path) as response:
                return await response.json() if response.status == 200 else None
        except (aiohttp.ClientError, TimeoutError):
            return None

    async def status(self, i: int) -> dict[str, Any] | None:
        result: dict[str, Any] | None = await self.get(i, "/v1/status")
        return result

    async def balance(self, i: int, account: str) -> int | None:
        data = await self.get(i, f"/v1/accounts/{account}")
        return None if data is None else int(data["balance"])

    async def wait(self, condition: Any, timeout: float = 90.0, what: str = "condition") -> None:
        try:
            async with asyncio.timeout(timeout):
                while not await condition():
                    await asyncio.sleep(0.2)
        except TimeoutError:
            tails = "\n".join(
                f"--- node{i} ---\n" + (h / "node.log").read_text()[-1500:] for i, h in enumerate(self.homes)
            )
            raise AssertionError(f"timed out waiting for {what}\n{tails}") from None

    async def same_app_hash(self, nodes: list[int]) -> tuple[int, str]:
        """Wait for a moment when all ``nodes`` report the same height; their app hashes must
        then be equal (a divergence fails the test, it is not waited out)."""
        async with asyncio.timeout(60):
            while True:
                found = await asyncio.gather(*(self.status(i) for i in nodes))
                statuses = [s for s in found if s is not None]
                if len(statuses) == len(nodes) and len({s["height"] for s in statuses}) == 1:
                    height, hashes = statuses[0]["height"], {s["app_hash"] for s in statuses}
                    assert len(hashes) == 1, f"app hashes differ at height {height}: {hashes}"
                    return height, hashes.pop()
                await asyncio.sleep(0.05)

    async def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        await self.session.close()


async def make_network(
    tmp_path: Path,
    anvil_url: str,
    deployed: dict[str, Any],
    validators: int = 4,
    observers: int = 0,
    **options: Any,
) -> Network:
    assert BUNDLED_COMETBFT.exists(), f"{BUNDLED_COMETBFT} is missing: run `make cometbft`"
    base = free_base_port(validators + observers)
    table = deposits_table(anvil_url, deployed)
    homes = write_devnet(
        tmp_path / "devnet",
        validators,
        base_port=base,
        extensions={"eth_deposits": table},
        observers=observers,
        **options,
    )
    return Network(homes, base)


@pytest.fixture
async def network(tmp_path: Path, anvil: Anvil, bridge: dict[str, Any]) -> AsyncIterator[Network]:  # noqa: F811
    net = await make_network(tmp_path, anvil.url, bridge)
    try:
        for i in range(4):
            net.start(i)

        async def ready() -> bool:
            statuses = await asyncio.gather(*(net.status(i) for i in range(4)))
            return all(s and s["height"] >= 2 and s["caught_up"] for s in statuses)

        await net.wait(ready, what="4 validators producing blocks")
        yield net
    finally:
        await net.close()


async def deposit_many(chain: Chain, escrow: str, recipients: list[str], count: int) -> dict[str, int]:  # noqa: F811
    from listeners.eth_deposits.escrow import deposit

    expected: dict[str, int] = {}
    for n in range(count):
        recipient = recipients[n % len(recipients)]
        made = await deposit(chain, escrow, 1000 + n, recipient)
        expected[recipient.lower()] = expected.get(recipient.lower(), 0) + made["amount"]
    return expected
