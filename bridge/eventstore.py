"""The node-local event store: events waiting to be voted on, and listeners' private KV.

One SQLite file per node, separate from the ledger and never replicated. A lock serialises
access to the single connection so one listener's ``transaction()`` cannot interleave with
another's writes, and nobody reads what an open transaction has not committed yet.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from bridge import sqlite
from bridge.encoding import Writer
from bridge.sqlite import chunks, marks
from resolutions import MAX_BODY_BYTES, registered_resolutions

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id BLOB NOT NULL UNIQUE, type TEXT NOT NULL,
    body BLOB NOT NULL, listener TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'pending',
    first_seen REAL NOT NULL, last_sent REAL);
CREATE INDEX IF NOT EXISTS events_by_state ON events (state, seq);
CREATE TABLE IF NOT EXISTS kv (
    listener TEXT NOT NULL, key BLOB NOT NULL, value BLOB NOT NULL,
    PRIMARY KEY (listener, key)) WITHOUT ROWID;
"""

PENDING, VOTED = "pending", "voted"
_INSERT_EVENT = "INSERT OR IGNORE INTO events (id, type, body, listener, first_seen) VALUES (?, ?, ?, ?, ?)"


@dataclass(frozen=True)
class Event:
    id: bytes
    type: str
    body: bytes
    state: str
    last_sent: float | None


class EventStore:
    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path) -> EventStore:
        db = await sqlite.connect(path)
        await db.executescript(SCHEMA)
        return cls(db)

    async def close(self) -> None:
        await self._db.close()

    def scoped(self, listener: str) -> ScopedStore:
        """The :class:`listeners.EventStore` one listener gets: its own KV namespace."""
        return ScopedStore(self, listener, in_transaction=False)

    # -- for the broadcaster -- #

    async def select(self, state: str, limit: int, sent_before: float | None = None) -> list[Event]:
        """Events in ``state``, oldest first; with ``sent_before``, only those never sent or
        last sent before that time."""
        sql = "SELECT id, type, body, state, last_sent FROM events WHERE state = ?"
        args: list[object] = [state]
        if sent_before is not None:
            sql += " AND (last_sent IS NULL OR last_sent < ?)"
            args.append(sent_before)
        async with self._lock, self._db.execute(sql + " ORDER BY seq LIMIT ?", (*args, limit)) as cur:
            return [Event(bytes(i), t, bytes(b), s, ls) async for i, t, b, s, ls in cur]

    async def of_type(self, event_type: str) -> list[Event]:
        """Every stored event of ``event_type``, oldest first."""
        sql = "SELECT id, type, body, state, last_sent FROM events WHERE type = ? ORDER BY seq"
        async with self._lock, self._db.execute(sql, (event_type,)) as cur:
            return [Event(bytes(i), t, bytes(b), s, ls) async for i, t, b, s, ls in cur]

    async def sent_ids(self) -> list[bytes]:
        """Events that were sent or seen voted: the ones whose vote status may change."""
        sql = "SELECT id FROM events WHERE last_sent IS NOT NULL OR state = ? ORDER BY seq"
        async with self._lock, self._db.execute(sql, (VOTED,)) as cur:
            return [bytes(r[0]) async for r in cur]

    async def mark_sent(self, ids: list[bytes], at: float | None = None) -> None:
        now = time.time() if at is None else at  # 0.0 is a valid time of an injected clock
        await self._update("UPDATE events SET last_sent = ? WHERE id IN ({})", ids, now)

    async def set_state(self, ids: list[bytes], state: str) -> None:
        await self._update("UPDATE events SET state = ? WHERE id IN ({})", ids, state)

    async def reset_sent(self) -> None:
        """Forget send times (after a restart every pending event is sent again)."""
        async with self._lock:
            await self._db.execute("UPDATE events SET last_sent = NULL WHERE state = ?", (PENDING,))

    async def remove(self, ids: list[bytes]) -> None:
        await self._update("DELETE FROM events WHERE id IN ({})", ids)

    async def counts(self) -> dict[str, int]:
        sql = "SELECT state, COUNT(*) FROM events GROUP BY state ORDER BY state"
        async with self._lock, self._db.execute(sql) as cur:
            return {s: int(n) async for s, n in cur}

    async def _update(self, sql: str, ids: list[bytes], *args: object) -> None:
        async with self._lock:
            await self._db.execute("BEGIN")
            try:
                for part in chunks(ids):
                    await self._db.execute(sql.format(marks(len(part))), (*args, *part))
            except BaseException:
                await _rollback(self._db)
                raise
            await self._db.execute("COMMIT")


async def _rollback(db: aiosqlite.Connection) -> None:
    """End a failed transaction. SQLite may have rolled it back itself (it can, on SQLITE_FULL):
    a ROLLBACK then raises "no transaction is active" and hides the error that matters. (A
    failed COMMIT needs nothing: on SQLITE_FULL SQLite has rolled back already.)"""
    if db.in_transaction:
        await db.execute("ROLLBACK")


class ScopedStore:
    """One listener's view of the store; implements :class:`listeners.EventStore`."""

    def __init__(self, store: EventStore, listener: str, *, in_transaction: bool) -> None:
        self._store, self._name, self._in_tx = store, listener, in_transaction
        # Inside a transaction, broadcasts are collected and inserted in one executemany
        # just before COMMIT: one round trip to SQLite's thread per chunk, not per event.
        self._rows: list[tuple[bytes, str, bytes, str, float]] = []
        # Registered types seen by this store, with their encoding (the event id's prefix).
        # Resolutions are registered at import time and never removed.
        self._types: dict[str, bytes] = {}

    @asynccontextmanager
    async def _locked(self) -> AsyncIterator[aiosqlite.Connection]:
        if self._in_tx:  # the transaction holds the lock already
            yield self._store._db
        else:
            async with self._store._lock:
                yield self._store._db

    async def broadcast(self, event_type: str, data: bytes) -> None:
        if event_type not in self._types and event_type not in registered_resolutions():
            raise ValueError(f"cannot broadcast {event_type!r}: no resolution of that type is registered")
        if not isinstance(data, bytes):
            raise TypeError("event data must be bytes")
        if len(data) > MAX_BODY_BYTES:
            raise ValueError(f"event data of {len(data)} bytes exceeds the limit of {MAX_BODY_BYTES}")
        prefix = self._types.get(event_type)
        if prefix is None:
            prefix = self._types[event_type] = Writer().text(event_type).finish()
        # = event_id(event_type, data), with the type's encoding computed once
        rid = hashlib.sha256(prefix + len(data).to_bytes(4, "big") + data).digest()
        row = (rid, event_type, data, self._name, time.time())
        if self._in_tx:
            self._rows.append(row)
            return
        async with self._locked() as db:
            await db.execute(_INSERT_EVENT, row)

    async def _flush(self, db: aiosqlite.Connection) -> None:
        if self._rows:
            rows, self._rows = self._rows, []
            await db.executemany(_INSERT_EVENT, rows)

    async def set(self, key: bytes, value: bytes) -> None:
        async with self._locked() as db:
            await db.execute("INSERT OR REPLACE INTO kv VALUES (?, ?, ?)", (self._name, key, value))

    async def get(self, key: bytes) -> bytes | None:
        async with self._locked() as db:
            sql = "SELECT value FROM kv WHERE listener = ? AND key = ?"
            async with db.execute(sql, (self._name, key)) as cur:
                row = await cur.fetchone()
        return None if row is None else bytes(row[0])

    async def delete(self, key: bytes) -> None:
        async with self._locked() as db:
            await db.execute("DELETE FROM kv WHERE listener = ? AND key = ?", (self._name, key))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[ScopedStore]:
        if self._in_tx:
            raise RuntimeError("transactions do not nest")
        async with self._store._lock:
            db = self._store._db
            await db.execute("BEGIN IMMEDIATE")
            inner = ScopedStore(self._store, self._name, in_transaction=True)
            try:
                yield inner
                await inner._flush(db)
            except BaseException:
                await _rollback(db)
                raise
            await db.execute("COMMIT")
