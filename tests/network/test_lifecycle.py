"""Validator lifecycle on CometBFT: a new node, made with `bridge init --join` from a running
node's API, syncs as an observer, asks to join, becomes a validator when 2/3 of the power
approves (and its listeners start), then leaves (and they stop)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bridge.config import CONFIG_FILE
from bridge.devnet import Ports
from tests.eth.conftest import Anvil
from tests.network.conftest import deposits_table, make_network


def toml_table(table: dict[str, Any]) -> str:
    return "".join(f"{key} = {json.dumps(value)}\n" for key, value in table.items())


pytestmark = pytest.mark.e2e


def cli(*args: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "bridge", *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


async def test_join_by_governance_then_leave(tmp_path: Path, anvil: Anvil, bridge: dict[str, Any]) -> None:
    # Joins without a bond here (bonded joins: tests/test_admission.py, the README's devnet).
    net = await make_network(tmp_path, anvil.url, bridge, validators=4, join_bond=0)
    new = 4
    try:
        for i in range(4):
            net.start(i)
        await net.wait(lambda: net.status(0), what="node0's API")
        # The operator of the new node knows one node's API, and brings its own RPC endpoint.
        home, ports = tmp_path / "joiner", Ports.of(net.base_port, new)
        made = await asyncio.to_thread(
            cli,
            "init", "--home", str(home), "--join", net.api(0),
            "--api-port", str(ports.api), "--p2p-port", str(ports.p2p), "--rpc-port", str(ports.rpc),
        )  # fmt: skip
        assert made["chain_id"] == "bridge-devnet" and made["peers"].endswith(
            f"@127.0.0.1:{Ports.of(net.base_port, 0).p2p}"
        )
        with (home / CONFIG_FILE).open("a") as config:
            config.write(f"\n[app.extensions.eth_deposits]\n{toml_table(deposits_table(anvil.url, bridge))}")
        net.homes.append(home)
        net.start(new)

        async def synced() -> bool:
            status = await net.status(new)
            return bool(status and status["caught_up"] and status["height"] >= 3)

        await net.wait(synced, what="the observer to sync")
        status = await net.status(new)
        assert status is not None and not status["validator"]
        assert status["listeners"]["eth_deposits"]["state"] == "stopped"  # never started

        asked = await asyncio.to_thread(
            cli, "validators", "join", "--home", str(net.homes[new]), "--node", net.api(new), "--power", "10"
        )

        async def pending() -> bool:
            data = await net.get(0, "/v1/validators")
            return bool(data) and [r["id"] for r in data["requests"]] == [asked["request_id"]]

        await net.wait(pending, what="the join request")
        # Two approvals: 20 of 40 power, short of ceil(2/3 * 40) = 27.
        for i in (0, 1):
            await asyncio.to_thread(
                cli,
                "validators",
                "approve",
                asked["request_id"],
                "--home",
                str(net.homes[i]),
                "--node",
                net.api(i),
            )
        await asyncio.sleep(2)
        status = await net.status(new)
        assert status is not None and not status["validator"]
        await asyncio.to_thread(
            cli,
            "validators",
            "approve",
            asked["request_id"],
            "--home",
            str(net.homes[2]),
            "--node",
            net.api(2),
        )

        async def promoted() -> bool:
            status = await net.status(new)
            return bool(
                status and status["validator"] and status["listeners"]["eth_deposits"]["state"] == "running"
            )

        await net.wait(promoted, what="the observer to become a validator")
        validators = (await net.get(0, "/v1/validators"))["validators"]
        assert len(validators) == 5 and {v["power"] for v in validators} == {10}
        # CometBFT took the power update (it applies two heights later): five validators there too.
        rpc = f"http://127.0.0.1:{Ports.of(net.base_port, 0).rpc}/validators"

        async def comet_has(n: int) -> bool:
            async with net.session.get(rpc) as response:
                return int((await response.json())["result"]["total"]) == n

        await net.wait(lambda: comet_has(5), what="CometBFT's validator set to grow")
        await net.same_app_hash([0, 1, 2, 3, 4])

        await asyncio.to_thread(
            cli, "validators", "leave", "--home", str(net.homes[new]), "--node", net.api(new)
        )

        async def demoted() -> bool:
            status = await net.status(new)
            return bool(
                status
                and not status["validator"]
                and status["listeners"]["eth_deposits"]["state"] == "stopped"
            )

        await net.wait(demoted, what="the validator to leave")
        await net.wait(lambda: comet_has(4), what="CometBFT's validator set to shrink")
        await net.same_app_hash([0, 1, 2, 3, 4])
    finally:
        await net.close()
