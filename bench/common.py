"""Shared pieces of the benchmarks: anvil, a hand-assembled Deposit log emitter, timing helpers.

The emitter is a 75-byte contract, assembled here (no solc): called with
``(start_nonce, count, recipient, amount)`` as four 32-byte words, it emits ``count`` logs
with the BridgeEscrow ``Deposit(uint256 indexed nonce, address indexed sender, address
indexed recipient, uint256 amount)`` layout (sender = the caller). The eth_deposits listener
only needs code at its ``contract_address`` and the Deposit topic, so the emitter stands in
for the escrow: a million logs cost a few thousand transactions instead of a million.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp

from listeners.ethereum import ANVIL_NO_DISK

ROOT = Path(__file__).resolve().parents[1]
ANVIL = ROOT / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"
COMETBFT = ROOT / ".tools" / "bin" / "cometbft"
PYTHON = sys.executable
# anvil's first default account: unlocked on every anvil chain (eth_sendTransaction works).
ANVIL_ACCOUNT = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
CHAIN_ID = 31337


def _deposit_topic() -> str:
    from listeners.eth_deposits.decode import DEPOSIT_TOPIC

    return DEPOSIT_TOPIC


def emitter_runtime(topic: str) -> bytes:
    """The emitter's runtime code (see the module docstring)."""
    t = bytes.fromhex(topic[2:])
    assert len(t) == 32
    code = (
        bytes.fromhex("6020356000350" + "1")  # end = cd[0x20] + cd[0]          [end]
        + bytes.fromhex("606035600052")  # mem[0:32] = amount = cd[0x60]
        + bytes.fromhex("600035")  # i = cd[0]                                   [end, i]
        + bytes.fromhex("5b")  # 0x10: loop
        + bytes.fromhex("8181101560495" + "7")  # if !(i < end) goto exit (0x49)
        + bytes.fromhex("60403533" + "82")  # recipient, caller (sender), i (nonce)
        + b"\x7f"
        + t  # topic0
        + bytes.fromhex("60206000a4")  # LOG4(mem[0:32], topic0, i, sender, recipient)
        + bytes.fromhex("600101")  # i += 1
        + bytes.fromhex("601056")  # goto loop
        + bytes.fromhex("5b00")  # 0x49: exit
    )
    assert code[0x10] == 0x5B and code[0x49] == 0x5B, code.hex()
    return code


def emitter_initcode(topic: str) -> bytes:
    runtime = emitter_runtime(topic)
    n = len(runtime)
    init = bytes([0x60, n, 0x60, 0x0C, 0x60, 0x00, 0x39, 0x60, n, 0x60, 0x00, 0xF3])
    return init + runtime


def word(value: int | str) -> str:
    if isinstance(value, str):
        value = int(value, 16)
    return f"{value:064x}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Rpc:
    """A bare JSON-RPC client (aiohttp) for setting chains up."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.session: aiohttp.ClientSession | None = None
        self._id = 0

    async def __aenter__(self) -> Rpc:
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600))
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.session is not None
        await self.session.close()

    async def call(self, method: str, *params: Any) -> Any:
        assert self.session is not None
        self._id += 1
        body = {"jsonrpc": "2.0", "id": self._id, "method": method, "params": list(params)}
        async with self.session.post(self.url, json=body) as response:
            data = await response.json(content_type=None)
        if "error" in data:
            raise RuntimeError(f"{method}: {data['error']}")
        return data["result"]

    async def deploy_emitter(self) -> tuple[str, int]:
        tx = {
            "from": ANVIL_ACCOUNT,
            "data": "0x" + emitter_initcode(_deposit_topic()).hex(),
            "gas": hex(200_000),
        }
        tx_hash = await self.call("eth_sendTransaction", tx)
        receipt = await self.receipt(tx_hash)
        return receipt["contractAddress"], int(receipt["blockNumber"], 16)

    async def receipt(self, tx_hash: str, timeout: float = 300) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            receipt = await self.call("eth_getTransactionReceipt", tx_hash)
            if receipt is not None:
                if int(receipt["status"], 16) != 1:
                    raise RuntimeError(f"transaction {tx_hash} reverted")
                return receipt
            await asyncio.sleep(0.01)
        raise RuntimeError(f"no receipt for {tx_hash}")

    async def emit(
        self, emitter: str, start: int, count: int, recipient: str, amount: int, wait: bool = True
    ) -> str:
        data = "0x" + word(start) + word(count) + word(recipient) + word(amount)
        tx = {"from": ANVIL_ACCOUNT, "to": emitter, "data": data, "gas": hex(60_000 + 2_600 * count)}
        tx_hash: str = await self.call("eth_sendTransaction", tx)
        if wait:
            await self.receipt(tx_hash)
        return tx_hash

    async def head(self) -> int:
        return int(await self.call("eth_blockNumber"), 16)


class AnvilProcess:
    def __init__(self, extra: list[str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [
                str(ANVIL),
                "--port",
                str(self.port),
                "--host",
                "127.0.0.1",
                "--silent",
                "--chain-id",
                str(CHAIN_ID),
                "--gas-limit",
                "1000000000",
                *ANVIL_NO_DISK,
                *(extra or []),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.1).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("anvil did not start") from None
                time.sleep(0.05)

    def rss_kb(self) -> int:
        return proc_rss_kb(self.process.pid)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


@contextmanager
def anvil(extra: list[str] | None = None) -> Iterator[AnvilProcess]:
    process = AnvilProcess(extra)
    try:
        yield process
    finally:
        process.close()


async def fill(
    url: str, emitter: str, logs: int, per_block: int, recipient: str = ANVIL_ACCOUNT
) -> tuple[int, int]:
    """Emit ``logs`` Deposit logs, ``per_block`` per transaction (one block each with
    automine), nonces from 0. Returns (first block, last block)."""
    async with Rpc(url) as rpc:
        first = await rpc.head() + 1
        sent = 0
        pending: list[str] = []
        while sent < logs:
            n = min(per_block, logs - sent)
            pending.append(await rpc.emit(emitter, sent, n, recipient, 1000, wait=False))
            sent += n
            if len(pending) % 200 == 0:  # keep anvil's pool small
                await rpc.receipt(pending[-1])
        await rpc.receipt(pending[-1])
        return first, await rpc.head()


# -- process accounting -- #

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process, from /proc/<pid>/stat."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


def run_worker(module: str, args: dict[str, Any], timeout: float = 3600) -> dict[str, Any]:
    """Run ``python -m <module>`` with ``args`` as JSON on stdin; its last stdout line is JSON."""
    out = subprocess.run(
        [PYTHON, "-m", module],
        input=json.dumps(args).encode(),
        capture_output=True,
        cwd=ROOT,
        timeout=timeout,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{module} failed ({out.returncode}):\n{out.stderr.decode()[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.decode().strip().splitlines()[-1])
    return result


def machine() -> dict[str, Any]:
    def version(cmd: list[str]) -> str:
        try:
            return (
                subprocess.run(cmd, capture_output=True, text=True, check=False)
                .stdout.strip()
                .splitlines()[0]
            )
        except (OSError, IndexError):
            return "unavailable"

    cpu_model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    try:
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        pass
    import sqlite3

    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model,
        "memory_gb": round(mem_kb / 2**20, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "anvil": version([str(ANVIL), "--version"]),
        "cometbft": version([str(COMETBFT), "version"]),
    }
