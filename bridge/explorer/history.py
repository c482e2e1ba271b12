"""What each committed block did, as this node saw it: the explorer's charts, live feed,
validators' last votes and every account's activity.

Local to the node (``data/explorer.sqlite``): not replicated and not in the app hash, so it
may differ between nodes (a node that was down for a block never saw its result, and a node
synced by other means starts empty). The authoritative figures (balances, deposit and
withdrawal statuses) come from the ledger; this is their history. Blocks are kept for the
last :data:`KEEP_BLOCKS` heights; activity is kept for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiosqlite

from bridge.ledger import BlockResult

KEEP_BLOCKS = 10_000
SCHEMA = """
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
CREATE TABLE IF NOT EXISTS blocks (
    height INTEGER PRIMARY KEY, time_ns INTEGER NOT NULL, app_hash BLOB NOT NULL,
    txs INTEGER NOT NULL, summary TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS activity (
    height INTEGER NOT NULL, seq INTEGER NOT NULL, account TEXT NOT NULL, delta TEXT NOT NULL,
    cause TEXT NOT NULL, ref BLOB NOT NULL, PRIMARY KEY (height, seq));
CREATE INDEX IF NOT EXISTS activity_by_account ON activity (account, height, seq);
CREATE TABLE IF NOT EXISTS voters (pubkey BLOB PRIMARY KEY, height INTEGER NOT NULL);
"""


def summarize(result: BlockResult, lag: Mapping[str, int]) -> dict[str, Any]:
    """The block's figures the page charts: new and settled resolutions per type, failed
    transactions, and each listener's blocks behind its safety point at commit time."""
    resolved: dict[str, dict[str, int]] = {}
    for _, rtype, outcome in result.resolved:
        counts = resolved.setdefault(rtype, {})
        counts[outcome] = counts.get(outcome, 0) + 1
    return {
        "opened": dict(result.opened),
        "resolved": resolved,
        "failed_txs": sum(not r.ok for r in result.tx_results),
        "lag": dict(sorted(lag.items())),
    }


class History:
    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self.closing = asyncio.Event()  # the node is stopping: live streams end

    @classmethod
    async def open(cls, path: Path) -> History:
        db = await aiosqlite.connect(path)
        await db.executescript(SCHEMA)
        return cls(db)

    async def close(self) -> None:
        self.closing.set()
        await self._db.close()

    async def record(
        self, height: int, time_ns: int, app_hash: bytes, result: BlockResult, lag: Mapping[str, int]
    ) -> None:
        """Keep committed block ``height`` and tell the live streams."""
        summary = summarize(result, lag)
        db = self._db
        await db.execute(
            "INSERT OR REPLACE INTO blocks VALUES (?, ?, ?, ?, ?)",
            (height, time_ns, app_hash, len(result.tx_results), json.dumps(summary)),
        )
        await db.executemany(
            "INSERT OR REPLACE INTO activity VALUES (?, ?, ?, ?, ?, ?)",
            [(height, i, m.account, str(m.delta), m.cause, m.ref) for i, m in enumerate(result.movements)],
        )
        sent = zip(result.senders, result.tx_results, strict=True)
        voted = sorted({signer for (kind, signer), r in sent if kind in ("vote", "vote_ids") and r.ok})
        await db.executemany("INSERT OR REPLACE INTO voters VALUES (?, ?)", [(v, height) for v in voted])
        if height % 100 == 0:
            await db.execute("DELETE FROM blocks WHERE height <= ?", (height - KEEP_BLOCKS,))
        await db.commit()
        block = self._block_json(height, time_ns, app_hash, len(result.tx_results), summary)
        for queue in self._subscribers:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(block)

    @staticmethod
    def _block_json(
        height: int, time_ns: int, app_hash: bytes, txs: int, summary: dict[str, Any]
    ) -> dict[str, Any]:
        return {"height": height, "time_ns": time_ns, "app_hash": app_hash.hex(), "txs": txs, **summary}

    async def blocks(self, limit: int) -> list[dict[str, Any]]:
        """The latest ``limit`` blocks kept, oldest first."""
        sql = "SELECT height, time_ns, app_hash, txs, summary FROM blocks ORDER BY height DESC LIMIT ?"
        async with self._db.execute(sql, (limit,)) as cur:
            rows = [self._block_json(h, t, bytes(a), n, json.loads(s)) async for h, t, a, n, s in cur]
        return rows[::-1]

    async def activity(self, account: str, limit: int) -> list[dict[str, Any]]:
        """``account``'s latest ``limit`` balance changes, newest first."""
        sql = (
            "SELECT height, seq, delta, cause, ref FROM activity WHERE account = ?"
            " ORDER BY height DESC, seq DESC LIMIT ?"
        )
        async with self._db.execute(sql, (account, limit)) as cur:
            return [
                {"height": h, "delta": d, "cause": c, "ref": bytes(r).hex()} async for h, _, d, c, r in cur
            ]

    async def last_votes(self) -> dict[bytes, int]:
        """Each validator key's latest block with a vote transaction of its, as seen here."""
        async with self._db.execute("SELECT pubkey, height FROM voters ORDER BY pubkey") as cur:
            return {bytes(k): h async for k, h in cur}

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        """A queue of the blocks recorded from now on; a reader that falls 256 behind misses
        blocks rather than holding the node's memory."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=256)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self._subscribers.discard(queue)
