"""Running a real solo node in-process with an eth_deposits table."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from bridge.cli import main as cli
from bridge.node import Node
from bridge.testing import running_node


def make_home(path: Path, table: dict[str, Any] | None, block_interval: float = 0.05) -> Path:
    assert cli(["init", "--home", str(path), "--api-port", "0", "--chain-id", "eth-test"]) == 0
    config = (
        (path / "config.toml")
        .read_text()
        .replace("block_interval = 0.2", f"block_interval = {block_interval}")
    )
    if table is not None:
        config += "\n[app.extensions.eth_deposits]\n" + "".join(
            f"{key} = {json.dumps(value)}\n" for key, value in table.items()
        )
    (path / "config.toml").write_text(config)
    return path


def deposits_table(anvil_url: str, bridge: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    table = {
        "rpc_url": anvil_url,
        "contract_address": bridge["escrow"],
        "chain_id": bridge["chain_id"],
        "starting_height": bridge["deployment_block"],
        "required_confirmations": 0,
        "poll_interval": 0.05,
        "request_timeout": 5.0,
    }
    table.update(overrides)
    return table


@asynccontextmanager
async def running(home: Path) -> AsyncIterator[Node]:
    """The harness's running node (bridge.testing), as the bare :class:`Node` these tests read."""
    async with running_node(home) as running:
        yield running.node
