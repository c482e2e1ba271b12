"""The ledger's replicated state in SQLite, and the write log its app hash is built from.

Each block runs inside one SQLite transaction that ``commit`` ends, so nothing a block
writes is durable before commit, and a crash in between leaves the previous block's state.
Every write goes through a method here that also appends a canonical entry to the block's
write log; the app hash chains the previous hash with that log.

The connection is a plain synchronous ``sqlite3`` one, called from the event loop: a block
is tens of thousands of indexed statements of a few microseconds each, and a hop to a worker
thread per statement (aiosqlite) cost more than ten times the statement itself. Only the
COMMIT, which can wait on the disk, goes to a thread. The methods stay ``async`` because
resolutions reach them through the async :class:`resolutions.App`.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from bridge.encoding import Writer
from bridge.ledger.types import Movement
from bridge.sqlite import chunks, marks

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS accounts (id TEXT PRIMARY KEY, balance TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS nonces (signer BLOB PRIMARY KEY, nonce INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS validators (
    pubkey BLOB PRIMARY KEY, power INTEGER NOT NULL, since INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS resolutions (
    id BLOB PRIMARY KEY, type TEXT NOT NULL, body BLOB NOT NULL, proposer BLOB NOT NULL,
    expiration INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS resolutions_by_expiration ON resolutions (expiration, type, id);
CREATE INDEX IF NOT EXISTS resolutions_by_proposer ON resolutions (proposer);
CREATE TABLE IF NOT EXISTS votes (
    resolution_id BLOB NOT NULL, voter BLOB NOT NULL, PRIMARY KEY (resolution_id, voter)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS processed (
    id BLOB PRIMARY KEY, type TEXT NOT NULL, body BLOB NOT NULL, height INTEGER NOT NULL,
    status TEXT NOT NULL, error TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS processed_by_height ON processed (type, height, id);
CREATE TABLE IF NOT EXISTS kv (
    namespace TEXT NOT NULL, key BLOB NOT NULL, value BLOB NOT NULL,
    PRIMARY KEY (namespace, key)) WITHOUT ROWID;
"""


@dataclass(frozen=True)
class ResolutionRow:
    id: bytes
    type: str
    body: bytes
    proposer: bytes
    expiration: int


Entry = tuple[str, bytes, bytes | None]  # (table, key, new value or None for a delete)


def block_hash(prev: bytes, height: int, log: Iterable[Entry]) -> bytes:
    """sha256 of (prev, height) then, per entry, text(table) blob(key) and u8(0) for a delete
    or u8(1) blob(value), in :mod:`bridge.encoding`'s format (packed inline: a block logs
    tens of thousands of entries)."""
    u32 = struct.Struct(">I").pack
    tables: dict[str, bytes] = {}
    parts = [Writer().blob(prev).u64(height).finish()]
    extend = parts.extend
    for table, key, value in log:
        if table not in tables:
            tables[table] = Writer().text(table).finish()
        if value is None:
            extend((tables[table], u32(len(key)), key, b"\x00"))
        else:
            extend((tables[table], u32(len(key)), key, b"\x01", u32(len(value)), value))
    return hashlib.sha256(b"".join(parts)).digest()


_MISSING = object()
_U32, _U64 = struct.Struct(">I").pack, struct.Struct(">Q").pack


def _blob(value: bytes) -> bytes:
    """``Writer().blob(value)``, inline for the entries every vote and resolution logs."""
    return _U32(len(value)) + value


class Savepoint:
    """See :meth:`State.savepoint` (a class, not a generator: there is one per resolve)."""

    def __init__(self, state: State) -> None:
        self.state = state

    async def __aenter__(self) -> None:
        s = self.state
        s._depth += 1
        self.depth, self.mark, self.undo_mark = s._depth, len(s.log), len(s._undo)
        self.moved_mark = len(s.movements)

    async def __aexit__(self, kind: type[BaseException] | None, *_: object) -> None:
        s, depth = self.state, self.depth
        if kind is not None:
            if s._opened >= depth:
                s.db.execute(f"ROLLBACK TO sp{depth}")
            del s.log[self.mark :]
            del s.movements[self.moved_mark :]
            while len(s._undo) > self.undo_mark:
                cache, key, old = s._undo.pop()
                if old is _MISSING:
                    cache.pop(key, None)
                else:
                    cache[key] = old
        if s._opened >= depth:
            s.db.execute(f"RELEASE sp{depth}")
            s._opened = depth - 1
        s._depth -= 1


class State:
    """Reads and logged writes over the ledger's connection."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.log: list[Entry] = []
        # Balance changes, each with what made it (``cause``: set by the ledger before each
        # transaction and resolution): reported in the block result, not hashed.
        self.movements: list[Movement] = []
        self.cause: tuple[str, bytes] = ("", b"")
        # A block's writes to the hot tables stay in memory until commit writes them with one
        # executemany each: most resolutions are confirmed and removed in the block their
        # last vote lands in (their rows would be written only to be deleted), and a resolve
        # touches a few kv keys and balances (a statement each would dominate the block).
        self._new: dict[bytes, ResolutionRow] = {}
        self._new_votes: dict[bytes, tuple[bytes, ...]] = {}
        self._kv: dict[tuple[str, bytes], bytes | None] = {}
        self._balances: dict[str, int] = {}
        # (dict, key, value before) per in-memory write: what a savepoint's rollback restores.
        self._undo: list[tuple[dict[Any, Any], object, object]] = []
        # Savepoints are entered, and opened in SQLite only before the first SQL write inside.
        self._depth = self._opened = 0

    async def create(self) -> None:
        self.db.executescript(SCHEMA)

    # -- transactions -- #

    def _reset(self) -> None:
        self.log, self._new, self._new_votes, self._kv, self._balances, self._undo = [], {}, {}, {}, {}, []
        self.movements = []

    def _open_savepoints(self) -> None:
        while self._opened < self._depth:
            self._opened += 1
            self.db.execute(f"SAVEPOINT sp{self._opened}")

    def _write(self, sql: str, params: tuple[Any, ...]) -> None:
        self._open_savepoints()
        self.db.execute(sql, params)

    def _write_many(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        if rows:
            self._open_savepoints()
            self.db.executemany(sql, rows)

    def _remember(self, cache: dict[Any, Any], key: object, value: object) -> None:
        """Set ``cache[key]`` (``_MISSING`` deletes it), undoably."""
        self._undo.append((cache, key, cache.get(key, _MISSING)))
        if value is _MISSING:
            cache.pop(key, None)
        else:
            cache[key] = value

    async def begin(self) -> None:
        self._reset()
        self.db.execute("BEGIN IMMEDIATE")

    async def commit(self) -> None:
        db = self.db
        db.executemany(
            "INSERT INTO resolutions VALUES (?, ?, ?, ?, ?)",
            [(r.id, r.type, r.body, r.proposer, r.expiration) for r in self._new.values()],
        )
        db.executemany(
            "INSERT INTO votes VALUES (?, ?)", [(i, v) for i, vs in self._new_votes.items() for v in vs]
        )
        kv = self._kv.items()
        db.executemany(
            "INSERT OR REPLACE INTO kv VALUES (?, ?, ?)", [(*k, v) for k, v in kv if v is not None]
        )
        db.executemany("DELETE FROM kv WHERE namespace = ? AND key = ?", [k for k, v in kv if v is None])
        balances = self._balances.items()
        db.executemany(
            "INSERT OR REPLACE INTO accounts VALUES (?, ?)", [(a, str(b)) for a, b in balances if b]
        )
        db.executemany("DELETE FROM accounts WHERE id = ?", [(a,) for a, b in balances if not b])
        self._reset()
        await asyncio.to_thread(self.db.execute, "COMMIT")

    async def rollback(self) -> None:
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")
        self._reset()

    def savepoint(self) -> Savepoint:
        """``async with state.savepoint():`` undoes every write (and its log entries) made
        inside if the body raises."""
        return Savepoint(self)

    async def _one(self, sql: str, params: tuple[object, ...]) -> Any:
        """The first row of a query, or None."""
        return self.db.execute(sql, params).fetchone()

    # -- meta (not hashed: height and app hash are the hash's own inputs) -- #

    async def get_meta(self, key: str) -> bytes | None:
        row = await self._one("SELECT value FROM meta WHERE key = ?", (key,))
        return None if row is None else bytes(row[0])

    async def set_meta(self, key: str, value: bytes) -> None:
        self._write("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    # -- accounts and nonces -- #

    async def balance(self, account: str) -> int:
        if account in self._balances:
            return self._balances[account]
        row = await self._one("SELECT balance FROM accounts WHERE id = ?", (account,))
        return 0 if row is None else int(row[0])

    def moved(self, account: str, delta: int) -> None:
        """Report a balance change (its write is ``set_balance``'s) with the current cause."""
        self.movements.append(Movement(account, delta, *self.cause))

    async def set_balance(self, account: str, balance: int) -> None:
        self._remember(self._balances, account, balance)
        self.log.append(("accounts", account.encode(), Writer().uint(balance).finish() if balance else None))

    async def nonce(self, signer: bytes) -> int:
        row = await self._one("SELECT nonce FROM nonces WHERE signer = ?", (signer,))
        return 0 if row is None else int(row[0])

    async def set_nonce(self, signer: bytes, nonce: int) -> None:
        self._write("INSERT OR REPLACE INTO nonces VALUES (?, ?)", (signer, nonce))
        self.log.append(("nonces", signer, Writer().u64(nonce).finish()))

    # -- validators -- #

    async def validators(self) -> dict[bytes, int]:
        return {
            bytes(k): int(p)
            for k, p in self.db.execute("SELECT pubkey, power FROM validators ORDER BY pubkey")
        }

    async def validator_since(self, pubkey: bytes) -> int | None:
        row = await self._one("SELECT since FROM validators WHERE pubkey = ?", (pubkey,))
        return None if row is None else int(row[0])

    async def set_power(self, pubkey: bytes, power: int, height: int) -> None:
        if power == 0:
            self._write("DELETE FROM validators WHERE pubkey = ?", (pubkey,))
            self.log.append(("validators", pubkey, None))
            return
        since = await self.validator_since(pubkey)
        since = height if since is None else since
        self._write("INSERT OR REPLACE INTO validators VALUES (?, ?, ?)", (pubkey, power, since))
        self.log.append(("validators", pubkey, Writer().u64(power).u64(since).finish()))

    # -- resolutions and votes -- #

    async def _ids(self, sql: str, ids: list[bytes], *args: object) -> set[bytes]:
        found: set[bytes] = set()
        for part in chunks(ids):
            found.update(bytes(r[0]) for r in self.db.execute(sql.format(marks(len(part))), (*args, *part)))
        return found

    # A resolution created in this block has no row in any table yet: only the others are
    # looked up in SQLite.

    async def processed_ids(self, ids: list[bytes]) -> set[bytes]:
        stored = [i for i in ids if i not in self._new]
        return await self._ids("SELECT id FROM processed WHERE id IN ({})", stored)

    async def pending_ids(self, ids: list[bytes]) -> set[bytes]:
        stored = [i for i in ids if i not in self._new]
        return await self._ids("SELECT id FROM resolutions WHERE id IN ({})", stored) | (
            set(ids) - set(stored)
        )

    async def voted_ids(self, ids: list[bytes], voter: bytes) -> set[bytes]:
        stored = [i for i in ids if i not in self._new]
        sql = "SELECT resolution_id FROM votes WHERE voter = ? AND resolution_id IN ({})"
        return await self._ids(sql, stored, voter) | {i for i in ids if voter in self._new_votes.get(i, ())}

    async def pending_created_by(self, proposer: bytes) -> int:
        """How many pending resolutions ``proposer`` created (its first vote made them)."""
        row = await self._one("SELECT COUNT(*) FROM resolutions WHERE proposer = ?", (proposer,))
        return int(row[0]) + sum(1 for r in self._new.values() if r.proposer == proposer)

    async def all_pending_ids(self) -> list[bytes]:
        stored = [bytes(r[0]) for r in self.db.execute("SELECT id FROM resolutions ORDER BY id")]
        return sorted([*stored, *self._new])

    async def resolutions(self, ids: list[bytes]) -> dict[bytes, ResolutionRow]:
        out = {i: self._new[i] for i in ids if i in self._new}
        for part in chunks([i for i in ids if i not in self._new]):
            sql = (
                "SELECT id, type, body, proposer, expiration FROM resolutions"
                f" WHERE id IN ({marks(len(part))})"
            )
            for i, t, b, p, e in self.db.execute(sql, part):
                out[bytes(i)] = ResolutionRow(bytes(i), t, bytes(b), bytes(p), int(e))
        return out

    async def pending_types(self, ids: list[bytes]) -> dict[bytes, str]:
        """The type of each of ``ids`` that is a pending resolution."""
        out = {i: self._new[i].type for i in ids if i in self._new}
        for part in chunks([i for i in ids if i not in self._new]):
            sql = f"SELECT id, type FROM resolutions WHERE id IN ({marks(len(part))})"
            out.update((bytes(i), t) for i, t in self.db.execute(sql, part))
        return out

    async def voters(self, ids: list[bytes]) -> dict[bytes, list[bytes]]:
        """Each id's voters, in key order."""
        out: dict[bytes, list[bytes]] = {i: list(self._new_votes.get(i, ())) for i in ids}
        for part in chunks([i for i in ids if i not in self._new]):
            sql = f"SELECT resolution_id, voter FROM votes WHERE resolution_id IN ({marks(len(part))})"
            for rid, voter in self.db.execute(sql, part):
                out[bytes(rid)].append(bytes(voter))
        for voters in out.values():
            voters.sort()
        return out

    async def expired(self, height: int, retired: tuple[str, ...] = ()) -> list[ResolutionRow]:
        """Pending resolutions that expire at ``height``: their time is up, or their type is
        one of ``retired``."""
        sql = (
            "SELECT id, type, body, proposer, expiration FROM resolutions"
            f" WHERE expiration <= ? OR type IN ({marks(len(retired))})"
        )
        rows = [
            ResolutionRow(bytes(i), t, bytes(b), bytes(p), int(e))
            for i, t, b, p, e in self.db.execute(sql, (height, *retired))
        ]
        rows += [r for r in self._new.values() if r.expiration <= height or r.type in retired]
        return sorted(rows, key=lambda r: (r.type, r.id))

    async def add_resolutions(self, rows: list[ResolutionRow]) -> None:
        for r in rows:
            self._remember(self._new, r.id, r)
        self.log.extend(
            (
                "resolutions",
                r.id,
                _blob(r.type.encode()) + _blob(r.body) + _blob(r.proposer) + _U64(r.expiration),
            )
            for r in rows
        )

    async def add_votes(self, ids: list[bytes], voter: bytes) -> None:
        votes, undo = self._new_votes, self._undo
        for i in ids:  # _remember, inline: a block adds tens of thousands
            old = votes.get(i)
            undo.append((votes, i, _MISSING if old is None else old))
            votes[i] = (voter,) if old is None else (*old, voter)
        self.log.extend(("votes", i + voter, b"") for i in ids)

    async def remove_resolutions(self, ids: list[bytes]) -> None:
        """Delete resolutions with their votes (one log entry each: votes go with them)."""
        stored = []
        for i in ids:
            if i not in self._new:  # else it was created in this block and has no row yet
                stored.append((i,))
            self._remember(self._new, i, _MISSING)
            self._remember(self._new_votes, i, _MISSING)
        self._write_many("DELETE FROM votes WHERE resolution_id = ?", stored)
        self._write_many("DELETE FROM resolutions WHERE id = ?", stored)
        self.log.extend(("resolutions", i, None) for i in ids)

    async def mark_processed(
        self, rows: list[tuple[bytes, str, bytes, int, str, str]], *, logged: bool = False
    ) -> None:
        """Rows of (id, type, body, height, status, error). With ``logged`` the caller has
        already appended each row's :meth:`processed_entry` to the log, where it belongs."""
        self._write_many("INSERT INTO processed VALUES (?, ?, ?, ?, ?, ?)", rows)
        if not logged:
            self.log.extend(self.processed_entry(r) for r in rows)

    async def prune_processed(self, type_: str, below: int) -> int:
        """Forget processed ids of ``type_`` from heights up to ``below``; returns how many."""
        sql = "SELECT id FROM processed WHERE type = ? AND height <= ? ORDER BY id"
        ids = [bytes(r[0]) for r in self.db.execute(sql, (type_, below))]
        self._write_many("DELETE FROM processed WHERE id = ?", [(i,) for i in ids])
        self.log.extend(("processed", i, None) for i in ids)
        return len(ids)

    @staticmethod
    def processed_entry(r: tuple[bytes, str, bytes, int, str, str]) -> Entry:
        return ("processed", r[0], _U64(r[3]) + _blob(r[4].encode()) + _blob(r[5].encode()))

    # -- key-value state of resolution types -- #

    async def kv_get(self, namespace: str, key: bytes) -> bytes | None:
        if (namespace, key) in self._kv:
            return self._kv[namespace, key]
        sql = "SELECT value FROM kv WHERE namespace = ? AND key = ?"
        row = await self._one(sql, (namespace, key))
        return None if row is None else bytes(row[0])

    async def kv_set(self, namespace: str, key: bytes, value: bytes | None) -> None:
        """Set ``key`` to ``value``; None deletes it."""
        self._remember(self._kv, (namespace, key), value)
        self.log.append(("kv", _blob(namespace.encode()) + _blob(key), value))

    async def kv_delete(self, namespace: str, key: bytes) -> None:
        await self.kv_set(namespace, key, None)
