"""The README's "A local network of validators", as a user types it, on one devnet.

Every command of the section runs with `.venv/bin/bridge` in a subprocess, in the README's
order, except `devnet down`, which runs last (the validators commands need the network up).
Only the placeholders change: the devnet's ports start at a free base port instead of 26600
(`--base-port` is added to `devnet up` and each README URL moves with it), `./devnet` is in a
temp dir, and `<request_id>` is what `validators join` printed. The README's approval by
node0 is also run by node1 and node2, as its comment says: 3 of the 4 validators' power
reach 2/3. It is also the test of the devnet commands themselves: a deposit is credited on
every node, and nothing is left running after `devnet down`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from eth_abi.abi import encode
from eth_account import Account
from eth_utils.crypto import keccak

from bridge.devnet import Ports, free_base_port
from listeners.ethereum import ANVIL_KEY
from tests.eth.conftest import ROOT, wait_for
from tests.test_readme import section_blocks

pytestmark = pytest.mark.e2e

SECTION = "A local network of validators"
BRIDGE = ROOT / ".venv" / "bin" / "bridge"
README_BASE_PORT = 26600  # `devnet up`'s default, which the README's URLs use
URL = re.compile(r"http://127\.0\.0\.1:(\d+)")
NEW = 4  # the README's observer, devnet/node4, that joins and leaves
ANVIL_OFFSET = 95  # anvil listens on the devnet's base port + 95


def env() -> dict[str, str]:
    """The environment without BRIDGE_* overrides, which would change the nodes' config."""
    return {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}


class Devnet:
    """Runs the README's commands against one devnet, on ports from ``base``."""

    def __init__(self, cwd: Path, base: int) -> None:
        self.cwd, self.base = cwd, base
        self.values: dict[str, str] = {}
        self.down: list[str] = []
        self.ran: list[str] = []
        self.manifest: dict[str, Any] = {}
        self.withdrawal, self.recipient, self.amount = -1, "", 0  # what `withdraw` sent
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3))

    def api(self, i: int) -> str:
        return f"http://127.0.0.1:{Ports.of(self.base, i).api}"

    def moved(self, line: str) -> str:
        """``line`` with each README node URL moved from base 26600 to this devnet's base."""

        def replace(match: re.Match[str]) -> str:
            if int(match[1]) == README_BASE_PORT + ANVIL_OFFSET:
                return str(self.manifest["anvil"])
            index, rest = divmod(int(match[1]) - README_BASE_PORT, 10)
            assert rest == 0 and index >= 0, f"{match[0]} is not a devnet node's API"
            return self.api(index)

        return URL.sub(replace, line)

    def run(self, args: list[str]) -> str:
        done = subprocess.run(args, cwd=self.cwd, capture_output=True, text=True, timeout=180, env=env())
        assert done.returncode == 0, f"{shlex.join(args)}:\n{done.stdout}{done.stderr}"
        return done.stdout

    async def get(self, i: int, path: str) -> Any:
        try:
            async with self.session.get(self.api(i) + path) as response:
                return await response.json() if response.status == 200 else None
        except (aiohttp.ClientError, TimeoutError):
            return None

    async def is_validator(self, i: int, expected: bool) -> bool:
        found = await self.get(i, "/v1/status")
        return bool(found) and found["validator"] is expected

    async def command(self, line: str) -> None:
        for placeholder, value in self.values.items():
            line = line.replace(placeholder, value)
        args = shlex.split(self.moved(line))
        assert args[0] == ".venv/bin/bridge" and "<" not in line, line
        args[0] = str(BRIDGE)
        words = list(itertools.takewhile(lambda a: a.isalpha(), args[1:3])) or args[1:2]
        step = getattr(self, "cmd_" + "_".join(words).replace("-", "_"), None)
        assert step is not None, f"the README added {line!r}: teach this test to run it"
        self.ran.append(" ".join(words))
        await step(args)

    async def cmd_devnet_up(self, args: list[str]) -> None:
        self.manifest = json.loads(self.run([*args, "--base-port", str(self.base)]))
        nodes = len(self.manifest["nodes"])
        assert nodes == 5

        async def synced() -> bool:
            found = await asyncio.gather(*(self.get(i, "/v1/status") for i in range(nodes)))
            return all(s and s["caught_up"] and s["height"] >= 3 for s in found)

        await wait_for(synced, timeout=120, interval=0.2)

    async def cmd_devnet_status(self, args: list[str]) -> None:
        shown = self.run(args)
        assert [shown.count(word) for word in ("validator", "observer", "caught up")] == [4, 1, 5], shown

    async def cmd_devnet_down(self, args: list[str]) -> None:
        self.down = args  # run last: the validators commands need the network

    def option(self, args: list[str], name: str) -> str:
        return args[args.index(name) + 1]

    async def cmd_deposit(self, args: list[str]) -> None:
        assert self.option(args, "--escrow") == self.manifest["contracts"]["escrow"]
        self.run(args)
        account = "0x" + Account.from_key(self.option(args, "--private-key")).address[2:].lower()
        amount = self.option(args, "--amount")

        async def credited() -> bool:
            found = await asyncio.gather(*(self.get(i, f"/v1/accounts/{account}") for i in range(5)))
            return all(a and a["balance"] == amount for a in found)

        await wait_for(credited, timeout=90, interval=0.3)

    async def cmd_withdraw(self, args: list[str]) -> None:
        self.withdrawal = json.loads(self.run(args))["withdrawal"]
        self.recipient = self.option(args, "--recipient")
        self.amount = int(self.option(args, "--amount"))

    async def cmd_withdrawal_status(self, args: list[str]) -> None:
        assert args[2] == str(self.withdrawal) == "0", (args, self.withdrawal)
        escrow = self.manifest["contracts"]["escrow"]

        async def posted_by_the_relayer() -> bool:  # nobody else sends roots on this devnet
            status = await self.get(0, f"/v1/withdrawals/{self.withdrawal}")
            if not (status and status["status"] == "signed"):
                return False
            root = await self.eth_call(escrow, "batchRoots(uint64)", [int(status["batch"])])
            return int(root, 16) != 0

        await wait_for(posted_by_the_relayer, timeout=120, interval=0.5)
        shown = self.run(args)
        assert "signed     40 of 40 power (signed)" in shown and "root posted" in shown, shown
        # Every node checks the escrow's solvency, the observer too; none finds it short.
        for i in range(5):
            status = await self.get(i, "/v1/status")
            solvency = status["listeners"]["solvency"]
            assert solvency["state"] == "running" and "escrow_short" not in solvency["problems"], (i, status)
        assert (await self.get(NEW, "/v1/status"))["validator"] is False

    async def cmd_claim(self, args: list[str]) -> None:
        token = self.manifest["contracts"]["token"]
        before = int(await self.eth_call(token, "balanceOf(address)", [self.recipient]), 16)
        self.run(args)
        after = int(await self.eth_call(token, "balanceOf(address)", [self.recipient]), 16)
        assert after - before == self.amount

        async def paid_everywhere() -> bool:  # the escrow's Claimed log, voted into the ledger
            found = await asyncio.gather(
                *(self.get(i, f"/v1/withdrawals/{self.withdrawal}") for i in range(5))
            )
            return all(w and w["status"] == "paid" for w in found)

        await wait_for(paid_everywhere, timeout=90, interval=0.3)

    async def eth_call(self, to: str, signature: str, values: list[Any]) -> str:
        types = signature[:-1].split("(")[1]
        data = keccak(text=signature)[:4] + encode(types.split(","), values)
        request = {"to": to, "data": "0x" + data.hex()}
        body = {"jsonrpc": "2.0", "id": 1, "method": "eth_call", "params": [request, "latest"]}
        async with self.session.post(self.manifest["anvil"], json=body) as response:
            result: str = (await response.json())["result"]
            return result

    async def cmd_validators_join(self, args: list[str]) -> None:
        request_id = json.loads(self.run(args))["request_id"]
        self.values["<request_id>"] = request_id

        async def requested() -> bool:  # in a block, so that the approvals find it
            found = await self.get(0, "/v1/validators")
            return bool(found) and [r["id"] for r in found["requests"]] == [request_id]

        await wait_for(requested, timeout=60, interval=0.2)

    async def cmd_validators_approve(self, args: list[str]) -> None:
        for i in range(3):  # node0 as written, then node1 and node2
            self.run(
                [
                    self.api(i) if a == self.api(0) else a.replace("devnet/node0", f"devnet/node{i}")
                    for a in args
                ]
            )
        await wait_for(lambda: self.is_validator(NEW, True), timeout=60, interval=0.2)
        status = await self.get(NEW, "/v1/status")
        assert status["listeners"]["eth_deposits"]["state"] == "running", status

    async def cmd_validators_list(self, args: list[str]) -> None:
        listed = json.loads(self.run(args))
        assert len(listed["validators"]) == 5 and listed["requests"] == [], listed

    async def cmd_validators_leave(self, args: list[str]) -> None:
        self.run(args)
        await wait_for(lambda: self.is_validator(NEW, False), timeout=60, interval=0.2)

    async def deposit_is_credited_everywhere(self) -> None:
        recipient = "0x" + "ab" * 20
        deposit = [str(BRIDGE), "deposit", "--rpc", self.manifest["anvil"], "--amount", "4242"]
        deposit += ["--escrow", self.manifest["contracts"]["escrow"], "--recipient", recipient]
        self.run([*deposit, "--private-key", ANVIL_KEY])

        async def credited() -> bool:
            found = await asyncio.gather(*(self.get(i, f"/v1/accounts/{recipient}") for i in range(5)))
            return all(a and a["balance"] == "4242" for a in found)

        await wait_for(credited, timeout=90, interval=0.3)  # anvil mines a block a second


async def test_readme_devnet_commands(tmp_path: Path) -> None:
    assert BRIDGE.exists(), f"{BRIDGE} is missing: run `make install`"
    net = Devnet(tmp_path, free_base_port(10))  # 10: up to 9 nodes, and anvil at base + 95
    stopped = False
    try:
        for block in section_blocks(SECTION):
            assert block.lang == "sh", block
            for line in block.commands():
                await net.command(line)
        assert net.ran == [
            "devnet up",
            "devnet status",
            "devnet down",
            "deposit",
            "withdraw",
            "withdrawal-status",
            "claim",
            "validators join",
            "validators approve",
            "validators list",
            "validators leave",
        ], net.ran
        await net.deposit_is_credited_everywhere()
        shown = net.run(net.down)
        stopped = True
        assert shown.strip() == "stopped 6 process(es)", shown  # 5 nodes and anvil
        assert not list(tmp_path.glob("devnet/**/*.pid"))
        again = subprocess.run(
            [str(BRIDGE), "devnet", "status"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            env=env(),
        )
        assert again.returncode != 0 and again.stderr.startswith("error: "), again.stderr
    finally:
        await net.session.close()
        if not stopped:  # whatever failed, stop what `devnet up` started (a no-op if nothing)
            subprocess.run(
                [str(BRIDGE), "devnet", "down"], cwd=tmp_path, capture_output=True, timeout=120, env=env()
            )
