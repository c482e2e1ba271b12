"""Opening SQLite files the same way everywhere."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import aiosqlite

# WAL with synchronous=NORMAL: a committed transaction survives a crash of the process
# (the WAL is written before COMMIT returns); only an OS crash or power loss can drop the
# last few commits. The EventStore can afford that (a lost chunk is scanned again, a lost
# removal voted again, to no effect); the ledger cannot, see connect_sync.
PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", "PRAGMA foreign_keys=ON")


async def connect(path: Path, *, readonly: bool = False) -> aiosqlite.Connection:
    if readonly:
        db = await aiosqlite.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
        await db.execute("PRAGMA query_only=ON")
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(path, isolation_level=None)
        for pragma in PRAGMAS:
            await db.execute(pragma)
    await db.execute("PRAGMA busy_timeout=5000")
    return db


def connect_sync(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """A plain connection, for the ledger's block execution (see ``bridge/ledger/state.py``).
    It may be handed to a worker thread for one statement at a time (the COMMIT).

    The writer fsyncs every COMMIT (synchronous=FULL, about 0.3 ms a block here): once a block
    is committed the node acts on it (the EventStore forgets the events it processed), so an
    OS crash or power loss must not take the block back."""
    if readonly:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA query_only=ON")
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        for pragma in PRAGMAS:
            db.execute(pragma)
        db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA busy_timeout=5000")
    return db


def disk_full(exc: BaseException) -> bool:
    """SQLITE_FULL: a write found no space (the disk, or the file system's quota, is full)."""
    return isinstance(exc, sqlite3.OperationalError) and exc.sqlite_errorcode == sqlite3.SQLITE_FULL


def chunks(items: list[bytes], size: int = 500) -> list[list[bytes]]:
    """Split for ``IN (...)`` queries, which SQLite caps by variable count."""
    return [items[i : i + size] for i in range(0, len(items), size)]


def marks(n: int) -> str:
    return ",".join("?" * n)
