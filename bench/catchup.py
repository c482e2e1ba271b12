"""Benchmark: catching up with a long-running network, by state sync against block replay.

One CometBFT validator produces ``blocks`` blocks as fast as it can (empty but for the
ledger's own state, which state sync carries: its snapshots every ``interval`` blocks).
Then a new node joins twice, on the same machine and the same chain: once replaying every
block (CometBFT's block sync, each block through the ledger), once with ``bridge init --join
--state-sync`` (the newest snapshot, then the blocks after it). Each is timed from its start
until it reports itself caught up at the validator's height or beyond: from then on a node
that the validators approve votes in the next block, either way (the join itself costs the
same in both, so it is left out).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import PYTHON, ROOT
from bench.network import Nodes

# Blocks as fast as one validator commits them: no wait after a commit, none for proposals.
FAST = {"timeout_commit": '"1ms"', "timeout_propose": '"200ms"', "create_empty_blocks_interval": '"0s"'}


def _fast(comet_config: Path) -> None:
    text = comet_config.read_text()
    for key, value in FAST.items():
        text = re.sub(rf"^{key} = .*$", f"{key} = {value}", text, flags=re.M)
    comet_config.write_text(text)


def _normal(comet_config: Path) -> None:
    from bridge.devnet import CONSENSUS

    text = comet_config.read_text()
    for key in FAST:
        text = re.sub(rf"^{key} = .*$", f'{key} = "{CONSENSUS[key]}"', text, flags=re.M)
    comet_config.write_text(text)


def _bridge(*args: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    done = subprocess.run(
        [PYTHON, "-m", "bridge", *args], capture_output=True, text=True, cwd=ROOT, env=env, check=True
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


async def _time_to_catch_up(nodes: Nodes, index: int, target: int, timeout: float) -> float:
    start = time.monotonic()
    nodes.start_one(index)
    async with asyncio.timeout(timeout):
        while True:
            status = await nodes.get(index, "/v1/status")
            if status and status["caught_up"] and status["height"] >= target:
                return time.monotonic() - start
            await asyncio.sleep(0.1)


async def _run(blocks: int, interval: int) -> dict[str, Any]:
    from bridge.devnet import Ports, free_base_port, write_devnet

    tmp = tempfile.mkdtemp(prefix="bench-catchup-")  # BENCH_KEEP=1 keeps it, logs included
    try:
        base = free_base_port(3)
        homes = write_devnet(Path(tmp) / "devnet", 1, base_port=base, observers=1, join_bond=0)
        config = homes[0] / "config.toml"
        config.write_text(
            config.read_text().replace("[cometbft]\n", f"[cometbft]\nsnapshot_interval = {interval}\n")
        )
        for home in homes:
            _fast(home / "cometbft" / "config" / "config.toml")
        apis = [f"http://127.0.0.1:{Ports.of(base, i).api}" for i in range(3)]
        nodes = Nodes([*homes, Path(tmp) / "synced"], apis)
        try:
            produce = time.monotonic()
            nodes.start_one(0)
            async with asyncio.timeout(3600):
                while (await nodes.height(0)) < blocks or not list(
                    (homes[0] / "data" / "snapshots").glob("*.snap")
                ):
                    await asyncio.sleep(0.5)
            produced = time.monotonic() - produce
            # From here the chain moves at the devnet's pace, as a live network would.
            nodes.stop_one(0)
            _normal(homes[0] / "cometbft" / "config" / "config.toml")
            nodes.start_one(0)
            target = await nodes.height(0)
            while target < blocks:
                await asyncio.sleep(0.2)
                target = await nodes.height(0)

            replay = await _time_to_catch_up(nodes, 1, target, 3600)
            nodes.stop_one(1)

            ports = Ports.of(base, 2)
            _bridge(
                "init", "--home", str(nodes.homes[2]), "--join", apis[0], "--state-sync",
                "--api-port", str(ports.api), "--p2p-port", str(ports.p2p), "--rpc-port", str(ports.rpc),
            )  # fmt: skip
            _fast(nodes.homes[2] / "cometbft" / "config" / "config.toml")
            synced = await _time_to_catch_up(nodes, 2, target, 600)
            restored = re.search(
                r"restored the snapshot of height (\d+)", (nodes.homes[2] / "node.log").read_text()
            )
            snapshot = int(restored[1]) if restored else -1
        finally:
            await nodes.close()
    finally:
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(tmp)
    return {
        "blocks": target,
        "produced_seconds": produced,
        "replay_seconds": replay,
        "state_sync_seconds": synced,
        "snapshot_height": snapshot,
    }


def run(quick: bool) -> list[dict[str, Any]]:
    blocks, interval = (1000, 200) if quick else (10_000, 1000)
    m = asyncio.run(_run(blocks, interval))
    ratio = m["replay_seconds"] / m["state_sync_seconds"]
    return [
        {
            "benchmark": f"catch-up: a new node joining a {m['blocks']:,}-block network",
            "measured": f"{m['state_sync_seconds']:.1f} s with state sync",
            "baseline": round(m["replay_seconds"], 1),
            "baseline_name": "s replaying every block (block sync)",
            "ratio": round(ratio, 1),
            "target": "replay / state sync > 1",
            "met": ratio > 1,
            "note": (
                f"1 validator, {m['blocks']} blocks made in {m['produced_seconds']:.0f} s; snapshot at height"
                f" {m['snapshot_height']} (every {interval}); the chain then moves at the devnet's pace;"
                " timed from the new node's start until caught up at the validator's height"
            ),
        }
    ]
