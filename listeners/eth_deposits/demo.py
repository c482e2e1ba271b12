"""``bridge demo``: the whole flow on one machine, from a fresh clone.

Starts anvil, deploys a test token and the escrow (its signer: the node's), starts a
one-validator node watching it (``bridge init`` and ``bridge start``, as a user would), makes
a few deposits and waits until each is credited on the ledger (read from the node's API).
Then the way back: the first depositor withdraws half to a fresh address (``bridge
withdraw``), the validator signs the batch, and ``bridge claim`` pays it on anvil.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from eth_account import Account

from listeners import ConfigError
from listeners.eth_deposits.commands import get_json
from listeners.eth_deposits.escrow import ETH_DEPOSITS, deploy_bridge, deposit
from listeners.ethereum import ANVIL_KEY, Chain, anvil

CONFIRMATIONS = 2
API_LINE = re.compile(r"API on (http://\S+)")


def _bridge(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "bridge", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise ConfigError(f"bridge {' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def _write_home(home: Path, api_port: int, rpc: str, deployed: dict[str, Any]) -> None:
    genesis_file = home / "genesis.json"  # the escrow pays what the node's signer signs
    genesis = json.loads(genesis_file.read_text())
    genesis["escrow"] = {"chain_id": deployed["chain_id"], "address": deployed["escrow"]}
    genesis_file.write_text(json.dumps(genesis, indent=2))
    table = {
        "rpc_url": rpc,
        "contract_address": deployed["escrow"],
        "chain_id": deployed["chain_id"],
        "starting_height": deployed["deployment_block"],
        "required_confirmations": CONFIRMATIONS,
        "poll_interval": 0.5,
    }
    with (home / "config.toml").open("a") as f:
        f.write(f"\n[app.extensions.{ETH_DEPOSITS}]\n")
        f.writelines(f"{key} = {json.dumps(value)}\n" for key, value in table.items())


async def _start_node(home: Path) -> tuple[asyncio.subprocess.Process, str | None]:
    """``bridge start --home home``, its output in ``home/node.log``; (process, API URL or
    None if it exited first)."""
    log = home / "node.log"
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bridge", "start", "--home", str(home), stdout=out, stderr=out
        )
    async with asyncio.timeout(30):
        while process.returncode is None:
            found = API_LINE.search(log.read_text(errors="replace"))
            if found:
                return process, found[1]
            await asyncio.sleep(0.05)
    return process, None


async def _stop_node(process: asyncio.subprocess.Process) -> int:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
    return await process.wait()


async def run_demo(deposits: int, exit_after: bool, api_port: int, home: Path | None) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="bridge-demo-")) if home is None else home
    async with anvil(None if exit_after else 1.0) as rpc:
        chain = await Chain.connect(rpc, ANVIL_KEY)
        process = None
        try:
            node_home = workdir / "node"
            _bridge(
                "init", "--home", str(node_home), "--chain-id", "bridge-demo", "--api-port", str(api_port)
            )
            (validator,) = json.loads((node_home / "genesis.json").read_text())["validators"]
            deployed = await deploy_bridge(chain, signers=[(validator["eth_signer"], validator["power"])])
            print(f"anvil        {rpc} (chain id {deployed['chain_id']})")
            print(f"token        {deployed['token']}")
            print(f"escrow       {deployed['escrow']} (deployed at block {deployed['deployment_block']})")
            _write_home(node_home, api_port, rpc, deployed)
            process, api_url = await _start_node(node_home)
            if api_url is None:
                print((node_home / "node.log").read_text(errors="replace"), end="", file=sys.stderr)
                return process.returncode or 1
            print(f"node         {api_url}/v1/status   (home {node_home})")

            token = chain.contract("TestToken", deployed["token"])
            await chain.call(token.functions.mint(chain.account.address, 10**24))
            rng = random.Random(1)
            made, users = [], [Account.create() for _ in range(deposits)]
            for user in users:
                amount = rng.randrange(1, 1000) * 10**15
                made.append(await deposit(chain, deployed["escrow"], amount, user.address))
            if exit_after:  # no block timer: mine past the safety point ourselves
                await chain.w3.provider.make_request("anvil_mine", [hex(CONFIRMATIONS)])
            code = await _await_credits(api_url, made)
            if code == 0 and users:
                code = await _round_trip(
                    api_url, rpc, workdir, chain, deployed, users[0], made[0]["amount"] // 2
                )
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
            stopped = await _stop_node(process)
            return code or stopped
        finally:
            if process is not None and process.returncode is None:
                process.kill()
                await process.wait()
            await chain.close()
            if home is None:
                shutil.rmtree(workdir, ignore_errors=True)


async def _await_credits(api_url: str, made: list[dict[str, Any]]) -> int:
    expected: dict[str, int] = {}
    for d in made:
        expected[d["recipient"].lower()] = expected.get(d["recipient"].lower(), 0) + d["amount"]
    try:
        async with asyncio.timeout(60):
            while True:
                balances = {
                    a: int((await get_json(f"{api_url}/v1/accounts/{a}"))["balance"]) for a in expected
                }
                if balances == expected:
                    break
                await asyncio.sleep(0.1)
    except TimeoutError:
        print("error: deposits were not all credited within 60 s")
        return 1
    height = (await get_json(f"{api_url}/v1/status"))["height"]
    print(f"\n{'deposit tx':<68} {'nonce':>5} {'recipient':<44} {'credited':>22}")
    for d in made:
        print(f"{d['tx_hash']:<68} {d['nonce']:>5} {d['recipient']:<44} {d['amount']:>22}")
    print(f"\nall {len(made)} deposits credited at ledger height <= {height}")
    print(f"look:  {api_url}/v1/resolutions?type=credit_account   {api_url}/metrics")
    return 0


async def _round_trip(
    api_url: str, rpc: str, workdir: Path, chain: Chain, deployed: dict[str, Any], user: Any, amount: int
) -> int:
    """The way back, with the commands a user types: withdraw, then claim once signed."""
    (workdir / "user.key").write_text("0x" + bytes(user.key).hex() + "\n")
    (workdir / "gas.key").write_text(ANVIL_KEY + "\n")
    recipient = Account.create().address
    node = ("--node", api_url)
    asked = json.loads(
        _bridge(
            "withdraw",
            "--recipient",
            recipient,
            "--amount",
            str(amount),
            "--private-key-file",
            str(workdir / "user.key"),
            *node,
        )
    )
    wid = asked["withdrawal"]
    try:
        async with asyncio.timeout(60):
            while (await get_json(f"{api_url}/v1/withdrawals/{wid}"))["status"] != "signed":
                await asyncio.sleep(0.1)
    except TimeoutError:
        print(f"error: withdrawal {wid} was not signed within 60 s")
        return 1
    claimed = json.loads(
        _bridge("claim", str(wid), "--rpc", rpc, "--private-key-file", str(workdir / "gas.key"), *node)
    )
    token = chain.contract("TestToken", deployed["token"])
    paid = await token.functions.balanceOf(recipient).call()
    print(f"\nwithdrawal {wid}: {user.address} withdrew {amount} to {recipient}")
    print(f"  signed by the validator, claimed in {claimed['claim_tx']}: {paid} tokens on anvil")
    print(f"look:  {api_url}/v1/withdrawals/{wid}")
    return 0 if paid == amount else 1


def main(deposits: int, exit_after: bool, api_port: int, home: Path | None) -> int:
    return asyncio.run(run_demo(deposits, exit_after, api_port, home))
