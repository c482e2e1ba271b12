"""A real anvil chain per test with a handle on its process (mine, kill, its cache folder),
the escrow deployed on it, and the harness's ``wait_until`` (``bridge.testing``)."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bridge.testing import wait_until
from listeners.eth_deposits.escrow import deploy_bridge
from listeners.ethereum import ANVIL_KEY, ANVIL_NO_DISK, Chain, anvil_path

ROOT = Path(__file__).resolve().parents[2]
DEPLOYER_KEY = ANVIL_KEY
wait_for = wait_until


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
    port = free_port()
    cache = tmp_path / "anvil-cache"  # where anvil would persist old states, if it did
    args = ["--port", str(port), "--host", "127.0.0.1", "--silent", "--chain-id", "31337"]
    process = subprocess.Popen(
        [anvil_path(), *args, *ANVIL_NO_DISK, "--cache-path", str(cache)],
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
