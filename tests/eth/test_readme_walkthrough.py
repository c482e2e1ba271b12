"""The README's "Run a validator against your own Ethereum RPC", as a user types it.

Every command of the section runs, in order, with `.venv/bin/bridge` in a subprocess, and its
TOML table is appended to the node's config.toml. Only the placeholders change: $RPC is a
real anvil, $KEY_FILE a file holding anvil's funded key, `0x...` the escrow the walkthrough
deployed, the tx hash and recipient those of its deposit; the home is in a temp dir, and the
node's API port is the free one it picks (BRIDGE_API__PORT=0), passed to the client commands
with --node.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import signal
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.eth.conftest import DEPLOYER_KEY, ROOT, Anvil, wait_for
from tests.test_readme import section_blocks

pytestmark = pytest.mark.e2e

SECTION = "Run a validator against your own Ethereum RPC"
BRIDGE = ROOT / ".venv" / "bin" / "bridge"
API_LINE = re.compile(r"API on (http://\S+)")
# anvil's `finalized` block is 64 behind its head (two epochs of 32 slots).
ANVIL_FINALITY_DEPTH = 64


def env() -> dict[str, str]:
    """The environment without BRIDGE_* overrides, which would change the README's config."""
    return {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}


def with_values(toml: str, values: dict[str, Any]) -> str:
    """The README's table with each key of ``values`` set to this chain's value; its other
    lines (finality, the comments) stay as the README has them."""
    out, replaced = [], set()
    for line in toml.splitlines():
        key = line.split("=")[0].strip()
        if key in values:
            value = line.partition("=")[2].partition("#")[0].strip()
            line = line.replace(value, json.dumps(values[key]), 1)
            replaced.add(key)
        out.append(line)
    assert replaced == set(values), f"the README's table lost {set(values) - replaced}"
    return "\n".join(out) + "\n"


class Walkthrough:
    """Runs the README's commands, carrying what a user copies from one output to the next."""

    def __init__(self, cwd: Path, anvil: Anvil) -> None:
        self.cwd, self.anvil = cwd, anvil
        key_file = cwd / "deployer.key"  # the README's $KEY_FILE: a key never on the command line
        key_file.write_text(DEPLOYER_KEY + "\n")
        self.values = {"$RPC": anvil.url, "$KEY_FILE": str(key_file)}
        self.home: Path | None = None
        self.deployed: dict[str, Any] = {}
        self.node: subprocess.Popen[bytes] | None = None
        self.node_url = ""
        self.log = cwd / "node.log"
        self.ran: list[str] = []

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def run(self, args: list[str]) -> str:
        done = subprocess.run(args, cwd=self.cwd, capture_output=True, text=True, timeout=120, env=env())
        assert done.returncode == 0, f"{shlex.join(args)}:\n{done.stdout}{done.stderr}"
        return done.stdout

    async def get(self, path: str) -> Any:
        async with aiohttp.ClientSession() as http, http.get(self.node_url + path) as response:
            return await response.json() if response.status == 200 else None

    async def command(self, line: str) -> None:
        for placeholder, value in self.values.items():
            line = line.replace(placeholder, value)
        args = shlex.split(line)
        assert args[0] == ".venv/bin/bridge" and not re.search(r"\$|<|\.\.\.", line), line
        args[0] = str(BRIDGE)
        if args[1] in ("status", "deposit-status", "balance"):
            args += ["--node", self.node_url]  # the README's node has the default port, 8080
        step = getattr(self, "cmd_" + args[1].replace("-", "_"), None)
        assert step is not None, f"the README added {line!r}: teach this test to run it"
        self.ran.append(args[1])
        await step(args)

    def table(self, toml: str) -> None:
        """The README's "Add the listener's table to `node1/config.toml`", with this chain's values."""
        assert self.home is not None and self.deployed, "the README shows the table before init and deploy"
        table = with_values(
            toml,
            {
                "rpc_url": self.anvil.url,
                "contract_address": self.deployed["escrow"],
                "chain_id": self.deployed["chain_id"],
                "starting_height": self.deployed["deployment_block"],
            },
        )
        assert tomllib.loads(table)["app"]["extensions"]["eth_deposits"]["finality"] == "finalized"
        with (self.home / "config.toml").open("a") as f:
            f.write("\n" + table)

    async def cmd_init(self, args: list[str]) -> None:
        self.run(args)
        self.home = self.cwd / args[args.index("--home") + 1]

    async def cmd_contracts(self, args: list[str]) -> None:
        self.deployed = json.loads(self.run(args))
        self.values["0x..."] = self.deployed["escrow"]

    async def cmd_start(self, args: list[str]) -> None:
        """The README's "until Ctrl-C / SIGTERM": in the background, on a free port."""
        with self.log.open("wb") as f:
            self.node = subprocess.Popen(
                args, cwd=self.cwd, stdout=f, stderr=subprocess.STDOUT, env=env() | {"BRIDGE_API__PORT": "0"}
            )

        def announced() -> bool:
            assert self.node is not None and self.node.poll() is None, f"the node exited:\n{self.output()}"
            return API_LINE.search(self.output()) is not None

        await wait_for(announced, timeout=60)
        match = API_LINE.search(self.output())
        assert match is not None
        self.node_url = match[1]

    async def cmd_status(self, args: list[str]) -> None:
        await wait_for(lambda: self.get("/ready"), timeout=60)  # caught up, the listener running
        shown = self.run(args)
        assert "listener   eth_deposits: running" in shown, shown

    async def cmd_deposit(self, args: list[str]) -> None:
        made = json.loads(self.run(args))
        assert made["amount"] == 1000
        self.values["0x<tx hash>"], self.values["0x<recipient>"] = made["tx_hash"], made["recipient"]
        await self.anvil.mine(ANVIL_FINALITY_DEPTH)  # the table's finality is "finalized"

    async def cmd_deposit_status(self, args: list[str]) -> None:
        async def credited() -> bool:
            found = await self.get(f"/v1/deposits/{self.values['0x<tx hash>']}")
            return bool(found) and found["deposits"][0]["status"] == "credited"

        await wait_for(credited, timeout=60)
        shown = self.run(args)
        assert "credited at ledger height" in shown and "1000 to" in shown, shown

    async def cmd_balance(self, args: list[str]) -> None:
        assert self.run(args).strip() == "1000"


async def test_readme_walkthrough_credits_a_deposit(tmp_path: Path, anvil: Anvil) -> None:
    assert BRIDGE.exists(), f"{BRIDGE} is missing: run `make install`"
    walk = Walkthrough(tmp_path, anvil)
    try:
        for block in section_blocks(SECTION):
            if block.lang == "toml":
                walk.table(block.text)
                continue
            assert block.lang == "sh", block
            for line in block.commands():
                await walk.command(line)
        assert walk.ran == ["init", "contracts", "start", "status", "deposit", "deposit-status", "balance"]
        assert walk.node is not None
        walk.node.send_signal(signal.SIGTERM)  # how the README stops it
        assert await asyncio.to_thread(walk.node.wait, 30) == 0, walk.output()
    finally:
        if walk.node is not None and walk.node.poll() is None:
            walk.node.kill()
            walk.node.wait()
