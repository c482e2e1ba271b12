"""N ledgers in one process, for deterministic tests of the ledger.

Every transaction reaches every node's mempool; the proposer rotates over the sorted
validator keys; every node processes, finalizes and commits the same block, and the app
hashes are compared at every height. A node can be crashed between ``finalize_block`` and
``commit``: it is closed, reopened from its file and given the block again.
"""

from __future__ import annotations

from pathlib import Path

from bridge.keys import NodeKey
from bridge.ledger import Block, BlockResult, Genesis, Ledger


class DivergenceError(AssertionError):
    """Raised when two nodes compute different app hashes for the same block."""


class Simulator:
    def __init__(self, directory: Path, keys: list[NodeKey], genesis: Genesis) -> None:
        self.directory, self.keys, self.genesis = directory, keys, genesis
        self.paths = [directory / f"node{i}.sqlite" for i in range(len(keys))]
        self.ledgers: list[Ledger] = []
        self.mempool: list[bytes] = []
        self.time_ns = genesis.time_ns

    async def start(self) -> None:
        self.ledgers = [await Ledger.open(p) for p in self.paths]
        hashes = {await ledger.init_chain(self.genesis) for ledger in self.ledgers}
        if len(hashes) != 1:
            raise DivergenceError("genesis app hashes differ")

    async def close(self) -> None:
        for ledger in self.ledgers:
            await ledger.close()

    def submit(self, raw: bytes) -> None:
        self.mempool.append(raw)

    async def step(self, crash: frozenset[int] = frozenset(), max_bytes: int = 4 << 20) -> BlockResult:
        """Make one block; nodes in ``crash`` die after finalize_block and replay it."""
        height = self.ledgers[0].height + 1
        validators = sorted(self.ledgers[0].validators)
        proposer_key = validators[height % len(validators)]
        proposer = next((i for i, k in enumerate(self.keys) if k.public == proposer_key), 0)
        txs = await self.ledgers[proposer].prepare_proposal(self.mempool, max_bytes)
        self.mempool = [t for t in self.mempool if t not in set(txs)]
        self.time_ns += 1_000_000_000
        block = Block(height, self.time_ns, proposer_key, tuple(txs))
        results: list[BlockResult] = []
        for i, ledger in enumerate(self.ledgers):
            if not await ledger.process_proposal(list(txs)):
                raise DivergenceError(f"node {i} rejected a proposal")
            result = await ledger.finalize_block(block)
            if i in crash:
                await ledger.close()
                ledger = self.ledgers[i] = await Ledger.open(self.paths[i])
                if (await ledger.info())[0] != height - 1:
                    raise DivergenceError(f"node {i} kept an uncommitted block")
                replayed = await ledger.finalize_block(block)
                if replayed.app_hash != result.app_hash:
                    raise DivergenceError(f"node {i} replayed height {height} to another hash")
                result = replayed
            results.append(result)
        for ledger in self.ledgers:
            await ledger.commit()
        hashes = {r.app_hash for r in results}
        if len(hashes) != 1:
            raise DivergenceError(f"app hashes differ at height {height}: {sorted(h.hex() for h in hashes)}")
        return results[0]
