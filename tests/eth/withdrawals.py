"""What the withdrawal tests on a solo node share: a home whose genesis names a fresh escrow,
and running the user's `bridge` commands."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from bridge.cli import main
from bridge.testing import NodeHomeFactory
from bridge.withdrawals import eip712
from listeners.eth_deposits.escrow import deploy_bridge, devnet_table
from listeners.ethereum import Chain


async def escrow_home(
    eth: Chain,
    anvil_url: str,
    node_home: NodeHomeFactory,
    watchers: Sequence[str] = ("eth_deposits",),
    tables: Callable[[dict[str, Any]], Mapping[str, Mapping[str, Any]]] | None = None,
) -> tuple[Path, dict[str, Any], eip712.Domain]:
    """A solo node's home and the escrow it uses: deployed with the node's signer as its first
    set and named in the genesis; the listeners ``watchers`` read the escrow (no
    confirmations, fast polls), and ``tables(deployed)`` gives other listeners' tables."""
    home = node_home()
    genesis: dict[str, Any] = json.loads((home / "genesis.json").read_text())
    (validator,) = genesis["validators"]
    deployed = await deploy_bridge(eth, signers=[(validator["eth_signer"], validator["power"])])
    genesis["escrow"] = {"chain_id": deployed["chain_id"], "address": deployed["escrow"]}
    (home / "genesis.json").write_text(json.dumps(genesis))
    watch = devnet_table(anvil_url, deployed) | {"required_confirmations": 0, "poll_interval": 0.05}
    config = home / "config.toml"
    for name, table in {**dict.fromkeys(watchers, watch), **(tables(deployed) if tables else {})}.items():
        lines = "".join(f"{k} = {json.dumps(v)}\n" for k, v in table.items())
        config.write_text(config.read_text() + f"\n[app.extensions.{name}]\n{lines}")
    return home, deployed, eip712.Domain(deployed["chain_id"], bytes.fromhex(deployed["escrow"][2:]))


async def bridge(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run a `bridge` command as a user would (in a thread: it runs its own event loop)."""
    capsys.readouterr()  # what came before is not this command's
    code = await asyncio.to_thread(main, list(argv))
    out, err = capsys.readouterr()
    return code, out, err
