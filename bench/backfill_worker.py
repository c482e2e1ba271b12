"""One backfill measurement in a fresh process (so peak RSS is this approach's alone).

Reads JSON from stdin: ``mode`` (listener | bare | naive), ``url``, ``address``, ``first``,
``last``, ``chunk``; prints JSON: seconds, logs (or deposits stored), peak RSS in KiB.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from listeners import ListenerStatus


async def bare(args: dict[str, Any]) -> int:
    """The baseline: eth_getLogs over the range, chunk by chunk, JSON-decoded, nothing else."""
    from listeners.eth_deposits.decode import DEPOSIT_TOPIC

    count = 0
    async with aiohttp.ClientSession() as session:
        start = args["first"]
        while start <= args["last"]:
            end = min(start + args["chunk"] - 1, args["last"])
            params = {
                "address": args["address"],
                "topics": [DEPOSIT_TOPIC],
                "fromBlock": hex(start),
                "toBlock": hex(end),
            }
            body = {"jsonrpc": "2.0", "id": 1, "method": "eth_getLogs", "params": [params]}
            async with session.post(args["url"], json=body) as response:
                data = await response.json()
            count += len(data["result"])
            start = end + 1
    return count


async def naive(args: dict[str, Any]) -> int:
    """What a Python user would write first: web3's contract event API, decoded logs."""
    from web3 import AsyncHTTPProvider, AsyncWeb3

    from listeners.ethereum import artifact

    w3 = AsyncWeb3(AsyncHTTPProvider(args["url"], request_kwargs={"timeout": 600}))
    contract = w3.eth.contract(
        address=w3.to_checksum_address(args["address"]), abi=artifact("BridgeEscrow")["abi"]
    )
    count = 0
    start = args["first"]
    try:
        while start <= args["last"]:
            end = min(start + args["chunk"] - 1, args["last"])
            events = await contract.events.Deposit().get_logs(from_block=start, to_block=end)
            count += len(events)
            start = end + 1
    finally:
        await w3.provider.disconnect()
    return count


class _Status(ListenerStatus):
    """A real ListenerStatus that also says when ``last_block`` reaches ``last``: the
    measurement stops then, without polling the listener's progress on the event loop."""

    def __init__(self, last: int) -> None:
        super().__init__()
        self.last, self.reached = last, asyncio.Event()

    def report(self, **fields: Any) -> None:
        super().report(**fields)
        if fields.get("last_block", -1) >= self.last:
            self.reached.set()


async def listener(args: dict[str, Any]) -> int:
    """The real eth_deposits listener, into a real EventStore on a temporary SQLite file,
    stopped once its progress reaches the last block."""
    import listeners.eth_deposits as eth_deposits
    from bridge.eventstore import EventStore
    from listeners import Service

    table = {
        "rpc_url": args["url"],
        "contract_address": args["address"],
        "chain_id": args["chain_id"],
        "starting_height": args["first"],
        "required_confirmations": 0,
        "block_sync_chunk_size": args["chunk"],
        "max_chunk_size": args["chunk"],
        "poll_interval": 0.01,
    }
    status = _Status(args["last"])
    service = Service(
        name="eth_deposits",
        logger=logging.getLogger("listeners.eth_deposits"),
        extension_configs={"eth_deposits": table},
        identity=b"\x01" * 32,
        chain_id="bench",
        status=status,
    )
    with tempfile.TemporaryDirectory() as tmp:
        store = await EventStore.open(Path(tmp) / "events.sqlite")
        try:
            task: asyncio.Future[None] = asyncio.ensure_future(
                eth_deposits.listen(service, store.scoped("eth_deposits"))
            )
            reached: asyncio.Future[Any] = asyncio.ensure_future(status.reached.wait())
            await asyncio.wait([task, reached], return_when=asyncio.FIRST_COMPLETED)
            if not reached.done():
                reached.cancel()
                task.result()  # the listener's error, if it stopped with one
                raise RuntimeError("listener stopped early")
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            counts = await store.counts()
        finally:
            await store.close()
    return sum(counts.values())


async def profiled(args: dict[str, Any]) -> int:
    import cProfile
    import pstats

    profile = cProfile.Profile()
    profile.enable()
    try:
        return await listener(args)
    finally:
        profile.disable()
        stats = pstats.Stats(profile, stream=sys.stderr)
        stats.sort_stats("cumulative").print_stats(40)
        stats.sort_stats("tottime").print_stats(25)


MODES = {"bare": bare, "naive": naive, "listener": listener, "profile": profiled}


def main() -> None:
    args = json.loads(sys.stdin.read())
    # Imports are not part of any measurement.
    import web3  # noqa: F401

    import bridge.eventstore  # noqa: F401
    import listeners.eth_deposits  # noqa: F401
    import listeners.ethereum.chain  # noqa: F401

    started = time.perf_counter()
    count = asyncio.run(MODES[args["mode"]](args))
    seconds = time.perf_counter() - started
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": seconds, "count": count, "peak_rss_kb": rss}))


if __name__ == "__main__":
    main()
