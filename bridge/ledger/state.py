"""The ledger's replicated state in SQLite, and the write log its app hash is built from.

Each block runs inside one SQLite transaction that ``commit`` ends, so nothing a block
writes is durable before commit, and a crash in between leaves the previous block's state.
Every write goes through a method here that also appends a canonical entry to the block's
write log; the app hash chains the previous hash with that log.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiosqlite

from bridge.encoding import Writer
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
CREATE TABLE IF NOT EXISTS votes (
    resolution_id BLOB NOT NULL, voter BLOB NOT NULL, PRIMARY KEY (resolution_id, voter)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS processed (
    id BLOB PRIMARY KEY, type TEXT NOT NULL, body BLOB NOT NULL, height INTEGER NOT NULL,
    status TEXT NOT NULL, error TEXT NOT NULL);
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
    h = hashlib.sha256(Writer().blob(prev).u64(height).finish())
    for table, key, value in log:
        w = Writer().text(table).blob(key)
        h.update((w.u8(0) if value is None else w.u8(1).blob(value)).finish())
    return h.digest()


class State:
    """Reads and logged writes over the ledger's connection."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self.db = db
        self.log: list[Entry] = []
        self._savepoints = 0

    async def create(self) -> None:
        await self.db.executescript(SCHEMA)

    # -- transactions -- #

    async def begin(self) -> None:
        self.log = []
        await self.db.execute("BEGIN IMMEDIATE")

    async def commit(self) -> None:
        await self.db.execute("COMMIT")

    async def rollback(self) -> None:
        if self.db.in_transaction:
            await self.db.execute("ROLLBACK")
        self.log = []

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        """Undo every write (and its log entries) made inside if the body raises."""
        self._savepoints += 1
        name = f"sp{self._savepoints}"
        mark = len(self.log)
        await self.db.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            await self.db.execute(f"ROLLBACK TO {name}")
            await self.db.execute(f"RELEASE {name}")
            del self.log[mark:]
            raise
        else:
            await self.db.execute(f"RELEASE {name}")
        finally:
            self._savepoints -= 1

    async def _one(self, sql: str, params: tuple[object, ...]) -> Any:
        """The first row of a query, or None: one round trip to SQLite's thread (not three:
        execute, fetch, close)."""
        rows = list(await self.db.execute_fetchall(sql, params))
        return rows[0] if rows else None

    # -- meta (not hashed: height and app hash are the hash's own inputs) -- #

    async def get_meta(self, key: str) -> bytes | None:
        row = await self._one("SELECT value FROM meta WHERE key = ?", (key,))
        return None if row is None else bytes(row[0])

    async def set_meta(self, key: str, value: bytes) -> None:
        await self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    # -- accounts and nonces -- #

    async def balance(self, account: str) -> int:
        row = await self._one("SELECT balance FROM accounts WHERE id = ?", (account,))
        return 0 if row is None else int(row[0])

    async def set_balance(self, account: str, balance: int) -> None:
        if balance == 0:
            await self.db.execute("DELETE FROM accounts WHERE id = ?", (account,))
            self.log.append(("accounts", account.encode(), None))
        else:
            await self.db.execute("INSERT OR REPLACE INTO accounts VALUES (?, ?)", (account, str(balance)))
            self.log.append(("accounts", account.encode(), Writer().uint(balance).finish()))

    async def nonce(self, signer: bytes) -> int:
        row = await self._one("SELECT nonce FROM nonces WHERE signer = ?", (signer,))
        return 0 if row is None else int(row[0])

    async def set_nonce(self, signer: bytes, nonce: int) -> None:
        await self.db.execute("INSERT OR REPLACE INTO nonces VALUES (?, ?)", (signer, nonce))
        self.log.append(("nonces", signer, Writer().u64(nonce).finish()))

    # -- validators -- #

    async def validators(self) -> dict[bytes, int]:
        return {
            bytes(k): int(p)
            for k, p in await self.db.execute_fetchall("SELECT pubkey, power FROM validators ORDER BY pubkey")
        }

    async def validator_since(self, pubkey: bytes) -> int | None:
        row = await self._one("SELECT since FROM validators WHERE pubkey = ?", (pubkey,))
        return None if row is None else int(row[0])

    async def set_power(self, pubkey: bytes, power: int, height: int) -> None:
        if power == 0:
            await self.db.execute("DELETE FROM validators WHERE pubkey = ?", (pubkey,))
            self.log.append(("validators", pubkey, None))
            return
        since = await self.validator_since(pubkey)
        since = height if since is None else since
        await self.db.execute("INSERT OR REPLACE INTO validators VALUES (?, ?, ?)", (pubkey, power, since))
        self.log.append(("validators", pubkey, Writer().u64(power).u64(since).finish()))

    # -- resolutions and votes -- #

    async def _ids(self, sql: str, ids: list[bytes], *args: object) -> set[bytes]:
        found: set[bytes] = set()
        for part in chunks(ids):
            found.update(
                bytes(r[0])
                for r in await self.db.execute_fetchall(sql.format(marks(len(part))), (*args, *part))
            )
        return found

    async def processed_ids(self, ids: list[bytes]) -> set[bytes]:
        return await self._ids("SELECT id FROM processed WHERE id IN ({})", ids)

    async def pending_ids(self, ids: list[bytes]) -> set[bytes]:
        return await self._ids("SELECT id FROM resolutions WHERE id IN ({})", ids)

    async def voted_ids(self, ids: list[bytes], voter: bytes) -> set[bytes]:
        return await self._ids(
            "SELECT resolution_id FROM votes WHERE voter = ? AND resolution_id IN ({})", ids, voter
        )

    async def all_pending_ids(self) -> list[bytes]:
        return [bytes(r[0]) for r in await self.db.execute_fetchall("SELECT id FROM resolutions ORDER BY id")]

    async def resolutions(self, ids: list[bytes]) -> dict[bytes, ResolutionRow]:
        out: dict[bytes, ResolutionRow] = {}
        for part in chunks(ids):
            sql = (
                "SELECT id, type, body, proposer, expiration FROM resolutions"
                f" WHERE id IN ({marks(len(part))})"
            )
            for i, t, b, p, e in await self.db.execute_fetchall(sql, part):
                out[bytes(i)] = ResolutionRow(bytes(i), t, bytes(b), bytes(p), int(e))
        return out

    async def voters(self, ids: list[bytes]) -> dict[bytes, list[bytes]]:
        out: dict[bytes, list[bytes]] = {i: [] for i in ids}
        for part in chunks(ids):
            sql = (
                f"SELECT resolution_id, voter FROM votes WHERE resolution_id IN ({marks(len(part))})"
                " ORDER BY resolution_id, voter"
            )
            for rid, voter in await self.db.execute_fetchall(sql, part):
                out[bytes(rid)].append(bytes(voter))
        return out

    async def expired(self, height: int) -> list[ResolutionRow]:
        sql = (
            "SELECT id, type, body, proposer, expiration FROM resolutions WHERE expiration <= ?"
            " ORDER BY type, id"
        )
        return [
            ResolutionRow(bytes(i), t, bytes(b), bytes(p), int(e))
            for i, t, b, p, e in await self.db.execute_fetchall(sql, (height,))
        ]

    async def add_resolutions(self, rows: list[ResolutionRow]) -> None:
        await self.db.executemany(
            "INSERT INTO resolutions VALUES (?, ?, ?, ?, ?)",
            [(r.id, r.type, r.body, r.proposer, r.expiration) for r in rows],
        )
        self.log.extend(
            (
                "resolutions",
                r.id,
                Writer().text(r.type).blob(r.body).blob(r.proposer).u64(r.expiration).finish(),
            )
            for r in rows
        )

    async def add_votes(self, ids: list[bytes], voter: bytes) -> None:
        await self.db.executemany("INSERT INTO votes VALUES (?, ?)", [(i, voter) for i in ids])
        self.log.extend(("votes", i + voter, b"") for i in ids)

    async def remove_resolutions(self, ids: list[bytes]) -> None:
        """Delete resolutions with their votes (one log entry each: votes go with them)."""
        params = [(i,) for i in ids]
        await self.db.executemany("DELETE FROM votes WHERE resolution_id = ?", params)
        await self.db.executemany("DELETE FROM resolutions WHERE id = ?", params)
        self.log.extend(("resolutions", i, None) for i in ids)

    async def mark_processed(
        self, rows: list[tuple[bytes, str, bytes, int, str, str]], *, logged: bool = False
    ) -> None:
        """Rows of (id, type, body, height, status, error). With ``logged`` the caller has
        already appended each row's :meth:`processed_entry` to the log, where it belongs."""
        await self.db.executemany("INSERT INTO processed VALUES (?, ?, ?, ?, ?, ?)", rows)
        if not logged:
            self.log.extend(self.processed_entry(r) for r in rows)

    @staticmethod
    def processed_entry(r: tuple[bytes, str, bytes, int, str, str]) -> Entry:
        return ("processed", r[0], Writer().u64(r[3]).text(r[4]).text(r[5]).finish())

    # -- key-value state of resolution types -- #

    async def kv_get(self, namespace: str, key: bytes) -> bytes | None:
        sql = "SELECT value FROM kv WHERE namespace = ? AND key = ?"
        row = await self._one(sql, (namespace, key))
        return None if row is None else bytes(row[0])

    async def kv_set(self, namespace: str, key: bytes, value: bytes) -> None:
        await self.db.execute("INSERT OR REPLACE INTO kv VALUES (?, ?, ?)", (namespace, key, value))
        self.log.append(("kv", Writer().text(namespace).blob(key).finish(), value))

    async def kv_delete(self, namespace: str, key: bytes) -> None:
        await self.db.execute("DELETE FROM kv WHERE namespace = ? AND key = ?", (namespace, key))
        self.log.append(("kv", Writer().text(namespace).blob(key).finish(), None))
