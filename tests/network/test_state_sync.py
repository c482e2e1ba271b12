"""State sync on real CometBFT validators: a network runs long enough to take snapshots; a
new node made with `bridge init --join URL --state-sync` restores the newest one instead of
replaying every block, reaches the others' app hashes, credits what they credited, and once
the validators approve its join, it votes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bridge.devnet import Ports
from listeners.eth_deposits.escrow import deploy_bridge, deposit
from listeners.ethereum import Chain
from tests.eth.conftest import Anvil
from tests.network.conftest import deposits_table, make_network

pytestmark = pytest.mark.e2e

SNAPSHOT_INTERVAL = 10
JOINER = 3  # the new node's index (its ports are the devnet's node3's)


def bridge(*args: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    done = subprocess.run(
        [sys.executable, "-m", "bridge", *args], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, f"bridge {' '.join(args)}: {done.stderr}"
    result: dict[str, Any] = json.loads(done.stdout)
    return result


async def test_a_new_node_state_syncs_catches_up_and_votes(
    tmp_path: Path, anvil: Anvil, chain: Chain
) -> None:
    deployed = await deploy_bridge(chain)
    net = await make_network(tmp_path, anvil.url, deployed, validators=3, observers=1, join_bond=0)
    for home in net.homes[:3]:  # frequent snapshots, so the test needs few blocks
        config = home / "config.toml"
        config.write_text(
            config.read_text().replace(
                "[cometbft]\n", f"[cometbft]\nsnapshot_interval = {SNAPSHOT_INTERVAL}\n"
            )
        )
    recipient = "0x" + "5e" * 20
    try:
        for i in range(3):
            net.start(i)
        await deposit(chain, deployed["escrow"], 700, recipient)
        await anvil.mine(5)

        async def snapshots_taken() -> bool:
            status = await net.status(0)
            snapshots = list((net.homes[0] / "data" / "snapshots").glob("*.snap"))
            return status is not None and status["height"] > 3 * SNAPSHOT_INTERVAL and len(snapshots) >= 2

        await net.wait(snapshots_taken, timeout=120, what="two snapshots")
        assert await net.balance(0, recipient) == 700

        # The new node, as a user makes it: its own keys, CometBFT set to state-sync.
        joiner = tmp_path / "joiner"
        ports = Ports.of(net.base_port, JOINER)
        made = bridge(
            "init",
            "--home",
            str(joiner),
            "--join",
            net.api(0),
            "--state-sync",
            "--api-port",
            str(ports.api),
            "--p2p-port",
            str(ports.p2p),
            "--rpc-port",
            str(ports.rpc),
        )
        # Its operator points its listener at the escrow, as the README's validator section says.
        table = deposits_table(anvil.url, deployed)
        lines = "".join(f"{k} = {json.dumps(v)}\n" for k, v in table.items())
        (joiner / "config.toml").write_text(
            (joiner / "config.toml").read_text() + f"\n[app.extensions.eth_deposits]\n{lines}"
        )
        net.homes[JOINER] = joiner
        net.start(JOINER)

        blocks: list[dict[str, Any]] = []

        async def caught_up() -> bool:  # and executing blocks of its own
            status = await net.status(JOINER)
            found = await net.get(JOINER, "/v1/explorer/blocks?limit=1000")
            blocks[:] = found["blocks"] if found else []
            return status is not None and status["caught_up"] and bool(blocks)

        await net.wait(caught_up, timeout=120, what="the new node caught up")
        # It restored a snapshot: it never executed the early blocks.
        first = blocks[0]["height"]
        assert first > SNAPSHOT_INTERVAL and first % SNAPSHOT_INTERVAL == 1, first
        log = (joiner / "node.log").read_text()
        assert f"restored the snapshot of height {first - 1}" in log
        await net.same_app_hash([0, 1, 2, JOINER])
        assert await net.balance(JOINER, recipient) == 700

        # Its join: requested, approved by two of the three (2/3 of the power), then it votes.
        request = bridge("validators", "join", "--home", str(joiner), "--node", net.api(JOINER))["request_id"]
        for i in range(2):
            bridge("validators", "approve", request, "--home", str(net.homes[i]), "--node", net.api(i))

        async def validator() -> bool:
            status = await net.status(JOINER)
            return status is not None and status["validator"] is True

        await net.wait(validator, what="the new node a validator")
        await deposit(chain, deployed["escrow"], 300, recipient)
        await anvil.mine(5)
        key = made["node_id"]

        async def voted() -> bool:
            network = await net.get(0, "/v1/explorer/network")
            votes = {v["pubkey"]: v["last_vote"] for v in network["validators"]} if network else {}
            return votes.get(key) is not None and await net.balance(JOINER, recipient) == 1000

        await net.wait(voted, what="the new validator's vote")
    finally:
        await net.close()
