"""``bridge devnet up | status | down``: anvil, the extensions' setup steps and the nodes as
processes on 127.0.0.1; also what the compose network runs the same way."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from bridge.devnet.homes import Ports, devnet_signers, write_from_setup
from bridge.errors import BridgeError
from bridge.hints import command
from listeners import DevnetContext, registered_devnet_setups
from listeners.ethereum import ANVIL_KEY, ANVIL_NO_DISK, anvil_path

# ANVIL_NO_DISK (listeners.ethereum): anvil keeps no evicted states on disk.
ANVIL_ARGS = ("--block-time", "1", *ANVIL_NO_DISK)


def anvil_args(host: str) -> list[str]:
    """anvil's arguments (after the binary) in both topologies; the port is added by each."""
    return ["--host", host, *ANVIL_ARGS]


def node_args(home: Path | str) -> list[str]:
    """The ``bridge`` arguments that run node ``home``."""
    return ["start", "--home", str(home)]


async def run_setups(rpc_url: str, private_key: str, validators: int) -> dict[str, Any]:
    """Run every extension's devnet setup step (``listeners.register_devnet_setup``) against
    the chain at ``rpc_url``, for a network of ``validators``: ``{"extensions": {NAME:
    table}, "rpc_url", "signers", **info}``, where ``info`` is what the steps report (the
    escrow's ``contracts`` and ``escrow``...); :func:`write_from_setup` reads it."""
    ctx = DevnetContext(rpc_url, private_key, devnet_signers(validators))
    out: dict[str, Any] = {"extensions": {}, "rpc_url": rpc_url, "signers": [list(s) for s in ctx.signers]}
    for setup in registered_devnet_setups():
        tables, info = await setup(ctx)
        clash = (set(tables) & set(out["extensions"])) | (set(info) & (set(out) | {"anvil", "nodes"}))
        if clash:
            raise BridgeError(f"devnet setup steps disagree on {sorted(clash)}")
        out["extensions"].update(tables)
        out.update(info)
    return out


MANIFEST = "devnet.json"


def _spawn(args: list[str], log: Path, pid_file: Path) -> int:
    with log.open("ab") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    pid_file.write_text(str(process.pid))
    return process.pid


def _alive(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text())
        os.kill(pid, 0)
        return pid
    except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
        return None


async def _wait_http(url: str, timeout: float) -> Any:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return await response.json()
            except (aiohttp.ClientError, TimeoutError):
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise BridgeError(f"{url} did not answer within {timeout:.0f}s")
            await asyncio.sleep(0.2)


async def _wait_rpc(url: str, timeout: float) -> None:
    """Until the Ethereum JSON-RPC at ``url`` answers."""
    request = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            try:
                async with session.post(url, json=request) as response:
                    if response.status == 200:
                        return
            except (aiohttp.ClientError, OSError, TimeoutError):
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise BridgeError(f"anvil did not answer at {url} within {timeout:.0f}s")
            await asyncio.sleep(0.1)


async def up(directory: Path, validators: int, base_port: int, observers: int = 0) -> dict[str, Any]:
    """Start anvil, run the extensions' devnet setup steps against it (the escrow's deploys
    its contracts), write and start ``validators`` validator nodes and ``observers``
    non-validators (which can ask to join with `bridge validators join`), each with the
    extension tables the steps returned."""
    if (directory / MANIFEST).exists():
        raise BridgeError(
            f"{directory} already holds a devnet: `{command(f'devnet down --dir {directory}')}` first"
        )
    if not 1 <= validators <= 9 or not 0 <= observers <= 9 - validators:
        raise BridgeError("--validators must be 1 to 9, and --observers at most 9 minus that")
    directory.mkdir(parents=True, exist_ok=True)
    anvil_port = base_port + 95
    anvil_url = f"http://127.0.0.1:{anvil_port}"
    _spawn(
        [anvil_path(), *anvil_args("127.0.0.1"), "--port", str(anvil_port), "--silent"],
        directory / "anvil.log",
        directory / "anvil.pid",
    )
    await _wait_rpc(anvil_url, 30)
    setup = await run_setups(anvil_url, ANVIL_KEY, validators)
    homes = write_from_setup(directory, validators, setup, base_port=base_port, observers=observers)
    nodes = []
    for i, home in enumerate(homes):
        _spawn(
            [sys.executable, "-m", "bridge", *node_args(home)],
            home / "node.log",
            home / "node.pid",
        )
        ports = Ports.of(base_port, i)
        nodes.append(
            {
                "home": str(home),
                "api": f"http://127.0.0.1:{ports.api}",
                "cometbft_rpc": f"http://127.0.0.1:{ports.rpc}",
            }
        )
    del setup["extensions"]  # in the homes' config.toml
    manifest = {"anvil": anvil_url, **setup, "nodes": nodes}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2))
    for node in nodes:
        await _wait_http(f"{node['api']}/v1/status", 60)
    return manifest


async def status(directory: Path) -> list[dict[str, Any]]:
    manifest = json.loads((directory / MANIFEST).read_text())
    out = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as session:
        for node in manifest["nodes"]:
            try:
                async with session.get(f"{node['api']}/v1/status") as response:
                    data = await response.json()
                out.append(
                    {
                        "api": node["api"],
                        "up": True,
                        **{k: data[k] for k in ("height", "app_hash", "validator", "power", "caught_up")},
                    }
                )
            except (aiohttp.ClientError, TimeoutError):
                out.append({"api": node["api"], "up": False})
    return out


def down(directory: Path) -> int:
    """Stop the nodes (each stops its CometBFT), then anvil; returns how many were running."""
    pid_files = sorted(directory.glob("node*/node.pid")) + [directory / "anvil.pid"]
    stopped = 0
    for pid_file in pid_files:
        pid = _alive(pid_file)
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            for _ in range(150):
                if _alive(pid_file) is None:
                    break
                time.sleep(0.1)
            else:
                os.kill(pid, signal.SIGKILL)
            stopped += 1
        pid_file.unlink(missing_ok=True)
    (directory / MANIFEST).unlink(missing_ok=True)
    return stopped
