"""``bridge demo``: the whole flow on one machine, from a fresh clone.

Starts anvil, deploys a test token and the escrow, starts a one-validator node watching it,
makes a few deposits and waits until each is credited on the ledger.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import shutil
import signal
import socket
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from eth_account import Account

from bridge.config import CONFIG_FILE
from bridge.contracts import Chain, deploy_bridge, deposit
from bridge.devnet import ANVIL_NO_DISK
from bridge.errors import BridgeError
from bridge.node import Node

ROOT = Path(__file__).resolve().parents[1]
ANVIL = ROOT / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"
# anvil's first default account: a public test key, funded on every anvil chain.
ANVIL_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
CONFIRMATIONS = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def anvil_path() -> str:
    if ANVIL.exists():
        return str(ANVIL)
    found = shutil.which("anvil")
    if found is None:
        raise BridgeError(f"anvil not found at {ANVIL} nor on PATH: run `make node-tools`")
    return found


@contextlib.asynccontextmanager
async def anvil(block_time: float | None) -> AsyncIterator[str]:
    port = _free_port()
    args = [anvil_path(), "--host", "127.0.0.1", "--port", str(port), "--silent", *ANVIL_NO_DISK]
    if block_time:
        args += ["--block-time", str(block_time)]
    process = await asyncio.create_subprocess_exec(*args)
    try:
        async with asyncio.timeout(30):
            while True:
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                    writer.close()
                    break
                except OSError:
                    if process.returncode is not None:
                        raise BridgeError("anvil exited at start") from None
                    await asyncio.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        if process.returncode is None:
            process.terminate()
            await process.wait()


def _write_home(home: Path, api_port: int, rpc: str, deployed: dict[str, Any]) -> None:
    from bridge.cli import init_home

    init_home(home, "bridge-demo", api_port)
    table = {
        "rpc_url": rpc,
        "contract_address": deployed["escrow"],
        "chain_id": deployed["chain_id"],
        "starting_height": deployed["deployment_block"],
        "required_confirmations": CONFIRMATIONS,
        "poll_interval": 0.5,
    }
    with (home / CONFIG_FILE).open("a") as f:
        f.write("\n[app.extensions.eth_deposits]\n")
        f.writelines(f"{key} = {json.dumps(value)}\n" for key, value in table.items())


async def run_demo(deposits: int, exit_after: bool, api_port: int, home: Path | None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    workdir = Path(tempfile.mkdtemp(prefix="bridge-demo-")) if home is None else home
    async with anvil(None if exit_after else 1.0) as rpc:
        chain = await Chain.connect(rpc, ANVIL_KEY)
        try:
            deployed = await deploy_bridge(chain)
            print(f"anvil        {rpc} (chain id {deployed['chain_id']})")
            print(f"token        {deployed['token']}")
            print(f"escrow       {deployed['escrow']} (deployed at block {deployed['deployment_block']})")
            _write_home(workdir / "node", api_port, rpc, deployed)
            node = Node.from_home(workdir / "node")
            node_task = asyncio.create_task(node.run())
            async with asyncio.timeout(30):
                while not node.api_url and not node_task.done():
                    await asyncio.sleep(0.05)
            if node_task.done():
                return node_task.result() or 1
            print(f"node         {node.api_url}/v1/status   (home {workdir / 'node'})")

            token = chain.contract("TestToken", deployed["token"])
            await chain.call(token.functions.mint(chain.account.address, 10**24))
            rng = random.Random(1)
            made = []
            for _ in range(deposits):
                recipient = Account.create().address
                made.append(
                    await deposit(chain, deployed["escrow"], rng.randrange(1, 1000) * 10**15, recipient)
                )
            if exit_after:  # no block timer: mine past the safety point ourselves
                await chain.w3.provider.make_request("anvil_mine", [hex(CONFIRMATIONS)])
            code = await _await_credits(node, made)
            if code == 0 and not exit_after:
                print("\nRunning until Ctrl-C. Deposit more with:")
                print(
                    f"  bridge deposit --rpc {rpc} --escrow {deployed['escrow']} --amount 1000 "
                    f"--private-key {ANVIL_KEY}"
                )
                stop = asyncio.Event()
                loop = asyncio.get_running_loop()
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.add_signal_handler(sig, stop.set)
                await stop.wait()
            node.stop()
            stopped = await node_task
            return code or stopped
        finally:
            await chain.close()
            if home is None:
                shutil.rmtree(workdir, ignore_errors=True)


async def _await_credits(node: Node, made: list[dict[str, Any]]) -> int:
    expected: dict[str, int] = {}
    for d in made:
        expected[d["recipient"].lower()] = expected.get(d["recipient"].lower(), 0) + d["amount"]
    try:
        async with asyncio.timeout(60):
            while True:
                balances = {a: await node.ledger.balance(a) for a in expected}
                if balances == expected:
                    break
                await asyncio.sleep(0.1)
    except TimeoutError:
        print("error: deposits were not all credited within 60 s")
        return 1
    print(f"\n{'deposit tx':<68} {'nonce':>5} {'recipient':<44} {'credited':>22}")
    for d in made:
        print(f"{d['tx_hash']:<68} {d['nonce']:>5} {d['recipient']:<44} {d['amount']:>22}")
    print(f"\nall {len(made)} deposits credited at ledger height <= {node.ledger.height}")
    print(f"look:  {node.api_url}/v1/resolutions?type=credit_account   {node.api_url}/metrics")
    return 0


def main(deposits: int, exit_after: bool, api_port: int, home: Path | None) -> int:
    return asyncio.run(run_demo(deposits, exit_after, api_port, home))
