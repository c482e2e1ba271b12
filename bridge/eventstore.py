"""The node-local event store: events waiting to be voted on, and listeners' private KV.

One SQLite file per node, separate from the ledger and never replicated. A lock serialises
access to the single connection so one listener's ``transaction()`` cannot interleave with
another's writes, and nobody reads what an open transaction has not committed yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import sqlite3
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

# A backfill inserts events by the thousand per transaction, each into the UNIQUE index on
# their random 32-byte ids: every transaction dirties pages all over that index, and each
# checkpoint copies the dirtied pages from the WAL into the database. Every 10,000 pages
# (40 MiB of WAL) instead of SQLite's 1,000, a page that many transactions dirtied is copied
# once per checkpoint, not about once per transaction: a quarter less time in SQLite at 1M
# events. A setting of the connection, so files made before it are opened alike. (A larger
# page cache saved CPU time but not wall time, and would make the peak RSS grow with the store.)
_WAL_AUTOCHECKPOINT = "PRAGMA wal_autocheckpoint = 10000"

PENDING, VOTED = "pending", "voted"
_INSERT_EVENT = "INSERT OR IGNORE INTO events (id, type, body, listener, first_seen) VALUES (?, ?, ?, ?, ?)"
_EVENT_COLUMNS = 5


def _max_rows_per_insert() -> int:
    """The most events one INSERT takes: 8,192, or fewer (a power of two) where SQLite allows
    fewer variables (999 before 3.32; 32,766 since)."""
    with contextlib.closing(sqlite3.connect(":memory:")) as db:
        rows = db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // _EVENT_COLUMNS
    return min(8192, 1 << (rows.bit_length() - 1))


_MAX_ROWS_PER_INSERT = _max_rows_per_insert()


def _insert_rows(n: int) -> int:
    """The size of the INSERT that takes ``n`` events: ``n`` rounded up to a power of two up to
    1,024 and to a multiple of 1,024 above. The rows beyond ``n`` repeat the last event, which
    INSERT OR IGNORE drops (each still uses up a ``seq``: numbers may skip, as they always
    could): a few sizes of statement serve every transaction, and the connection's statement
    cache keeps them compiled (a compiled 5,000-row INSERT is ~2 MB: one per distinct count
    would fill memory)."""
    return 1 << (n - 1).bit_length() if n <= 1024 else -(-n // 1024) * 1024


@functools.cache
def _insert_events(rows: int) -> str:
    return _INSERT_EVENT + ", (?, ?, ?, ?, ?)" * (rows - 1)


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
        await db.execute(_WAL_AUTOCHECKPOINT)
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
    failed COMMIT needs nothing: on SQLITE_FULL SQLite has rolled back already.) A statement
    whose caller was cancelled, a BEGIN say, still runs in SQLite's thread: a no-op queued
    behind it makes ``in_transaction`` tell the state it leaves."""
    await db.execute("SELECT 1")
    if db.in_transaction:
        await db.execute("ROLLBACK")


class ScopedStore:
    """One listener's view of the store; implements :class:`listeners.EventStore`."""

    def __init__(self, store: EventStore, listener: str, *, in_transaction: bool) -> None:
        self._store, self._name, self._in_tx = store, listener, in_transaction
        # Inside a transaction, broadcasts (their rows' values, one after the other) and KV
        # writes (None: a delete) are kept here and written just before COMMIT, in a statement
        # or two: a round trip to SQLite's thread costs more than the statement when the event
        # loop is busy, as it is in a backfill (the thread waits for the GIL, then the loop for
        # the thread's answer).
        self._values: list[object] = []
        self._kv: dict[bytes, bytes | None] = {}
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
        prefix = self._types.get(event_type)
        if prefix is None:
            if event_type not in registered_resolutions():
                raise ValueError(f"cannot broadcast {event_type!r}: no resolution of that type is registered")
            prefix = self._types[event_type] = Writer().text(event_type).finish()
        if not isinstance(data, bytes):
            raise TypeError("event data must be bytes")
        if len(data) > MAX_BODY_BYTES:
            raise ValueError(f"event data of {len(data)} bytes exceeds the limit of {MAX_BODY_BYTES}")
        # = event_id(event_type, data), with the type's encoding computed once
        rid = hashlib.sha256(prefix + len(data).to_bytes(4, "big") + data).digest()
        row = (rid, event_type, data, self._name, time.time())
        if self._in_tx:
            self._values += row
            return
        async with self._locked() as db:
            await db.execute(_INSERT_EVENT, row)

    async def _flush(self, db: aiosqlite.Connection) -> None:
        """Write the transaction's events, in the order they were broadcast, and its KV writes.
        One statement after the other: after an error SQLite may have rolled the transaction
        back already, and a statement queued behind it would then commit on its own."""
        values, kv = self._values, self._kv
        self._values, self._kv = [], {}
        events = len(values) // _EVENT_COLUMNS
        for first in range(0, events, _MAX_ROWS_PER_INSERT):
            n = min(_MAX_ROWS_PER_INSERT, events - first)
            rows: list[object] = values[first * _EVENT_COLUMNS : (first + n) * _EVENT_COLUMNS]
            rows += rows[-_EVENT_COLUMNS:] * (_insert_rows(n) - n)  # copies of the last event
            await db.execute(_insert_events(_insert_rows(n)), rows)
        written = [(key, value) for key, value in kv.items() if value is not None]
        for i in range(0, len(written), 300):  # 3 variables a row, within SQLite's 999
            part = written[i : i + 300]
            sql = "INSERT OR REPLACE INTO kv VALUES " + ", ".join(["(?, ?, ?)"] * len(part))
            await db.execute(sql, [v for key, value in part for v in (self._name, key, value)])
        for keys in chunks([key for key, value in kv.items() if value is None]):
            sql = f"DELETE FROM kv WHERE listener = ? AND key IN ({marks(len(keys))})"
            await db.execute(sql, (self._name, *keys))

    async def set(self, key: bytes, value: bytes) -> None:
        if self._in_tx:
            self._kv[key] = value
            return
        async with self._locked() as db:
            await db.execute("INSERT OR REPLACE INTO kv VALUES (?, ?, ?)", (self._name, key, value))

    async def get(self, key: bytes) -> bytes | None:
        if key in self._kv:  # written earlier in this transaction
            value = self._kv[key]
            return None if value is None else bytes(value)
        async with self._locked() as db:
            sql = "SELECT value FROM kv WHERE listener = ? AND key = ?"
            async with db.execute(sql, (self._name, key)) as cur:
                row = await cur.fetchone()
        return None if row is None else bytes(row[0])

    async def delete(self, key: bytes) -> None:
        if self._in_tx:
            self._kv[key] = None
            return
        async with self._locked() as db:
            await db.execute("DELETE FROM kv WHERE listener = ? AND key = ?", (self._name, key))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[ScopedStore]:
        if self._in_tx:
            raise RuntimeError("transactions do not nest")
        async with self._store._lock:
            db = self._store._db
            inner = ScopedStore(self._store, self._name, in_transaction=True)
            try:
                await db.execute("BEGIN IMMEDIATE")
                yield inner
                await inner._flush(db)
            except BaseException:
                await _rollback(db)
                raise
            await db.execute("COMMIT")
