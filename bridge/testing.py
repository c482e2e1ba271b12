"""The test harness a fork's tests use: a pytest plugin installed with the package (pytest
loads it by itself, through the ``pytest11`` entry point), and the one module of ``bridge``
that is public. A fork's tests live anywhere under ``tests/`` and import only this module,
``listeners`` and ``resolutions``::

    from bridge.testing import RunningNode, running_node

    async def test_my_bridge(eth: Chain, node_home: NodeHomeFactory) -> None:
        address, _ = await eth.deploy("MyContract")
        home = node_home({"my_listener": {"rpc_url": eth_url, "contract_address": address, ...}})
        async with running_node(home) as node:
            await node.wait_until(lambda: node.kv("my_event"))

Fixtures: ``anvil_url`` (a fresh anvil chain for the test), ``eth`` (a :class:`Chain` on it
with anvil's funded key), ``node_home`` (``bridge init`` plus the extension tables you
give). Helpers: :func:`running_node` (a solo node in the test's event loop, with readers for
balances, resolutions and a resolution type's key-value state) and :func:`devnet` (``bridge
devnet up``: CometBFT validators with anvil and every extension's devnet setup step).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import pytest

from bridge.cli import main as cli
from bridge.devnet import free_base_port
from bridge.node import Node
from listeners.ethereum import ANVIL_KEY, Chain, anvil

__all__ = ["NodeHomeFactory", "RunningNode", "devnet", "running_node", "wait_until"]


async def wait_until(condition: Callable[[], Any], timeout: float = 60.0, interval: float = 0.05) -> None:
    """Poll ``condition`` (a function, or one returning an awaitable) until it is truthy;
    ``TimeoutError`` after ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while True:
            result = condition()
            if isinstance(result, Awaitable):
                result = await result
            if result:
                return
            await asyncio.sleep(interval)


class NodeHomeFactory(Protocol):
    def __call__(self, tables: Mapping[str, Mapping[str, Any]] | None = None, name: str = "node") -> Path: ...


@pytest.fixture
async def anvil_url() -> AsyncIterator[str]:
    """A fresh anvil chain (mining on each transaction), stopped after the test."""
    async with anvil() as url:
        yield url


@pytest.fixture
async def eth(anvil_url: str) -> AsyncIterator[Chain]:
    """A :class:`listeners.ethereum.Chain` on ``anvil_url`` with anvil's funded key."""
    chain = await Chain.connect(anvil_url, ANVIL_KEY)
    try:
        yield chain
    finally:
        await chain.close()


@pytest.fixture
def node_home(tmp_path: Path) -> NodeHomeFactory:
    """``node_home(tables)``: a solo node's home (``bridge init``, blocks every 50 ms, the
    API on a free port) with an ``[app.extensions.NAME]`` table for each of ``tables``."""

    def make(tables: Mapping[str, Mapping[str, Any]] | None = None, name: str = "node") -> Path:
        home = tmp_path / name
        assert cli(["init", "--home", str(home), "--api-port", "0", "--chain-id", "test-chain"]) == 0
        config = (home / "config.toml").read_text().replace("block_interval = 0.2", "block_interval = 0.05")
        for table, values in (tables or {}).items():
            config += f"\n[app.extensions.{table}]\n"
            config += "".join(f"{key} = {json.dumps(value)}\n" for key, value in values.items())
        (home / "config.toml").write_text(config)
        return home

    return make


class RunningNode:
    """A node running in the test's event loop, and what a test reads of it."""

    def __init__(self, node: Node) -> None:
        self.node = node

    @property
    def api_url(self) -> str:
        return self.node.api_url

    async def balance(self, account: str) -> int:
        """The committed ledger balance of ``account`` (0x + 40 or 64 hex digits)."""
        return await self.node.ledger.balance(account.lower())

    async def resolutions(self, status: str | None = None, type_: str | None = None) -> list[dict[str, Any]]:
        """Resolutions as ``GET /v1/resolutions`` lists them: ``pending``, ``confirmed``, ``failed``."""
        return await self.node.ledger.list_resolutions(status, type_, limit=1000)

    async def kv(self, resolution_type: str) -> dict[bytes, bytes]:
        """The key-value state a resolution type keeps (``app.set`` in its ``resolve``)."""
        return dict(await self.node.ledger.kv_items(resolution_type, limit=100_000))

    def listener(self, name: str) -> dict[str, Any]:
        """A listener's counters, problems and progress, as in ``GET /v1/status``."""
        status = self.node.listener_status[name]
        return {"counters": dict(status.counters), "problems": sorted(status.problems), **status.info}

    async def wait_until(self, condition: Callable[[], Any], timeout: float = 60.0) -> None:
        await wait_until(condition, timeout)


@contextlib.asynccontextmanager
async def running_node(home: Path) -> AsyncIterator[RunningNode]:
    """Run the node of ``home`` until the block ends. It fails if the node exits with an
    error code, unless it stopped on a fatal listener error (``node.node.fatal`` says which:
    a test may mean to cause one)."""
    node = Node.from_home(home)
    task = asyncio.create_task(node.run())
    try:
        async with asyncio.timeout(30):
            while not node.api_url:
                if task.done():
                    raise AssertionError(f"the node exited with {task.result()}")
                await asyncio.sleep(0.02)
        yield RunningNode(node)
    finally:
        node.stop()
        code = await task
        assert code == 0 or node.fatal is not None, f"the node exited with {code}"


@contextlib.asynccontextmanager
async def devnet(directory: Path, validators: int = 4) -> AsyncIterator[dict[str, Any]]:
    """``bridge devnet up`` in ``directory``: anvil, every extension's devnet setup step
    (``listeners.register_devnet_setup``) and ``validators`` CometBFT validators; yields its
    manifest (``anvil``, each node's ``api``, what the setup steps reported) and runs
    ``bridge devnet down`` after. The same commands a user types, in subprocesses."""

    def bridge(*args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
        command = [sys.executable, "-m", "bridge", "devnet", *args, "--dir", str(directory)]
        return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)

    base = str(free_base_port(validators))
    try:
        started = await asyncio.to_thread(bridge, "up", "--validators", str(validators), "--base-port", base)
        if started.returncode != 0:
            raise AssertionError(f"bridge devnet up failed: {started.stderr.strip()}")
        yield json.loads(started.stdout)
    finally:
        await asyncio.to_thread(bridge, "down")
