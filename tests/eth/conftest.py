"""A real anvil chain per test, with the escrow deployed, and helpers to run a node on it."""

from __future__ import annotations

import asyncio
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from listeners.eth_deposits.escrow import deploy_bridge
from listeners.ethereum import ANVIL_NO_DISK, Chain

ROOT = Path(__file__).resolve().parents[2]
ANVIL = ROOT / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"
# anvil's first default account (public test key, funded on every anvil chain).
DEPLOYER_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Anvil:
    def __init__(self, port: int, process: subprocess.Popen[bytes], cache: Path) -> None:
        self.port, self.process, self.cache = port, process, cache
        self.url = f"http://127.0.0.1:{port}"

    async def rpc(self, method: str, *params: Any) -> Any:
        async with aiohttp.ClientSession() as session:
            body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
            async with session.post(self.url, json=body) as response:
                data = await response.json()
        if "error" in data:
            raise RuntimeError(f"{method}: {data['error']}")
        return data["result"]

    async def mine(self, blocks: int = 1) -> None:
        await self.rpc("anvil_mine", hex(blocks))

    async def head(self) -> int:
        return int(await self.rpc("eth_blockNumber"), 16)


@pytest.fixture
def anvil(tmp_path: Path) -> Iterator[Anvil]:
    assert ANVIL.exists(), f"{ANVIL} is missing: run `make node-tools`"
    port = free_port()
    cache = tmp_path / "anvil-cache"  # where anvil would persist old states, if it did
    args = ["--port", str(port), "--host", "127.0.0.1", "--silent", "--chain-id", "31337"]
    process = subprocess.Popen(
        [str(ANVIL), *args, *ANVIL_NO_DISK, "--cache-path", str(cache)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = 200
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                deadline -= 1
                assert deadline > 0 and process.poll() is None, "anvil did not start"
                subprocess.run(["sleep", "0.05"], check=True)
        yield Anvil(port, process, cache)
    finally:
        process.kill()
        process.wait()


@pytest.fixture
async def chain(anvil: Anvil) -> AsyncIterator[Chain]:
    chain = await Chain.connect(anvil.url, DEPLOYER_KEY)
    try:
        yield chain
    finally:
        await chain.close()


@pytest.fixture
async def bridge(chain: Chain) -> dict[str, Any]:
    return await deploy_bridge(chain)


async def wait_for(condition: Any, timeout: float = 60.0, interval: float = 0.05) -> None:
    """Poll ``condition`` (sync or async callable) until it is true."""
    async with asyncio.timeout(timeout):
        while True:
            result = condition()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return
            await asyncio.sleep(interval)
