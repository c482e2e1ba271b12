"""Benchmarks 3 and 5: deposit-to-credit latency (solo and a 4-validator CometBFT devnet)
and 10,000 deposits end to end through the devnet, with CPU use per node.

Nodes run as real ``python -m bridge start`` subprocesses over a real anvil (automine, so
with ``required_confirmations = 0`` a deposit is at the safety point once its receipt is
back). Deposits are made by the Deposit log emitter (bench/common.py), one log per
transaction for latency, 100 per transaction end to end.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import CHAIN_ID, PYTHON, ROOT, AnvilProcess, Rpc, anvil, free_port, proc_cpu_seconds

POLL_INTERVAL = 0.5
E2E_TARGET = 2500  # credits/s on every node (issue 16)
SOLO_BLOCK = 0.2


def _table(url: str, emitter: str, first: int) -> dict[str, Any]:
    return {
        "rpc_url": url,
        "contract_address": emitter,
        "chain_id": CHAIN_ID,
        "starting_height": first,
        "required_confirmations": 0,
        "poll_interval": POLL_INTERVAL,
    }


class Nodes:
    def __init__(self, homes: list[Path], apis: list[str]) -> None:
        self.homes, self.apis = homes, apis
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))

    def start(self) -> None:
        for i in range(len(self.homes)):
            self.start_one(i)

    def start_one(self, i: int) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
        with (self.homes[i] / "node.log").open("ab") as log:
            self.procs[i] = subprocess.Popen(
                [PYTHON, "-m", "bridge", "start", "--home", str(self.homes[i])],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=ROOT,
            )

    def stop_one(self, i: int) -> None:
        self.procs[i].send_signal(signal.SIGTERM)
        self.procs[i].wait(timeout=60)

    async def get(self, i: int, path: str) -> Any:
        try:
            async with self.session.get(self.apis[i] + path) as response:
                return await response.json() if response.status == 200 else None
        except (aiohttp.ClientError, TimeoutError):
            return None

    async def wait_ready(self, timeout: float = 120) -> None:
        async with asyncio.timeout(timeout):
            while True:
                statuses = await asyncio.gather(*(self.get(i, "/v1/status") for i in range(len(self.apis))))
                if all(s and s["height"] >= 2 and s["caught_up"] for s in statuses):
                    return
                for i, p in self.procs.items():
                    if p.poll() is not None:
                        raise RuntimeError(
                            f"node {i} exited:\n{(self.homes[i] / 'node.log').read_text()[-2000:]}"
                        )
                await asyncio.sleep(0.2)

    async def height(self, i: int = 0) -> int:
        s = await self.get(i, "/v1/status")
        return -1 if s is None else int(s["height"])

    async def balance(self, i: int, account: str) -> int:
        data = await self.get(i, f"/v1/accounts/{account}")
        return 0 if data is None else int(data["balance"])

    def cpu(self) -> list[dict[str, float]]:
        """CPU seconds of each node process and of its CometBFT child (from /proc)."""
        out = []
        children: dict[int, list[int]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        for p in self.procs.values():
            kids = sum(proc_cpu_seconds(c) for c in children.get(p.pid, []))
            out.append({"node": proc_cpu_seconds(p.pid), "cometbft": kids})
        return out

    async def close(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        await self.session.close()


def solo_nodes(tmp: Path, table: dict[str, Any]) -> Nodes:
    home = tmp / "solo"
    port = free_port()
    subprocess.run(
        [
            PYTHON,
            "-m",
            "bridge",
            "init",
            "--home",
            str(home),
            "--api-port",
            str(port),
            "--chain-id",
            "bench-solo",
        ],
        check=True,
        capture_output=True,
        cwd=ROOT,
    )
    config = (
        (home / "config.toml").read_text().replace("block_interval = 0.2", f"block_interval = {SOLO_BLOCK}")
    )
    config += "\n[app.extensions.eth_deposits]\n" + "".join(
        f"{k} = {json.dumps(v)}\n" for k, v in table.items()
    )
    (home / "config.toml").write_text(config)
    return Nodes([home], [f"http://127.0.0.1:{port}"])


def devnet_nodes(tmp: Path, table: dict[str, Any], validators: int = 4) -> Nodes:
    from bridge.devnet import Ports, write_devnet

    base = _free_base(validators)
    homes = write_devnet(tmp / "devnet", validators, base_port=base, extensions={"eth_deposits": table})
    return Nodes(homes, [f"http://127.0.0.1:{Ports.of(base, i).api}" for i in range(validators)])


def _free_base(nodes: int) -> int:
    from bridge.devnet import free_base_port

    return free_base_port(nodes)


async def _setup(chain: AnvilProcess) -> tuple[str, int]:
    async with Rpc(chain.url) as rpc:
        emitter, block = await rpc.deploy_emitter()
        return emitter, block


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


async def _latency(nodes: Nodes, url: str, emitter: str, count: int, spacing: float) -> dict[str, Any]:
    """Deposits ``spacing`` seconds apart, each to its own recipient; for each, seconds and
    ledger blocks from its receipt (= its safety point) until node 0 shows the credit."""
    seconds: list[float] = []
    blocks: list[int] = []

    async def one(n: int, rpc: Rpc) -> None:
        recipient = "0x" + (0xB0000000 + n).to_bytes(20, "big").hex()
        tx = await rpc.emit(emitter, 1_000_000 + n, 1, recipient, 1000, wait=False)
        await rpc.receipt(tx)
        t0, h0 = time.monotonic(), await nodes.height()
        async with asyncio.timeout(120):
            while await nodes.balance(0, recipient) != 1000:
                await asyncio.sleep(0.01)
        seconds.append(time.monotonic() - t0)
        blocks.append(await nodes.height() - h0)

    async with Rpc(url) as rpc:
        tasks = []
        for n in range(count):
            tasks.append(asyncio.create_task(one(n, rpc)))
            await asyncio.sleep(spacing)
        await asyncio.gather(*tasks)
    return {
        "count": count,
        "seconds_median": statistics.median(seconds),
        "seconds_p95": _pct(seconds, 0.95),
        "blocks_median": statistics.median(blocks),
        "blocks_p95": _pct([float(b) for b in blocks], 0.95),
    }


async def _block_time(nodes: Nodes, span: float = 5.0) -> float:
    h0, t0 = await nodes.height(), time.monotonic()
    await asyncio.sleep(span)
    h1 = await nodes.height()
    return (time.monotonic() - t0) / max(1, h1 - h0)


async def latency(engine: str, count: int) -> dict[str, Any]:
    with anvil() as chain, tempfile.TemporaryDirectory() as tmp:
        emitter, block = await _setup(chain)
        table = _table(chain.url, emitter, block)
        nodes = solo_nodes(Path(tmp), table) if engine == "solo" else devnet_nodes(Path(tmp), table)
        try:
            nodes.start()
            await nodes.wait_ready()
            block_time = await _block_time(nodes)
            out = await _latency(nodes, chain.url, emitter, count, spacing=0.3)
        finally:
            await nodes.close()
    out["block_time"] = block_time
    return out


async def end_to_end(deposits: int, per_tx: int = 100, engine: str = "cometbft") -> dict[str, Any]:
    with anvil() as chain, tempfile.TemporaryDirectory() as tmp:
        emitter, block = await _setup(chain)
        table = _table(chain.url, emitter, block)
        nodes = devnet_nodes(Path(tmp), table) if engine == "cometbft" else solo_nodes(Path(tmp), table)
        recipient = "0x" + (0xE2E).to_bytes(20, "big").hex()
        try:
            nodes.start()
            await nodes.wait_ready()
            cpu0 = nodes.cpu()
            started = time.monotonic()
            async with Rpc(chain.url) as rpc:
                sent, last = 0, ""
                while sent < deposits:
                    n = min(per_tx, deposits - sent)
                    last = await rpc.emit(emitter, sent, n, recipient, 1, wait=False)
                    sent += n
                await rpc.receipt(last)
            deposited = time.monotonic() - started
            done: dict[int, float] = {}
            async with asyncio.timeout(1800):
                while len(done) < len(nodes.apis):
                    for i in range(len(nodes.apis)):
                        if i not in done and await nodes.balance(i, recipient) == deposits:
                            done[i] = time.monotonic() - started
                    await asyncio.sleep(0.2)
            wall = max(done.values())
            cpu1 = nodes.cpu()
            height = await nodes.height()
        finally:
            await nodes.close()
    cpu = [
        {
            "node_cpu_s": round(b["node"] - a["node"], 2),
            "cometbft_cpu_s": round(b["cometbft"] - a["cometbft"], 2),
            "node_cpu_pct": round(100 * (b["node"] - a["node"]) / wall, 1),
            "cometbft_cpu_pct": round(100 * (b["cometbft"] - a["cometbft"]) / wall, 1),
        }
        for a, b in zip(cpu0, cpu1, strict=True)
    ]
    return {
        "deposits": deposits,
        "seconds": wall,
        "deposit_seconds": deposited,
        "per_node_seconds": [round(done[i], 2) for i in sorted(done)],
        "cpu": cpu,
        "height": height,
    }


def run_latency(quick: bool = False) -> list[dict[str, Any]]:
    count = 5 if quick else 100
    rows = []
    for engine, target_blocks in (("solo", 2), ("cometbft", 3)):
        r = asyncio.run(latency(engine, count))
        budget_s = target_blocks * r["block_time"] + POLL_INTERVAL
        name = "solo" if engine == "solo" else "4-validator CometBFT"
        rows.append(
            {
                "benchmark": f"latency {name}: blocks (median / p95)",
                "measured": f"{r['blocks_median']:g} / {r['blocks_p95']:g}",
                "unit": "ledger blocks",
                "baseline": f"{r['block_time']:.2f}s/block",
                "baseline_name": "measured block time",
                "ratio": round(r["seconds_p95"] / budget_s, 2),
                "target": f"<= {target_blocks} blocks + 1 poll ({POLL_INTERVAL}s) = {budget_s:.2f}s",
                "met": r["seconds_p95"] <= budget_s,
                "detail": f"{r['count']} deposits; seconds median {r['seconds_median']:.2f}, "
                f"p95 {r['seconds_p95']:.2f};"
                " ratio = p95 seconds / budget",
                "raw": r,
            }
        )
    return rows


def run_end_to_end(quick: bool = False) -> list[dict[str, Any]]:
    """The devnet against the same deposits through one solo node: what agreement among
    four validators (four listeners, four ledgers, CometBFT) costs over one node's work."""
    deposits = 500 if quick else 10_000
    r = asyncio.run(end_to_end(deposits))
    solo = asyncio.run(end_to_end(deposits, engine="solo"))
    cpu = "; ".join(
        f"node{i} {c['node_cpu_pct']}% + cometbft {c['cometbft_cpu_pct']}%" for i, c in enumerate(r["cpu"])
    )
    return [
        {
            "benchmark": "end to end: 4-validator devnet",
            "measured": round(r["seconds"], 1),
            "unit": "s first deposit -> last credit on all nodes",
            "baseline": round(solo["seconds"], 1),
            "baseline_name": "s for the same deposits through one solo node",
            "ratio": round(r["seconds"] / solo["seconds"], 2),
            "target": f"<= {deposits / E2E_TARGET:g} s ({E2E_TARGET} credits/s)",
            "met": deposits / r["seconds"] >= E2E_TARGET,
            "detail": f"{deposits} deposits, {deposits / r['seconds']:.0f} credits/s"
            f" (solo: {deposits / solo['seconds']:.0f}/s, its node {solo['cpu'][0]['node_cpu_pct']}%"
            f" of a core); deposits made on anvil in {r['deposit_seconds']:.1f} s;"
            f" CPU of wall time: {cpu}",
            "raw": {**r, "solo": solo},
        }
    ]
