"""A local anvil chain, as the project starts it (the demo, ``bridge devnet``, the tests)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path

from listeners import ConfigError

ANVIL = (
    Path(__file__).resolve().parents[2]
    / "node_modules"
    / "@foundry-rs"
    / "anvil-linux-amd64"
    / "bin"
    / "anvil"
)
# anvil's first default account: a public test key, funded on every anvil chain.
ANVIL_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
# By default anvil writes every historical state it evicts from memory under
# ~/.foundry/anvil/tmp and never deletes them (about 300 KB per block, kept even
# after a clean exit): a few long test runs fill the disk. Old states are dropped.
ANVIL_NO_DISK = ("--max-persisted-states", "0")


def anvil_path() -> str:
    """The anvil binary: the project's (``make node-tools``), else the one on PATH."""
    if ANVIL.exists():
        return str(ANVIL)
    found = shutil.which("anvil")
    if found is None:
        raise ConfigError(f"anvil not found at {ANVIL} nor on PATH: run `make node-tools`")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def anvil(block_time: float | None = None) -> AsyncIterator[str]:
    """Run anvil on a free port of 127.0.0.1 (mining every ``block_time`` seconds, else on
    each transaction) and yield its RPC URL; it is stopped on exit."""
    port = _free_port()
    args = [anvil_path(), "--host", "127.0.0.1", "--port", str(port), "--silent", *ANVIL_NO_DISK]
    if block_time:
        args += ["--block-time", str(block_time)]
    process = await asyncio.create_subprocess_exec(*args)
    try:
        async with asyncio.timeout(30):
            while True:
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                    writer.close()
                    break
                except OSError:
                    if process.returncode is not None:
                        raise ConfigError("anvil exited at start") from None
                    await asyncio.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        if process.returncode is None:
            process.terminate()
            await process.wait()
