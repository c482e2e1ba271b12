"""The embedded single-validator engine: a block every ``block_interval`` from the mempool.

It drives the ledger through the same ABCI calls as CometBFT would, so everything above
the engine behaves the same on a one-node dev chain and on a real network.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from bridge.errors import TxCode
from bridge.keys import NodeKey
from bridge.ledger import Block, BlockResult, Ledger, TxResult
from bridge.txs import Tx

log = logging.getLogger("bridge.engines.solo")

OnCommit = Callable[[BlockResult], Awaitable[None]]


class Mempool:
    """Checked transactions by signer and nonce; one transaction per (signer, nonce).

    What can never execute does not stay: a nonce already used goes at the next block, and a
    signer whose next nonce has not come for ``max_wait`` blocks loses its waiting
    transactions (the ledger admits at most MAX_NONCE_AHEAD of them per signer).
    """

    def __init__(self, max_txs: int = 10_000, max_wait: int = 100) -> None:
        # signer -> nonce -> (tx, the block count when it was added)
        self._txs: dict[bytes, dict[int, tuple[bytes, int]]] = {}
        self.max_txs, self.max_wait = max_txs, max_wait
        self._blocks = 0

    def __len__(self) -> int:
        return sum(len(v) for v in self._txs.values())

    def add(self, tx: Tx, raw: bytes) -> bool:
        if len(self) >= self.max_txs:
            return False
        self._txs.setdefault(tx.signer, {})[tx.nonce] = (raw, self._blocks)
        return True

    async def reap(self, next_nonce: Callable[[bytes], Awaitable[int]]) -> list[bytes]:
        """Transactions with consecutive nonces from each signer's next one, by signer arrival."""
        self._blocks += 1
        out: list[bytes] = []
        for signer in list(self._txs):
            queue = self._txs[signer]
            nonce = await next_nonce(signer)
            for stale in [n for n in queue if n < nonce]:
                del queue[stale]
            if nonce not in queue and all(
                self._blocks - added > self.max_wait for _, added in queue.values()
            ):
                queue.clear()  # waiting for a nonce that has not come: evicted
            while nonce in queue:
                out.append(queue[nonce][0])
                nonce += 1
            if not queue:
                del self._txs[signer]
        return out


class SoloEngine:
    def __init__(
        self,
        ledger: Ledger,
        key: NodeKey,
        *,
        block_interval: float = 0.2,
        max_block_bytes: int = 4 << 20,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.ledger, self.key = ledger, key
        self.block_interval = block_interval
        self.max_block_bytes = max_block_bytes
        self.mempool = Mempool()
        self.on_commit: list[OnCommit] = []
        # The proposer's own votes, straight into its block: (max bytes) -> signed txs.
        self.injector: Callable[[int], Awaitable[list[bytes]]] | None = None
        self.caught_up = True  # a single validator is always at the tip
        self._clock_ns = clock_ns
        self._last_time = ledger.time_ns

    @property
    def mempool_size(self) -> int:
        return len(self.mempool)

    async def submit(self, raw: bytes) -> TxResult:
        result = await self.ledger.check_tx(raw)
        if result.ok and not self.mempool.add(Tx.decode(raw), raw):
            return TxResult(TxCode.MEMPOOL_FULL, "mempool is full; try again later")
        return result

    async def make_block(self) -> BlockResult:
        txs = await self.mempool.reap(self.ledger.nonce)
        injected = await self.injector(self.max_block_bytes) if self.injector else []
        txs = await self.ledger.prepare_proposal(txs, self.max_block_bytes, injected)
        # Block time: the wall clock, but never earlier than the previous block's.
        self._last_time = max(self._clock_ns(), self._last_time + 1)
        block = Block(self.ledger.height + 1, self._last_time, self.key.public, tuple(txs))
        result = await self.ledger.finalize_block(block)
        await self.ledger.commit()
        for callback in self.on_commit:
            await callback(result)
        return result

    async def run(self) -> None:
        while True:
            started = asyncio.get_running_loop().time()
            await self.make_block()
            elapsed = asyncio.get_running_loop().time() - started
            await asyncio.sleep(max(0.0, self.block_interval - elapsed))
